"""Link faults an agent injects into its own transport: drop, delay, duplicate, partition.

The kernel here has no netem, so chaos on links is done by the agents themselves: each agent
holds a list of :class:`LinkFaultRule` and its transport asks :class:`LinkFaults` what to do
with every message it sends or receives. Rules arrive over the ``AgentAdmin`` gRPC service on
the gossip port (``SetLinkFaults``), which the ``swarmlet`` command line and tests call.

Every plane asks the same rules, each in its own way (:mod:`nodeagent.transport.planes` is the
asyncio side): gossip datagrams and the overlay's VXLAN frames are datagrams (:meth:`LinkFaults.on_packet`:
dropped, duplicated, delayed); Raft, the dispatcher session, forwarded writes, the network
database's syncs and the overlay's tunnels are streams (:meth:`LinkFaults.on_stream`): a stream
over a lossy link loses nothing but waits for the retransmission, as TCP does, and a duplicate
is discarded by the receiver's TCP, so only partition, delay and loss (as delay) act on it.

A partition is applied on both sides of the agent (nothing is sent to the peer and nothing
from it is accepted, where the plane can tell who sent it), so cutting a link needs only one of
its two ends to be told; ``swarmlet chaos partition`` tells both. Drop, delay and duplicate apply
to what this agent sends, as netem on its egress would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmlet.v1 import transport_pb2, transport_pb2_grpc

_generated: Any = transport_pb2_grpc

__all__ = [
    "FaultDecision",
    "LinkFaultRule",
    "LinkFaults",
    "faults_from_proto",
    "faults_to_proto",
    "get_link_faults",
    "member_view",
    "rules_without",
    "set_link_faults",
]

RETRANSMIT_S = 0.2
"""What a lost segment costs a stream: Linux's minimum retransmission timeout (doubling each
time the retransmission is lost too, up to :data:`RETRANSMIT_MAX_S`)."""
RETRANSMIT_MAX_S = 3.2


@dataclass(frozen=True)
class LinkFaultRule:
    """One rule. Probabilities are 0..1; the delay is seconds."""

    peers: tuple[str, ...] = ()
    """Gossip addresses ``host:port`` or bare hosts it applies to; empty means every peer."""
    drop: float = 0.0
    """Chance a datagram to one of the peers is dropped."""
    delay: float = 0.0
    """Extra one-way delay added to every message to one of the peers."""
    duplicate: float = 0.0
    """Chance a datagram to one of the peers is sent twice."""
    partition: bool = False
    """Nothing is sent to or accepted from the peers."""

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        # An hour is far beyond any protocol timer; more is a typo, not a test.
        if not 0.0 <= self.delay <= 3600.0:
            raise ValueError(f"delay must be between 0 and 3600 seconds, got {self.delay!r}")
        for peer in self.peers:
            if not peer or any(c.isspace() for c in peer):
                raise ValueError(f"peer {peer!r} is not an address")

    def matches(self, peer: str) -> bool:
        """Whether this rule applies to ``peer`` (a ``host:port`` address)."""
        if not self.peers:
            return True
        host = peer.rpartition(":")[0] or peer
        return peer in self.peers or host in self.peers or host.strip("[]") in self.peers


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one outgoing message: send it ``copies`` times, each after ``delay`` s."""

    copies: int
    delay: float


_CLEAN = FaultDecision(copies=1, delay=0.0)


