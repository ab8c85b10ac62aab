"""What the Raft core exchanges with its peers and hands to its shell.

Messages are immutable values; the core never sends them itself. The shell takes them out of a
:class:`Ready` and puts them on the wire (protobuf through :mod:`manager.state.raft.codec`, or as they are
on the simulated network).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from manager.state.raft.types import ConfState, Entry, HardState, SnapshotMeta

__all__ = [
    "TRANSFER_CONTEXT",
    "ConfChange",
    "ConfChangeType",
    "Message",
    "MessageType",
    "ReadState",
    "Ready",
    "Role",
    "SoftState",
]


class MessageType(enum.IntEnum):
    """Kinds of Raft messages. Wire values: ONLY APPEND TO THIS LIST."""

    APPEND = 1  # leader -> follower: entries after (index, log_term), and the leader's commit
    APPEND_RESP = 2  # follower -> leader: accepted up to index, or rejected with a hint
    VOTE = 3  # candidate -> voter: vote for me in term (my last entry is index, log_term)
    VOTE_RESP = 4
    PRE_VOTE = 5  # pre-candidate -> voter: would you vote for me in term (not yet my term)?
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7  # leader -> follower: I am alive; commit; context of pending reads
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9  # leader -> lagging follower: install this snapshot
    TIMEOUT_NOW = 10  # leader -> transfer target: campaign now, skipping pre-vote and lease
    READ_INDEX = 11  # follower -> leader: confirm a read for this context
    READ_INDEX_RESP = 12  # leader -> follower: reads for the context may use state as of index
    TRANSFER_LEADER = 13  # follower -> leader: please hand leadership to ``index_node``


class Role(enum.StrEnum):
    """A node's role, as its metrics and status show it."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. Fields a type does not use keep their defaults."""

    type: MessageType
    to: str
    sender: str
    term: int = 0  # 0 for requests that are not tied to a term (READ_INDEX, TRANSFER_LEADER)
    log_term: int = 0  # the term of the entry at ``index`` (APPEND, votes)
    index: int = 0  # previous index (APPEND), last index (votes), matched index (APPEND_RESP)
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APPEND_RESP reject: the follower's guess at the last index that may match
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""
    context: bytes = b""  # read context (heartbeats, READ_INDEX), or b"transfer" on a forced VOTE
    target: str = ""  # TRANSFER_LEADER: the node that should lead


#: The VOTE context a transfer target campaigns with, so that followers ignore their lease.
TRANSFER_CONTEXT = b"transfer"


class ConfChangeType(enum.IntEnum):
    """Membership changes, one server at a time. Wire values: ONLY APPEND TO THIS LIST."""

    ADD_LEARNER = 0  # a new manager joins as a non-voter and catches up
    PROMOTE = 1  # a caught-up learner becomes a voter
    REMOVE = 2  # a voter or learner leaves
    DEMOTE = 3  # a voter becomes a learner
    BOOTSTRAP = 4  # the first entry of a new cluster: the initial voters (``node_id`` is unused)


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change, proposed with :meth:`RaftNode.propose_conf_change`."""

    type: ConfChangeType
    node_id: str
    voters: tuple[str, ...] = ()  # BOOTSTRAP only

    def encode(self) -> bytes:
        """The entry payload that carries this change."""
        body: dict[str, object] = {"t": int(self.type), "n": self.node_id}
        if self.voters:
            body["v"] = list(self.voters)
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """Parse an entry payload; ``ValueError`` if it is not a membership change."""
        try:
            body = json.loads(data)
            kind = ConfChangeType(int(body["t"]))
            node = str(body["n"])
            voters = tuple(str(v) for v in body.get("v", ()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed membership change: {exc}") from None
        return cls(kind, node, voters)

    def apply(self, conf: ConfState) -> ConfState:
        """The membership after this change is applied to ``conf``."""
        voters = [v for v in conf.voters if v != self.node_id]
        learners = [v for v in conf.learners if v != self.node_id]
        if self.type == ConfChangeType.BOOTSTRAP:
            return ConfState(voters=tuple(sorted(set(self.voters))), learners=())
        if self.type in (ConfChangeType.ADD_LEARNER, ConfChangeType.DEMOTE):
            learners.append(self.node_id)
        elif self.type == ConfChangeType.PROMOTE:
            voters.append(self.node_id)
        return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed linearizable read: once ``index`` is applied, state answers the read ``context``."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """What the node believes about leadership; not persisted."""

    leader: str | None
    role: Role
    term: int


@dataclass(slots=True)
class Ready:
    """Everything the shell must do, in this order: persist ``hard_state``, ``entries`` and
    ``snapshot``; then send ``messages``; then install ``snapshot`` and apply ``committed``;
    then hand the Ready back to :meth:`RaftNode.advance`."""

    soft_state: SoftState | None = None  # set when leader, role or term changed
    hard_state: HardState | None = None  # set when it changed: persist before sending
    entries: list[Entry] = field(default_factory=list)  # append to the log before sending
    snapshot: tuple[SnapshotMeta, bytes] | None = None  # persist, then restore the state machine from it
    committed: list[Entry] = field(default_factory=list)  # apply in order
    messages: list[Message] = field(default_factory=list)  # each has ``.to``
    read_states: list[ReadState] = field(default_factory=list)
