"""The Raft consensus core: a state machine with no I/O, shaped like etcd's RawNode.

Every rule of the protocol lives in this file. Inputs are :meth:`RaftNode.step` (a message from a
peer), :meth:`RaftNode.tick` (the passage of one tick), :meth:`RaftNode.report_leader_unreachable`
(the shell found that the leader's port refuses connections) and the client calls (propose,
read_index, propose_conf_change, transfer_leadership, campaign). Outputs accumulate and are collected with
:meth:`RaftNode.ready`: what to persist, what to send, what to apply. The shell persists, sends and
applies, then calls :meth:`RaftNode.advance`.

Roles swap their step and tick functions (``_step_leader``, ``_tick_heartbeat`` ...) instead of
testing the role everywhere. How each safety property is kept is written beside the rule that keeps
it; docs/raft.md gives the overview.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from manager.state.raft.config import RaftConfig
from manager.state.raft.log import RaftLog
from manager.state.raft.messages import (
    TRANSFER_CONTEXT,
    ConfChange,
    ConfChangeType,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    SoftState,
)
from manager.state.raft.quorum import VoteResult, committed_index, majority, vote_result
from manager.state.raft.tracker import Progress, ProgressState
from manager.state.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta

__all__ = ["NO_LEADER_MESSAGE", "NotLeader", "RaftNode"]

#: Swarm's words when a write needs a leader and there is none.
NO_LEADER_MESSAGE = (
    "The swarm does not have a leader. It's possible that too few managers are online. "
    "Make sure more than half of the managers are online."
)


class NotLeader(Exception):
    """This node cannot take the request; ``leader`` names the leader if it is known."""

    def __init__(self, leader: str | None, detail: str | None = None) -> None:
        if detail is None:
            detail = NO_LEADER_MESSAGE if leader is None else f"this manager is not the leader ({leader} is)"
        super().__init__(detail)
        self.leader = leader


@dataclass(slots=True)
class _PendingRead:
    """A ReadIndex request waiting for a majority to confirm the leader is still the leader."""

    index: int
    requester: str
    acks: set[str] = field(default_factory=set)


_Step = Callable[[Message], None]


class RaftNode:
    """One Raft participant. Single-threaded: the shell serializes every call."""

    def __init__(
        self,
        config: RaftConfig,
        node_id: str,
        rng: random.Random,
        *,
        voters: Sequence[str] = (),
        hard_state: HardState = HardState(),  # noqa: B008 - frozen, so a shared default is safe
        entries: Sequence[Entry] = (),
        snapshot: SnapshotMeta | None = None,
        applied: int = 0,
        snapshot_data: bytes = b"",
    ) -> None:
        """A fresh cluster member gets ``voters`` and nothing else; a restarted one gets what storage
        recovered (``voters`` is then ignored); a manager joining an existing cluster gets neither
        and waits for the leader to add it as a learner."""
        if not node_id:
            raise ValueError("node_id must not be empty")
        self.config = config
        self.node_id = node_id
        self._rng = rng
        recovered = bool(entries) or snapshot is not None or hard_state != HardState()
        if recovered and hard_state.commit < (snapshot.index if snapshot else 0):
            hard_state = HardState(hard_state.term, hard_state.vote, snapshot.index if snapshot else 0)
        self.log = RaftLog(snapshot, entries, hard_state.commit, applied)
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.lead: str | None = None
        self._last_lead: str | None = None  # the last leader seen, for counting leader changes
        self.snapshot = snapshot if snapshot is not None else SnapshotMeta()
        self.snapshot_data = snapshot_data
        self.conf = self.snapshot.conf
        self._conf_index = self.snapshot.index  # entries up to here are reflected in ``conf``
        self._conf_history: list[tuple[int, ConfState]] = [(self.snapshot.index, self.conf)]
        if not recovered and voters:
            # Every founding member writes the same first entry, so their logs agree on it and it
            # counts as committed without a vote (as etcd bootstraps).
            boot = ConfChange(ConfChangeType.BOOTSTRAP, "", tuple(voters)).encode()
            self.term = 1
            self.log.append([Entry(1, 1, EntryType.CONF_CHANGE, boot)])
            self.log.commit_to(1)
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.role = Role.FOLLOWER
        self._step: _Step = self._step_follower
        self._tick: Callable[[], None] = self._tick_election
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_ticks
        self.lead_transferee: str | None = None
        self.pending_conf_index = 0
        self._reads: dict[bytes, _PendingRead] = {}
        self._held_reads: list[tuple[bytes, str]] = []  # asked before this term's first commit
        self.msgs: list[Message] = []
        self._handed_out = 0  # the last committed index given to the shell to apply
        self.read_states: list[ReadState] = []
        # Counters for metrics.
        self.leader_changes = 0
        self.bytes_appended = 0
        self.bytes_snapshotted = 0
        self.proposals = 0
        # What storage already holds needs no writing again.
        self._prev_hard = hard_state if recovered else HardState()
        self._prev_soft = SoftState(None, Role.FOLLOWER, self._prev_hard.term)
        self._apply_conf_changes()
        self._become_follower(self.term, None)

    # Public state ------------------------------------------------------------------------------
    @property
    def leader(self) -> str | None:
        """The leader this node believes in, if any."""
        return self.lead

    @property
    def commit(self) -> int:
        """The highest index known to be committed."""
        return self.log.committed

    @property
    def applied(self) -> int:
        """The highest index the application has applied (as reported through advance)."""
        return self.log.applied

    @property
    def last_index(self) -> int:
        """The index of the last entry in this node's log."""
        return self.log.last_index()

    def promotable(self) -> bool:
        """Whether this node is a voter, and so may campaign."""
        return self.node_id in self.conf.voters

    def status(self) -> dict[str, object]:
        """Term, role, indexes, membership and counters, for metrics and debugging."""
        out: dict[str, object] = {
            "id": self.node_id,
            "term": self.term,
            "vote": self.vote,
            "role": self.role.value,
            "leader": self.lead,
            "commit": self.log.committed,
            "applied": self.log.applied,
            "last_index": self.log.last_index(),
            "first_index": self.log.first_index(),
            "snapshot_index": self.snapshot.index,
            "voters": list(self.conf.voters),
            "learners": list(self.conf.learners),
            "leader_changes": self.leader_changes,
            "bytes_appended": self.bytes_appended,
            "bytes_snapshotted": self.bytes_snapshotted,
            "proposals": self.proposals,
            "snapshot_due": self.config.snapshot_every > 0
            and self.log.applied - self.snapshot.index >= self.config.snapshot_every,
        }
        if self.role == Role.LEADER:
            out["progress"] = {peer: pr.describe() for peer, pr in sorted(self.progress.items())}
            out["lead_transferee"] = self.lead_transferee
        return out

    # Inputs ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One tick of time has passed."""
        self._tick()

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round if configured); no-op for non-voters."""
        if self.role != Role.LEADER and self.promotable():
            self._campaign(pre_vote=self.config.pre_vote, transfer=False)

    def report_leader_unreachable(self, leader: str, term: int) -> bool:
        """The shell found that ``leader``'s port refuses connections: its process is gone.

        ``term`` is this node's term when the shell began to find out (a connection to ``leader``
        broke). Waiting for the election timeout is what Raft needs when a dead leader cannot be
        told from a slow one; a refused connection tells them apart, since nothing listens there
        any more. The rules:

        * Only a follower that follows ``leader`` in ``term``, still, acts on it. Anything else
          is stale or about someone else (a newer term, another leader, a candidate already
          campaigning, a leader hearing about itself) and is ignored.
        * A learner ignores it: it never campaigns.
        * The follower forgets ``leader``, which ends its lease: it will answer other survivors'
          (pre-)votes at once instead of ignoring them until the election timeout.
        * The surviving voters campaign in order of node id, ``standby_ticks`` apart: the first
          at once, the next one later unless a campaign reached it first. Each campaign is an
          ordinary one (pre-vote first when configured); the vote still needs a majority and an
          up-to-date log, so this changes how soon an election starts, never who may win it.

        A wrong report costs little: a live leader's next heartbeat makes the node follow it
        again, and a pre-vote round leaves no trace. Returns whether the report was acted on.
        """
        if (
            self.role != Role.FOLLOWER
            or term != self.term
            or self.lead is None
            or leader != self.lead
            or leader == self.node_id
            or not self.promotable()
        ):
            return False
        self._set_lead(None)
        survivors = sorted(v for v in self.conf.voters if v != leader)
        rank = survivors.index(self.node_id)
        if rank == 0:
            self._campaign(pre_vote=self.config.pre_vote, transfer=False)
        else:
            # The election timer is reset to a short standby; a vote from the first survivor
            # resets it again (every term change does).
            self.election_elapsed = 0
            self.randomized_timeout = rank * self.config.standby_ticks
        return True

    def propose(self, data: bytes) -> int:
        """Append a command to the log; return its index. Raises :class:`NotLeader`."""
        self._check_can_propose()
        self.proposals += 1
        return self._append_and_send([(EntryType.NORMAL, data)])

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change; return its index.

        Raises :class:`NotLeader`, or ``ValueError`` when another change is still pending, the
        leader has not committed an entry of its own term yet, or the change makes no sense.
        """
        self._check_can_propose()
        if self.pending_conf_index > self.log.committed or not self._committed_in_term():
            raise ValueError("a membership change is already in progress; try again when it is committed")
        node, conf = change.node_id, self.conf
        kind = change.type
        if kind == ConfChangeType.BOOTSTRAP:
            raise ValueError("a running cluster cannot be bootstrapped again")
        if kind == ConfChangeType.ADD_LEARNER and (node in conf.voters or node in conf.learners):
            raise ValueError(f"{node} is already a member")
        if kind == ConfChangeType.PROMOTE:
            if node not in conf.learners:
                raise ValueError(f"{node} is not a learner, so it cannot be promoted")
            if self.progress[node].match < self.log.committed:
                raise ValueError(f"{node} has not caught up with the log yet")
        if kind == ConfChangeType.DEMOTE and node not in conf.voters:
            raise ValueError(f"{node} is not a voter, so it cannot be demoted")
        if kind == ConfChangeType.REMOVE and node not in conf.voters and node not in conf.learners:
            raise ValueError(f"{node} is not a member")
        if kind in (ConfChangeType.REMOVE, ConfChangeType.DEMOTE) and conf.voters == (node,):
            raise ValueError(f"{node} is the last voter and cannot leave")
        index = self._append_and_send([(EntryType.CONF_CHANGE, change.encode())])
        self.pending_conf_index = index
        return index

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter ``to`` once its log is caught up (used on demote or leave)."""
        if self.role != Role.LEADER:
            if self.lead is None:
                raise NotLeader(None)
            self._send(Message(MessageType.TRANSFER_LEADER, self.lead, self.node_id, target=to))
            return
        if to not in self.conf.voters:
            raise ValueError(f"{to} is not a voter and cannot lead")
        self._start_transfer(to)

    def read_index(self, ctx: bytes) -> None:
        """Ask to read linearizably; a ReadState(index, ctx) in a later Ready says from when.

        The caller waits until ``applied >= index`` and then reads its state machine. ``ctx`` must
        be unique among outstanding reads. Raises :class:`NotLeader` when no leader is known.
        """
        if self.role == Role.LEADER:
            if not self._committed_in_term():
                # The commit index of a brand-new leader may be behind what earlier leaders committed.
                self._held_reads.append((ctx, self.node_id))
                return
            self._start_read(ctx, self.node_id)
            return
        if self.lead is None or self.role != Role.FOLLOWER:
            raise NotLeader(None)
        self._send(Message(MessageType.READ_INDEX, self.lead, self.node_id, context=ctx))

    def compact(self, index: int, snapshot_data: bytes) -> None:
        """The application took a snapshot as of ``index`` (<= applied); older log entries may go.

        The core keeps ``snapshot_data`` to send to followers that fall behind the compacted log.
        """
        # The shell may snapshot while applying a Ready, before advance() reports it applied.
        if index > max(self.log.applied, self._handed_out):
            raise ValueError(f"cannot snapshot at {index}: only {self.log.applied} is applied")
        if index <= self.snapshot.index:
            return
        term = self.log.term(index)
        if term is None:
            raise ValueError(f"cannot snapshot at {index}: the entry is no longer in the log")
        self.snapshot = SnapshotMeta(index, term, self._conf_at(index))
        self.snapshot_data = snapshot_data
        self.bytes_snapshotted += len(snapshot_data)
        self._conf_history = [(index, self._conf_at(index))] + [h for h in self._conf_history if h[0] > index]
        self.log.compact(max(self.log.offset, index - self.config.keep_after_snapshot))

    def step(self, m: Message) -> None:
        """Handle one message from a peer. Messages for another node are ignored."""
        if m.to != self.node_id:
            return
        if m.term > self.term and m.type not in (MessageType.READ_INDEX, MessageType.TRANSFER_LEADER):
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                forced = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.config.check_quorum
                    and self.lead is not None
                    and self.election_elapsed < self.config.election_ticks
                )
                if in_lease and not forced:
                    # We heard from a live leader recently: a higher term here comes from a node
                    # that lost touch, and must not depose the leader.
                    return
            if m.type == MessageType.PRE_VOTE or (m.type == MessageType.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change terms; the pre-candidate takes the term when it wins
            elif m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
                self._become_follower(m.term, m.sender)
            else:
                self._become_follower(m.term, None)
        elif 0 < m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (
                MessageType.APPEND,
                MessageType.HEARTBEAT,
            ):
                # A deposed leader that cannot hear the new one: tell it the new term so it steps down.
                self._send(Message(MessageType.APPEND_RESP, m.sender, self.node_id, term=self.term))
            elif m.type == MessageType.PRE_VOTE:
                self._send(
                    Message(MessageType.PRE_VOTE_RESP, m.sender, self.node_id, term=self.term, reject=True)
                )
            return
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(m)
            return
        self._step(m)

    # Ready / advance -------------------------------------------------------------------------
    def _soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role, self.term)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _committed_lo(self) -> int:
        lo = self.log.applied + 1
        if self.log.pending_snapshot is not None:
            lo = max(lo, self.log.pending_snapshot[0].index + 1)
        return lo

    def has_ready(self) -> bool:
        """Whether :meth:`ready` has anything for the shell to do."""
        return bool(
            self.msgs
            or self.read_states
            or self.log.pending_snapshot is not None
            or self.log.stable < self.log.last_index()
            or self._committed_lo() <= self.log.committed
            or self._hard_state() != self._prev_hard
            or self._soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        """Collect what the shell must persist, send and apply; hand it back with :meth:`advance`."""
        soft = self._soft_state()
        hard = self._hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=self.log.unstable_entries(),
            snapshot=self.log.pending_snapshot,
            committed=self.log.slice(self._committed_lo(), self.log.committed),
            messages=self.msgs,
            read_states=self.read_states,
        )
        self.msgs = []
        self.read_states = []
        self._prev_soft = soft
        if rd.committed:
            self._handed_out = rd.committed[-1].index
        return rd

    def advance(self, rd: Ready) -> None:
        """The shell has persisted, sent and applied everything in ``rd``."""
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            meta = rd.snapshot[0]
            if self.log.pending_snapshot is rd.snapshot:
                self.log.pending_snapshot = None
            self.log.applied = max(self.log.applied, meta.index)
        if rd.committed:
            self.log.applied = max(self.log.applied, rd.committed[-1].index)

    # Roles -----------------------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = ""
        self._set_lead(None)
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.config.election_ticks + self._rng.randrange(self.config.election_ticks)
        self.votes = {}
        self.lead_transferee = None
        self._reads.clear()
        self._held_reads.clear()
        self.progress = {}

    def _set_lead(self, lead: str | None) -> None:
        if lead is not None and lead != self._last_lead:
            self.leader_changes += 1
            self._last_lead = lead
        self.lead = lead

    def _become_follower(self, term: int, lead: str | None) -> None:
        self._reset(term)
        self._set_lead(lead)
        self.role = Role.FOLLOWER
        self._step = self._step_follower
        self._tick = self._tick_election

    def _become_pre_candidate(self) -> None:
        # No term change and no vote recorded: a failed pre-vote leaves no trace.
        self.randomized_timeout = self.config.election_ticks + self._rng.randrange(self.config.election_ticks)
        self._step = self._step_candidate
        self._tick = self._tick_election
        self.votes = {}
        self._set_lead(None)
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.node_id
        self.role = Role.CANDIDATE
        self._step = self._step_candidate
        self._tick = self._tick_election

    def _become_leader(self) -> None:
        self._reset(self.term)
        self._set_lead(self.node_id)
        self.role = Role.LEADER
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        last = self.log.last_index()
        for peer in (*self.conf.voters, *self.conf.learners):
            self.progress[peer] = Progress(last + 1, self.config.max_inflight)
        if self.node_id in self.progress:
            self.progress[self.node_id].match = last
            self.progress[self.node_id].become_replicate()
        # Entries of earlier terms are committed only through an entry of this term (Raft 5.4.2):
        # the empty entry gives the new leader one to commit right away. Membership changes wait
        # for it too, so that a change never races one a previous leader left behind.
        self.pending_conf_index = last + 1
        self._append_and_send([(EntryType.NORMAL, b"")])

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
            kind = MessageType.PRE_VOTE
        else:
            self._become_candidate()
            term = self.term
            kind = MessageType.VOTE
        if self._poll(self.node_id, True) == VoteResult.WON:
            return  # a single voter wins at once
        context = TRANSFER_CONTEXT if transfer else b""
        for peer in self.conf.voters:
            if peer != self.node_id:
                self._send(
                    Message(
                        kind,
                        peer,
                        self.node_id,
                        term=term,
                        index=self.log.last_index(),
                        log_term=self.log.last_term(),
                        context=context,
                    )
                )

    def _poll(self, voter: str, granted: bool) -> VoteResult:
        self.votes.setdefault(voter, granted)
        result = vote_result(self.conf.voters, self.votes)
        if result == VoteResult.WON:
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
        elif result == VoteResult.LOST:
            self._become_follower(self.term, None)
        return result

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type == MessageType.PRE_VOTE
        resp = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        # One vote per term (election safety); a pre-vote promises nothing, so it may be given to
        # anyone proposing a later term. Only a candidate whose log is at least as current as ours
        # can win (leader completeness).
        can_vote = (
            self.vote == m.sender
            or (self.vote == "" and self.lead is None)
            or (pre and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, m.sender, self.node_id, term=m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.sender
        else:
            self._send(Message(resp, m.sender, self.node_id, term=self.term, reject=True))

    # Ticks -----------------------------------------------------------------------------------
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._campaign(pre_vote=self.config.pre_vote, transfer=False)

    def _tick_heartbeat(self) -> None:
        cfg = self.config
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= cfg.election_ticks:
            self.election_elapsed = 0
            if cfg.check_quorum and not self._quorum_active():
                # Check-quorum: a leader cut off from a majority steps down, so that clients get
                # an error instead of waiting on a leader that can no longer commit.
                self._become_follower(self.term, None)
                return
            self.lead_transferee = None  # a transfer that has not finished in time is abandoned
        for pr in self.progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks > 2 * cfg.election_ticks:
                    pr.become_probe()  # the snapshot was lost on the way; try again
        if self.heartbeat_elapsed >= cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            last_ctx = next(reversed(self._reads)) if self._reads else b""
            self._broadcast_heartbeat(last_ctx)

    def _quorum_active(self) -> bool:
        active = {peer for peer, pr in self.progress.items() if pr.recent_active}
        active.add(self.node_id)
        for peer, pr in self.progress.items():
            if peer != self.node_id:
                pr.recent_active = False
        voters = self.conf.voters
        return sum(1 for v in voters if v in active) >= majority(len(voters))

    # Leader ------------------------------------------------------------------------------------
    def _check_can_propose(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.lead)
        if self.lead_transferee is not None:
            raise NotLeader(self.lead_transferee, "leadership is being transferred; retry on the new leader")

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _append_and_send(self, items: Sequence[tuple[EntryType, bytes]]) -> int:
        last = self.log.last_index()
        entries = [Entry(last + 1 + i, self.term, kind, data) for i, (kind, data) in enumerate(items)]
        self.log.append(entries)
        self.bytes_appended += sum(len(e.data) for e in entries)
        me = self.progress.get(self.node_id)
        if me is not None:
            me.maybe_update(entries[-1].index)
        self._maybe_commit()
        self._broadcast_append()
        return entries[-1].index

    def _broadcast_append(self) -> None:
        for peer in self.progress:
            if peer != self.node_id:
                self._send_append(peer)

    def _broadcast_heartbeat(self, ctx: bytes) -> None:
        for peer, pr in self.progress.items():
            if peer != self.node_id:
                # Never tell a follower a commit index beyond what it is known to hold.
                commit = min(pr.match, self.log.committed)
                self._send(Message(MessageType.HEARTBEAT, peer, self.node_id, commit=commit, context=ctx))

    def _send_append(self, to: str, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None or pr.next <= self.log.offset:
            return self._send_snapshot(to, pr)
        last = self.log.last_index()
        entries = self.log.slice(pr.next, last, self.config.max_batch_bytes) if pr.next <= last else []
        if not entries and not send_if_empty:
            return False
        self._send(
            Message(
                MessageType.APPEND,
                to,
                self.node_id,
                index=prev,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if self.snapshot.index == 0:
            return False  # nothing compacted, so this cannot happen; be safe rather than crash
        self._send(
            Message(
                MessageType.SNAPSHOT,
                to,
                self.node_id,
                snapshot=self.snapshot,
                snapshot_data=self.snapshot_data,
            )
        )
        pr.become_snapshot(self.snapshot.index)
        return True

    def _maybe_commit(self) -> bool:
        match = {peer: pr.match for peer, pr in self.progress.items()}
        index = committed_index(self.conf.voters, match)
        # Only an entry of the current term is committed by counting replicas; earlier entries
        # are committed along with it (Raft 5.4.2, Figure 8).
        if index > self.log.committed and self.log.term(index) == self.term:
            first_in_term = not self._committed_in_term()
            self._commit_to(index)
            if first_in_term and self.role == Role.LEADER:
                held, self._held_reads = self._held_reads, []
                for ctx, requester in held:
                    self._start_read(ctx, requester)
            return True
        return False

    def _start_transfer(self, to: str) -> None:
        if to == self.node_id or self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer is abandoned after one election timeout
        pr = self.progress.get(to)
        if pr is None:
            self.lead_transferee = None
            return
        if pr.match == self.log.last_index():
            self._send(Message(MessageType.TIMEOUT_NOW, to, self.node_id))
        else:
            self._send_append(to)

    def _start_read(self, ctx: bytes, requester: str) -> None:
        if self.conf.voters == (self.node_id,):
            self._answer_read(ctx, requester, self.log.committed)
            return
        # ReadIndex: remember the commit index now; once a majority answers a heartbeat sent after
        # this moment, no other leader can have committed anything newer, so reading state as of
        # this index is linearizable.
        self._reads[ctx] = _PendingRead(self.log.committed, requester, {self.node_id})
        self._broadcast_heartbeat(ctx)

    def _answer_read(self, ctx: bytes, requester: str, index: int) -> None:
        if requester == self.node_id:
            self.read_states.append(ReadState(index, ctx))
        else:
            resp = Message(MessageType.READ_INDEX_RESP, requester, self.node_id, index=index, context=ctx)
            self._send(resp)

    def _ack_read(self, ctx: bytes, voter: str) -> None:
        pending = self._reads.get(ctx)
        if pending is None:
            return
        pending.acks.add(voter)
        voters = self.conf.voters
        if sum(1 for v in voters if v in pending.acks) < majority(len(voters)):
            return
        # A confirmation of this read also confirms every read registered before it.
        while self._reads:
            first_ctx = next(iter(self._reads))
            first = self._reads.pop(first_ctx)
            self._answer_read(first_ctx, first.requester, first.index)
            if first_ctx == ctx:
                break

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MessageType.READ_INDEX:
            if m.sender not in self.progress:
                return
            if not self._committed_in_term():
                self._held_reads.append((m.context, m.sender))
            else:
                self._start_read(m.context, m.sender)
            return
        if t == MessageType.TRANSFER_LEADER:
            if m.target in self.conf.voters:
                self._start_transfer(m.target)
            return
        pr = self.progress.get(m.sender)
        if pr is None:
            return
        if t == MessageType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif t == MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            if m.context:
                self._ack_read(m.context, m.sender)
            if self.role != Role.LEADER:
                return
            last = self.log.last_index()
            if pr.state == ProgressState.REPLICATE and pr.match < last:
                if pr.match == pr.heartbeat_match:
                    pr.become_probe()  # nothing acknowledged for a heartbeat interval: appends were lost
                pr.heartbeat_match = pr.match
            if pr.state == ProgressState.PROBE:
                pr.probe_sent = False
            if pr.match < last:
                # In replicate state this sends an empty append after the last entry sent: a
                # follower that lost an append rejects it, which starts probing at once.
                self._send_append(m.sender)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.index > self.log.last_index():
            return  # about entries this leader never had: not an answer to anything it sent
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                # Fast backtracking: skip every entry of a term the follower does not have.
                hint = self.log.find_conflict_by_term(hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                    pr.next = max(min(pr.next, hint + 1), pr.match + 1)
                self._send_append(m.sender)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index) and not (pr.state == ProgressState.PROBE and pr.match == m.index):
            if pr.state == ProgressState.REPLICATE:
                pr.inflights.free_to(m.index)
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT:
            if pr.match >= pr.snapshot_index:
                pr.become_replicate()
        else:
            pr.inflights.free_to(m.index)
        if self._maybe_commit():
            self._broadcast_append()
        elif was_paused:
            self._send_append(m.sender)
        if self.role != Role.LEADER or m.sender not in self.progress:
            return
        while self._send_append(m.sender, send_if_empty=False):
            pass
        if m.sender == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(MessageType.TIMEOUT_NOW, m.sender, self.node_id))

    # Candidate and follower --------------------------------------------------------------------
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            # Someone won this term: follow it.
            self._become_follower(m.term, m.sender)
            self._step_follower(m)
            return
        expected = MessageType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        if t == expected:
            self._poll(m.sender, not m.reject)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MessageType.APPEND:
            self.election_elapsed = 0
            self._set_lead(m.sender)
            self._handle_append(m)
        elif t == MessageType.HEARTBEAT:
            self.election_elapsed = 0
            self._set_lead(m.sender)
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._apply_conf_changes()
            self._send(Message(MessageType.HEARTBEAT_RESP, m.sender, self.node_id, context=m.context))
        elif t == MessageType.SNAPSHOT:
            self.election_elapsed = 0
            self._set_lead(m.sender)
            self._handle_snapshot(m)
        elif t == MessageType.TIMEOUT_NOW:
            if self.promotable():
                # Leadership transfer: campaign at once, past the lease of the other followers.
                self._campaign(pre_vote=False, transfer=True)
        elif t == MessageType.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif t == MessageType.TRANSFER_LEADER and self.lead is not None:
            self._send(Message(MessageType.TRANSFER_LEADER, self.lead, self.node_id, target=m.target))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            # Everything up to our commit is settled; tell the leader where we really are.
            self._send(Message(MessageType.APPEND_RESP, m.sender, self.node_id, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._apply_conf_changes()
            self._send(Message(MessageType.APPEND_RESP, m.sender, self.node_id, index=last_new))
            return
        # Reject with a hint: the last index at or before m.index whose term is not above the
        # leader's term there, so the leader can skip a whole conflicting term at once.
        hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(
            Message(
                MessageType.APPEND_RESP,
                m.sender,
                self.node_id,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=self.log.term(hint) or 0,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None:
            return
        if meta.index <= self.log.committed:
            self._send(Message(MessageType.APPEND_RESP, m.sender, self.node_id, index=self.log.committed))
            return
        if self.log.match_term(meta.index, meta.term):
            # We hold the snapshot's last entry already: just move commit forward.
            self.log.commit_to(meta.index)
            self._apply_conf_changes()
        else:
            self.log.restore(meta, m.snapshot_data)
            self.snapshot = meta
            self.snapshot_data = m.snapshot_data
            self.bytes_snapshotted += len(m.snapshot_data)
            self.conf = meta.conf
            self._conf_index = meta.index
            self._conf_history = [(meta.index, meta.conf)]
        self._send(Message(MessageType.APPEND_RESP, m.sender, self.node_id, index=self.log.last_index()))

    # Commit and membership -----------------------------------------------------------------------
    def _commit_to(self, index: int) -> None:
        self.log.commit_to(index)
        self._apply_conf_changes()

    def _apply_conf_changes(self) -> None:
        # Membership changes take effect when committed, one at a time (the leader refuses a second
        # while one is pending), so any two successive configurations share a majority.
        changed = False
        while self._conf_index < self.log.committed:
            self._conf_index += 1
            entry = self.log.entry(self._conf_index)
            if entry.type != EntryType.CONF_CHANGE:
                continue
            self.conf = ConfChange.decode(entry.data).apply(self.conf)
            self._conf_history.append((entry.index, self.conf))
            changed = True
        if changed and self.role == Role.LEADER:
            self._leader_conf_changed()

    def _leader_conf_changed(self) -> None:
        if self.node_id not in self.conf.voters:
            self._become_follower(self.term, None)  # removed or demoted: stop leading
            return
        members = set(self.conf.voters) | set(self.conf.learners)
        for peer in list(self.progress):
            if peer not in members:
                del self.progress[peer]
        last = self.log.last_index()
        for peer in sorted(members - set(self.progress)):
            self.progress[peer] = Progress(last + 1, self.config.max_inflight)
            self._send_append(peer)
        if self.lead_transferee is not None and self.lead_transferee not in self.conf.voters:
            self.lead_transferee = None
        if self._maybe_commit():
            self._broadcast_append()

    def _conf_at(self, index: int) -> ConfState:
        conf = self._conf_history[0][1]
        for at, state in self._conf_history:
            if at <= index:
                conf = state
        return conf

    # Output ------------------------------------------------------------------------------------
    def _send(self, m: Message) -> None:
        if m.type not in (MessageType.READ_INDEX, MessageType.TRANSFER_LEADER) and m.term == 0:
            # A positional copy: dataclasses.replace costs several times more on this hot path.
            m = Message(
                m.type, m.to, m.sender, self.term, m.log_term, m.index, m.entries, m.commit, m.reject,
                m.reject_hint, m.snapshot, m.snapshot_data, m.context, m.target,
            )
        self.msgs.append(m)