@dataclass
class LinkFaults:
    """The rules in force, and counts of what they did (for the metrics)."""

    rules: tuple[LinkFaultRule, ...] = ()
    on_fault: Callable[[str, str], None] | None = None
    """Called with the kind (``drop``, ``delay``, ``duplicate``, ``partition``) and the plane
    (``gossip``, ``raft``, ``dispatcher``, ``control``, ``networkdb``, ``overlay``) each time a
    fault acts."""
    counts: dict[str, int] = field(default_factory=dict)
    """Faults that acted, by kind (every plane together)."""

    def set_rules(self, rules: Iterable[LinkFaultRule]) -> None:
        """Replace every rule at once (an empty list heals every link)."""
        self.rules = tuple(rules)

    def blocked(self, peer: str, plane: str = "gossip") -> bool:
        """Whether traffic with ``peer`` is partitioned away (in either direction)."""
        for rule in self.rules:
            if rule.partition and rule.matches(peer):
                self._count("partition", plane)
                return True
        return False

    def on_packet(self, peer: str, rng: random.Random, plane: str = "gossip") -> FaultDecision:
        """Decide the fate of one outgoing datagram: copies 0 means dropped."""
        if not self.rules:
            return _CLEAN
        if self.blocked(peer, plane):
            return FaultDecision(copies=0, delay=0.0)
        copies, delay = 1, 0.0
        for rule in self._matching(peer):
            if rule.drop and rng.random() < rule.drop:
                self._count("drop", plane)
                return FaultDecision(copies=0, delay=0.0)
            if rule.duplicate and rng.random() < rule.duplicate:
                self._count("duplicate", plane)
                copies = 2
            delay += rule.delay
        if delay:
            self._count("delay", plane)
        return FaultDecision(copies=copies, delay=delay)

    def on_stream(self, peer: str, rng: random.Random | None = None, plane: str = "gossip") -> FaultDecision:
        """Decide the fate of one outgoing stream message: copies 0 means partitioned away.

        Partition and delay apply; with ``rng``, so does loss: each time the message is "lost"
        (with the rule's drop chance, again for each retransmission) it arrives a retransmission
        timeout later, as a TCP segment would. It is never dropped: the stream is reliable.
        """
        if not self.rules:
            return _CLEAN
        if self.blocked(peer, plane):
            return FaultDecision(copies=0, delay=0.0)
        delay = 0.0
        for rule in self._matching(peer):
            delay += rule.delay
            if rng is not None and rule.drop:
                wait = RETRANSMIT_S
                lost = False
                while rng.random() < rule.drop and wait <= RETRANSMIT_MAX_S:
                    lost = True
                    delay += wait
                    wait *= 2
                if lost:
                    self._count("drop", plane)
        if delay:
            self._count("delay", plane)
        return FaultDecision(copies=1, delay=delay)

    def _matching(self, peer: str) -> Sequence[LinkFaultRule]:
        return [rule for rule in self.rules if rule.matches(peer)]

    def _count(self, kind: str, plane: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.on_fault is not None:
            self.on_fault(kind, plane)


def rules_without(rules: Sequence[LinkFaultRule], names: Iterable[str]) -> list[LinkFaultRule]:
    """``rules`` less those naming any of ``names`` (a node's hostname, id or address) among
    their peers: what stays in force on a node when the links with those nodes heal."""
    gone = set(names)
    return [rule for rule in rules if not (gone & set(rule.peers))]


# Wire form and a small synchronous client (for `swarmlet chaos` and tests) ----------------------
def faults_from_proto(message: transport_pb2.LinkFaults) -> list[LinkFaultRule]:
    """Rules from their wire form; raise ValueError on an invalid one."""
    return [
        LinkFaultRule(peers=tuple(r.peers), drop=r.drop, delay=r.delay, duplicate=r.duplicate,
                      partition=r.partition)
        for r in message.rules
    ]


def faults_to_proto(rules: Sequence[LinkFaultRule]) -> transport_pb2.LinkFaults:
    """Rules in their wire form."""
    return transport_pb2.LinkFaults(rules=[
        transport_pb2.LinkFaultRule(peers=list(r.peers), drop=r.drop, delay=r.delay, duplicate=r.duplicate,
                                    partition=r.partition)
        for r in rules
    ])


def _admin_call(target: str, method: str, request: Any, timeout: float) -> Any:
    import grpc  # only the client needs it; the rules above stay importable without a network stack

    from nodeagent import tls

    with tls.channel(target, manager=False, sync=True) as channel:
        try:
            return getattr(_generated.AgentAdminStub(channel), method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValueError(details) from None
            raise ConnectionError(f"cannot reach the node agent at {target}: {details}") from None


def set_link_faults(target: str, rules: Sequence[LinkFaultRule], timeout: float = 3.0) -> list[LinkFaultRule]:
    """Replace the link faults of the agent whose gossip port is ``target`` (``host:port``).

    An empty ``rules`` heals every link. Returns the rules now in force. Raises ValueError when
    the agent refuses a rule, ConnectionError when it cannot be reached.
    """
    reply = _admin_call(target, "SetLinkFaults", faults_to_proto(rules), timeout)
    return faults_from_proto(reply)


def get_link_faults(target: str, timeout: float = 3.0) -> list[LinkFaultRule]:
    """The link faults in force on the agent at ``target``."""
    return faults_from_proto(_admin_call(target, "GetLinkFaults", transport_pb2.LinkFaults(), timeout))


def member_view(target: str, timeout: float = 3.0) -> list[dict[str, object]]:
    """The gossip membership as the agent at ``target`` sees it: one dict per member
    (name, address, state, incarnation, role, hostname, and ``self`` for the agent itself)."""
    reply = _admin_call(target, "Members", transport_pb2.MembersRequest(), timeout)
    return [
        {"name": m.name, "address": m.address, "state": m.state, "incarnation": m.incarnation,
         "role": m.role, "hostname": m.hostname, "self": m.name == reply.self}
        for m in reply.members
    ]
