"""The messages SWIM nodes exchange, as immutable values.

The core builds and consumes these objects; the real transport turns them into protobuf bytes with
:mod:`nodeagent.gossip.codec`, the simulator hands them over as they are. Members are named by a
stable *name* (the node's hostname or id) inside messages and reached by *address* on the wire.

Wire kinds only grow: a new message gets a new class and a new field number in gossip.proto,
never a reused one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Ack",
    "Alive",
    "Broadcastable",
    "Compound",
    "Dead",
    "IndirectPing",
    "Message",
    "Nack",
    "NodeMeta",
    "Ping",
    "PushPull",
    "PushPullEntry",
    "Suspect",
    "UserMsg",
    "WireState",
]


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a node tells the cluster about itself; carried with every alive message."""

    node_id: str  # the node's stable id (Swarm's node ID)
    role: str  # "manager" or "worker"
    addr: str  # the address other components (the agent session, the overlay) reach it at
    labels: tuple[tuple[str, str], ...] = ()  # engine/node labels as sorted (key, value) pairs
    version: str = ""  # the agent's version string

    def size(self) -> int:
        """A rough encoded size in bytes, used to budget piggybacked messages per packet."""
        return 8 + len(self.node_id) + len(self.role) + len(self.addr) + len(self.version) + sum(
            4 + len(k) + len(v) for k, v in self.labels
        )


class WireState(enum.IntEnum):
    """A member's state as a push-pull entry carries it (numbers are the wire's: only append)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class Ping:
    """A direct probe: ``target`` must answer with an :class:`Ack` carrying ``seq``."""

    seq: int  # the sender's probe sequence number
    target: str  # the name of the node meant to answer (a stale address must not answer for it)
    source: str  # the sender's name


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """Asks the receiver to probe ``target`` on the sender's behalf and relay the outcome."""

    seq: int  # the requester's sequence number, echoed in the relayed Ack or Nack
    target: str  # the name of the node to probe
    target_addr: str  # where to reach it
    source: str  # the requester's name


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a :class:`Ping` (direct or relayed)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """A relay's report that the target it probed for an :class:`IndirectPing` did not answer.

    A missing nack tells the requester that the relay did not hear it either: Lifeguard counts
    that against the requester's own health.
    """

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """``node`` is alive at ``incarnation``; also how a node's address and metadata travel."""

    incarnation: int
    node: str
    address: str
    meta: NodeMeta

    def size(self) -> int:
        """A rough encoded size in bytes."""
        return 12 + len(self.node) + len(self.address) + self.meta.size()


@dataclass(frozen=True, slots=True)
class Suspect:
    """``source`` suspects ``node`` (at ``incarnation``) of having failed."""

    incarnation: int
    node: str
    source: str

    def size(self) -> int:
        """A rough encoded size in bytes."""
        return 12 + len(self.node) + len(self.source)


@dataclass(frozen=True, slots=True)
class Dead:
    """``source`` declares ``node`` dead; ``source == node`` means the node left gracefully."""

    incarnation: int
    node: str
    source: str

    def size(self) -> int:
        """A rough encoded size in bytes."""
        return 12 + len(self.node) + len(self.source)


@dataclass(frozen=True, slots=True)
class UserMsg:
    """One message on the user broadcast channel (the network database rides on it)."""

    origin: str  # the name of the node that broadcast it
    msg_id: int  # unique per origin, so receivers deliver it once
    topic: str
    payload: bytes

    def size(self) -> int:
        """A rough encoded size in bytes."""
        return 12 + len(self.origin) + len(self.topic) + len(self.payload)


@dataclass(frozen=True, slots=True)
class PushPullEntry:
    """One member as a push-pull exchange carries it."""

    name: str
    address: str
    meta: NodeMeta
    incarnation: int
    state: WireState


@dataclass(frozen=True, slots=True)
class PushPull:
    """A full-state exchange (over the reliable half): the sender's whole member list."""

    source: str  # the sender's name
    entries: tuple[PushPullEntry, ...]
    join: bool  # the sender is joining: the receiver answers even if it never heard of it
    reply: bool  # this is the answer to a PushPull, not to be answered again


@dataclass(frozen=True, slots=True)
class Compound:
    """Several messages in one packet: a probe message with gossip piggybacked on it."""

    parts: tuple[Message, ...]


#: The messages that are gossiped (queued and piggybacked) rather than sent point to point.
Broadcastable = Alive | Suspect | Dead | UserMsg

#: Every message a SWIM node may receive.
Message = Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead | UserMsg | PushPull | Compound
