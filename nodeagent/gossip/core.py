"""The SWIM + Lifeguard membership core. It does no I/O.

Every rule of the protocol lives in this file, read top to bottom:

* **Probing** (SWIM): every ``probe_interval`` the node pings the next member of a shuffled
  round-robin list. With the "staggered" schedule (the default) every node derives the same order
  and probes, in each slot of a clock the nodes share, the member a slot-dependent distance ahead of
  itself, so each member is probed by exactly one node per interval (:mod:`.schedule`).
  No ack within ``probe_timeout``: it asks ``indirect_checks`` members to ping
  the target for it and, as memberlist does, sends a ping over the reliable half too. No ack by
  the end of the interval: the target becomes *suspect*.
* **Suspicion** (Lifeguard): a suspect is declared *dead* when its timer runs out. The timer
  starts at ``max`` and falls towards ``min`` as independent accusers confirm the suspicion
  (:func:`timing.remaining_suspicion_time`). A probe of a suspect carries the suspicion, so the
  suspect hears of it directly and can refute.
* **Incarnations**: only the node itself raises its incarnation, to refute a suspicion or death
  claim about itself; a claim about a member counts only at or above the incarnation known. A
  restarted node starts at 0 again: any record of itself in the answer to its join belongs to a
  former self, and it outbids it. A claim about itself below its incarnation is answered with
  its alive (the sender missed it); a ping from a member held dead or left is acked with that
  claim, so the member can refute or answer it.
* **Local health** (Lifeguard): missed acks and nacks, and having to refute, raise a score that
  stretches this node's own probe interval and timeout; successful probes lower it.
* **Dissemination**: alive, suspect, dead and user messages are queued and piggybacked on probe
  traffic and on gossip rounds (every ``gossip_interval`` to ``gossip_nodes`` random members,
  skipped when nothing is queued). Each is sent ``retransmit_mult * ceil(log10(N+1))`` times,
  least-sent first, and a newer message about a member replaces the queued older one.
* **Anti-entropy**: every ``push_pull_interval`` (stretched above 32 nodes) the node swaps its whole
  member list with one random live member over the reliable half; every ``reconnect_interval`` it
  tries one dead member too, so that the two sides of a healed partition find each other again.
  A remote "dead" is merged as a suspicion: the accused gets its chance to refute.
* **Leave**: a leaving node gossips ``Dead(node=self, source=self)``; members record it as *left*.

The shell calls :meth:`Swim.tick` at :meth:`Swim.next_deadline`, :meth:`Swim.handle` for every
message, and after each call drains :meth:`Swim.take_outbox` into its transport.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.members import BroadcastQueue, ConvergedView, Member, MemberState, MemberTable
from nodeagent.gossip.messages import (
    Ack,
    Alive,
    Broadcastable,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
    UserMsg,
    WireState,
)
from nodeagent.gossip.schedule import ProbeOrder, order_key, slot_offset
from nodeagent.gossip.timing import (
    push_pull_scale,
    remaining_suspicion_time,
    retransmit_limit,
    scale_timeout,
    suspicion_confirmations,
    suspicion_timeout,
)

__all__ = [
    "ConvergedView",
    "Member",
    "MemberEvent",
    "MemberState",
    "Outgoing",
    "Swim",
    "SwimStats",
    "UserMessage",
]

_INF = math.inf
# Round-trip samples kept for the shell to drain; beyond this many, new ones are not recorded.
_RTT_SAMPLES_CAP = 4096
# How many user messages are remembered to deliver each once (oldest forgotten first).
_USER_SEEN_CAP = 65_536


_TO_WIRE = {
    MemberState.ALIVE: WireState.ALIVE,
    MemberState.SUSPECT: WireState.SUSPECT,
    MemberState.DEAD: WireState.DEAD,
    MemberState.LEFT: WireState.LEFT,
}
_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


def _entry(m: Member) -> PushPullEntry:
    return PushPullEntry(m.name, m.address, m.meta, m.incarnation, _TO_WIRE[m.state])


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the shell must send: over the reliable half when ``reliable``."""

    to: str  # the peer's address
    message: Message
    reliable: bool


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A member joined, changed state or changed its address or metadata."""

    name: str
    address: str
    state: MemberState
    incarnation: int
    meta: NodeMeta


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A message of the user broadcast channel, delivered once per node."""

    topic: str
    payload: bytes
    origin: str


@dataclass(slots=True)
class SwimStats:
    """Counters for the shell's metrics. They only grow."""

    probes_sent: int = 0  # direct probes started
    probes_failed: int = 0  # probes that ended with no ack at all
    suspicions_raised: int = 0  # members this node started to suspect (on any accuser's word)
    suspicions_refuted: int = 0  # accusations about this node it refuted
    msgs_in: int = 0  # messages handled (a compound counts once)
    msgs_out: int = 0  # messages put in the outbox
    dropped_invalid: int = 0  # unknown or malformed messages dropped
    dropped_misdirected: int = 0  # pings meant for another node (a stale address)
    rtt_samples: list[float] = field(default_factory=list)


class _Suspicion:
    """One running suspicion timer and the accusers that confirmed it."""

    __slots__ = ("accusers", "deadline", "incarnation", "k", "max", "min", "n", "start")

    def __init__(self, incarnation: int, start: float, k: int, min_: float, max_: float, first: str) -> None:
        self.incarnation = incarnation
        self.start = start
        self.k = k
        self.min = min_
        self.max = max_
        self.n = 0  # confirmations beyond the first accuser
        self.accusers = {first}
        self.deadline = start + remaining_suspicion_time(0, k, 0.0, min_, max_)

    def confirm(self, accuser: str) -> bool:
        """Count an independent accuser; True when it was new (and the deadline moved)."""
        if self.n >= self.k or accuser in self.accusers:
            return False
        self.accusers.add(accuser)
        self.n += 1
        self.deadline = self.start + remaining_suspicion_time(self.n, self.k, 0.0, self.min, self.max)
        return True


class _Probe:
    """The probe in flight: direct phase (stage 0) until its timeout, then indirect (stage 1)."""

    __slots__ = ("end_at", "expected_nacks", "nacks", "seq", "stage", "started", "target", "timeout_at")

    def __init__(self, target: str, seq: int, started: float, timeout_at: float, end_at: float) -> None:
        self.target = target
        self.seq = seq
        self.started = started
        self.timeout_at = timeout_at
        self.end_at = end_at
        self.stage = 0
        self.expected_nacks = 0
        self.nacks = 0


class Swim:
    """One node's SWIM + Lifeguard state machine. Single-threaded; no I/O, no clock of its own."""

    def __init__(
        self,
        config: GossipConfig,
        name: str,
        address: str,
        meta: NodeMeta,
        rng: random.Random,
        now: float,
        incarnation: int = 0,
        *,
        clock_offset: float = 0.0,
    ) -> None:
        if not name:
            raise ValueError("Swim name must not be empty")
        if not address:
            raise ValueError("Swim address must not be empty")
        if incarnation < 0:
            raise ValueError(f"Swim incarnation must be >= 0, got {incarnation}")
        if not math.isfinite(clock_offset):
            raise ValueError(f"Swim clock_offset must be a finite number of seconds, got {clock_offset}")
        self.config = config
        # now + clock_offset is a clock every node shares (wall-clock seconds for a real shell; the
        # virtual clock in the simulator): the staggered schedule aligns probe slots on it.
        self.clock_offset = clock_offset
        self.name = name
        self.address = address
        self.meta = meta
        self.rng = rng
        self.incarnation = incarnation
        self._first_incarnation = incarnation  # what this process started with
        self.stats = SwimStats()
        self._self = Member(name, address, meta, MemberState.ALIVE, incarnation, now)
        self._members = MemberTable()
        self._members.add(self._self)
        self._n_live = 1  # members alive or suspect, this node included
        self._dead: set[str] = set()  # members DEAD (not LEFT): reconnect candidates
        # Shuffled round robin: round r visits position (a * i + b) mod n for i = 0 .. n-1, a random
        # permutation that needs no per-node list (a 10,000-node simulation cannot afford N lists).
        self._round_a = 1
        self._round_b = 0
        self._round_n = 0
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._seq = 0
        self._health = 0
        self._left = False
        self._suspicions: dict[str, _Suspicion] = {}
        self._relays: dict[int, tuple[str, int, float]] = {}  # our seq -> (requester, its seq, deadline)
        self._timers: list[tuple[float, int, str, Any]] = []  # (when, order, kind, key), lazily cancelled
        self._timer_order = 0
        self._queue = BroadcastQueue()
        self._user_seq = 0
        self._user_seen: dict[tuple[str, int], None] = {}
        self._now = now  # the latest time the shell told us
        self._outbox: list[Outgoing] = []
        self._events: list[MemberEvent | UserMessage] = []
        # Staggered start, as memberlist's tickers: nodes started together do not probe in lockstep.
        self._next_probe = now + rng.random() * config.probe_interval
        # Staggered schedule: the live members in the order every node derives, and the slot of
        # the next probe tick (None with the independent schedule).
        self._self_key = order_key(name)
        self._order: ProbeOrder | None = None
        self._probe_slot = 0
        if config.probe_schedule == "staggered":
            self._order = ProbeOrder()
            self._order.add(name)
            self._probe_slot = math.floor((self._next_probe + clock_offset) / config.probe_interval)
        self._gossip_phase = now + rng.random() * config.gossip_interval
        self._next_gossip = _INF
        self._next_push_pull = now + rng.random() * config.push_pull_interval
        self._next_reconnect = now + config.reconnect_interval * (1.0 + rng.random())
        self._dispatch: dict[type, Callable[[float, str, Any, bool], None]] = {
            Ping: self._on_ping,
            IndirectPing: self._on_indirect_ping,
            Ack: self._on_ack,
            Nack: self._on_nack,
            Alive: self._on_alive_msg,
            Suspect: self._on_suspect_msg,
            Dead: self._on_dead_msg,
            UserMsg: self._on_user_msg,
            PushPull: self._on_push_pull,
        }
        self._enqueue(("n", name), self._alive_self())

    # Public API ---------------------------------------------------------------------------------
    def join(self, now: float, seeds: Sequence[str]) -> None:
        """Exchange full state with every seed address (over the reliable half)."""
        self._now = now
        for address in seeds:
            if address != self.address:
                self._send(address, self._push_pull(join=True, reply=False), reliable=True)

    def assume_converged(self, view: ConvergedView, now: float) -> None:
        """Start as if long converged: know ``view``'s members, raise no event, queue no gossip.

        For benchmarks that skip a large cluster's join storm (every node shares ``view``, read
        only); a real node joins through seeds. Call before anything else.
        """
        table = MemberTable(view)
        table.add(self._self)
        self._members = table
        self._n_live = view.live + (0 if self.name in view.members else 1)
        self._dead = set(view.dead)
        if self._order is not None:
            self._order = ProbeOrder(view.probe_base(), view.not_live)
            self._order.add(self.name)
            # Long converged: tick at this node's place in the stagger from the first slot on.
            slot = math.floor((now + self.clock_offset) / self.config.probe_interval)
            self._probe_slot, self._next_probe = self._slot_time(slot, now)
        self._queue = BroadcastQueue()
        self._next_gossip = _INF
        # A converged cluster's push-pull timers are spread over the whole (stretched) interval.
        interval = push_pull_scale(self.config.push_pull_interval, self._n_live)
        self._next_push_pull = now + self.rng.random() * interval

    def leave(self, now: float) -> None:
        """Leave gracefully: stop probing and gossip that this node left."""
        self._now = now
        if self._left:
            return
        self._left = True
        self._self.state = MemberState.LEFT
        self._self.state_change = now
        self._n_live -= 1
        self._order_remove(self.name)
        self._probe = None
        self._emit_member(self._self)
        self._enqueue(("n", self.name), Dead(self.incarnation, self.name, self.name))

    def set_meta(self, now: float, meta: NodeMeta) -> None:
        """Change this node's metadata; it is gossiped with a new incarnation, so it wins everywhere."""
        self._now = now
        if self._left:
            raise ValueError("a node that left cannot change its metadata")
        self.meta = meta
        self._self.meta = meta
        self.incarnation += 1
        self._self.incarnation = self.incarnation
        self._emit_member(self._self)
        self._enqueue(("n", self.name), self._alive_self())

    def handle(self, now: float, sender: str, message: object, reliable: bool) -> None:
        """Take one message from ``sender`` (an address). Unknown or malformed ones are dropped."""
        self._now = now
        self.stats.msgs_in += 1
        if type(message) is Compound:
            parts = message.parts
            if type(parts) is not tuple:
                self.stats.dropped_invalid += 1
                return
            for part in parts:
                self._handle_one(now, sender, part, reliable)
        else:
            self._handle_one(now, sender, message, reliable)

    def tick(self, now: float) -> None:
        """Fire every timer due at or before ``now``."""
        self._now = now
        while True:
            when, action = self._earliest()
            if when > now:
                return
            action(now)

    def next_deadline(self) -> float:
        """When :meth:`tick` must be called next (``inf`` when nothing is scheduled)."""
        return self._earliest()[0]

    def broadcast(self, now: float, topic: str, payload: bytes) -> None:
        """Gossip ``payload`` under ``topic`` to every member, once each."""
        self._now = now
        if not isinstance(topic, str) or not topic:
            raise ValueError("broadcast topic must be a non-empty string")
        if not isinstance(payload, bytes):
            raise ValueError("broadcast payload must be bytes")
        if len(payload) > self.config.max_user_payload:
            raise ValueError(
                f"broadcast payload is {len(payload)} bytes; the limit is {self.config.max_user_payload}"
            )
        self._user_seq += 1
        msg = UserMsg(self.name, self._user_seq, topic, payload)
        self._remember_user(msg)
        self._enqueue(("u", self.name, msg.msg_id), msg)

    def take_outbox(self) -> list[Outgoing]:
        """The messages to send since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[MemberEvent | UserMessage]:
        """Member changes and user messages since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    def take_rtt_samples(self) -> list[float]:
        """Direct-probe round-trip times (seconds) measured since the last call."""
        samples, self.stats.rtt_samples = self.stats.rtt_samples, []
        return samples

    def members(self) -> list[Member]:
        """Every member this node knows, itself included (copies)."""
        return [m.copy() for m in self._members]

    def member(self, name: str) -> Member | None:
        """The member called ``name`` as this node sees it (the live record: do not modify)."""
        return self._members.get(name)

    @property
    def health(self) -> int:
        """Lifeguard's local health score: 0 is healthy; timeouts stretch by ``health + 1``."""
        return self._health

    @property
    def live_count(self) -> int:
        """How many members (this node included) are alive or suspect in this node's view."""
        return self._n_live

    def pending_broadcasts(self) -> int:
        """How many messages still wait to be gossiped (a leaving node waits for 0)."""
        return len(self._queue)

    # Timers ---------------------------------------------------------------------------------------
    def _earliest(self) -> tuple[float, Callable[[float], None]]:
        when: float = self._next_probe
        action: Callable[[float], None] = self._probe_tick
        probe = self._probe
        if probe is not None:
            due = probe.timeout_at if probe.stage == 0 else probe.end_at
            if due <= when:  # a probe ends before the next one starts
                when, action = due, self._probe_stage
        if self._next_gossip < when:
            when, action = self._next_gossip, self._gossip_tick
        if self._next_push_pull < when:
            when, action = self._next_push_pull, self._push_pull_tick
        if self._next_reconnect < when:
            when, action = self._next_reconnect, self._reconnect_tick
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        if timers and timers[0][0] < when:
            when, action = timers[0][0], self._timer_tick
        return when, action

    def _add_timer(self, when: float, kind: str, key: Any) -> None:
        self._timer_order += 1
        heapq.heappush(self._timers, (when, self._timer_order, kind, key))

    def _timer_live(self, entry: tuple[float, int, str, Any]) -> bool:
        when, _, kind, key = entry
        if kind == "suspect":
            s = self._suspicions.get(key)
            return s is not None and s.deadline == when
        relay = self._relays.get(key)
        return relay is not None and relay[2] == when

    def _timer_tick(self, now: float) -> None:
        _, _, kind, key = heapq.heappop(self._timers)
        if kind == "suspect":
            suspicion = self._suspicions.pop(key)
            member = self._members.get(key)
            if member is not None and member.state is MemberState.SUSPECT and (
                member.incarnation == suspicion.incarnation
            ):
                self._apply_dead(now, Dead(member.incarnation, key, self.name))
        else:
            requester, their_seq, _ = self._relays.pop(key)
            # The target did not answer us either: say so, so the requester can tell a dead
            # target from its own bad network (Lifeguard's nack).
            self._send(requester, Nack(their_seq), reliable=False)

    # Probing ----------------------------------------------------------------------------------------
    def _probe_tick(self, now: float) -> None:
        cfg = self.config
        due = self._next_probe  # when this tick was due: a real shell calls a little later
        interval = scale_timeout(cfg.probe_interval, self._health)
        end = now + interval
        if self._order is None:
            self._next_probe = end
            target = None if self._left else self._next_target()
        else:
            slot = self._probe_slot
            target = None if self._left else self._slot_target(slot)
            # A degraded node (health h) sits out h slots; the probe keeps its whole interval.
            # The next tick counts from when this one was due, not from when the shell got round
            # to it: an event loop always wakes a little late, and counted from ``now`` every tick
            # sat out one slot, so the node stepped two slots at a time and, with n - 1 even,
            # probed only half its peers; with unlucky phases nobody probed a member at all
            # (docs/gossip.md, "A late tick cost a slot"). A tick later than the slack still sits
            # out slots, so that its probe keeps time for the direct and the indirect phase.
            anchor = due if now - due <= (cfg.probe_interval - cfg.probe_timeout) / 2 else now
            self._probe_slot, self._next_probe = self._slot_time(slot + self._health + 1, anchor + interval)
            end = min(end, self._next_probe)
        if target is None:
            return
        self._seq += 1
        timeout = scale_timeout(cfg.probe_timeout, self._health)
        self._probe = _Probe(target.name, self._seq, now, now + timeout, end)
        self.stats.probes_sent += 1
        ping = Ping(self._seq, target.name, self.name)
        if target.state is MemberState.SUSPECT:
            # Lifeguard: tell a suspect it is suspected, so it can refute before it is declared dead.
            self._send_packet(target.address, [ping, Suspect(target.incarnation, target.name, self.name)])
        else:
            self._send_packet(target.address, [ping])

    def _slot_target(self, slot: int) -> Member | None:
        """The staggered schedule's target in ``slot``: ``slot_offset`` places ahead in the order."""
        order = self._order
        assert order is not None
        n = len(order)
        if n < 2:
            return None
        position = (order.rank(self._self_key) + slot_offset(slot, n)) % n
        member = self._members.get(order.select(position))
        if member is None or member.state not in _LIVE or member.name == self.name:
            return None  # cannot happen while the order follows the table; never probe oneself
        return member

    def _slot_time(self, slot: int, not_before: float) -> tuple[int, float]:
        """The first slot from ``slot`` whose tick, at this node's phase, is not before ``not_before``.

        The phase ``interval * (n - 1 - q) / n`` spreads the n nodes evenly over the slot, in the
        reverse of the probe order, so that a member's successive probers tick about one interval
        apart. When the view changes the phase moves; if it moves earlier than the end of the
        probe in flight, the node sits out one slot rather than cut its probe short.
        """
        order = self._order
        assert order is not None
        interval = self.config.probe_interval
        n = len(order)
        phase = 0.0
        if n > 1 and not self._left:
            phase = interval * (n - 1 - order.rank(self._self_key)) / n
        when = slot * interval + phase - self.clock_offset
        # Tolerance: floating-point noise must not cost a slot when the phase did not move. With a
        # wall-clock offset (1.8e9 s) the noise is a few 1e-7 s; a phase moves by interval / n.
        while when < not_before - (1e-5 * interval + 2e-6):
            slot += 1
            when += interval
        return slot, when

    def _order_add(self, name: str) -> None:
        if self._order is not None:
            self._order.add(name)

    def _order_remove(self, name: str) -> None:
        if self._order is not None:
            self._order.remove(name)

    def _next_target(self) -> Member | None:
        members = self._members
        for _ in range(len(members) + 2):
            if self._probe_index >= self._round_n:
                self._new_round()
                if self._round_n == 0:
                    return None
            i = self._probe_index
            self._probe_index += 1
            name = members.name_at((self._round_a * i + self._round_b) % self._round_n)
            if name == self.name:
                continue
            member = members.get(name)
            if member is not None and member.state in _LIVE:
                return member
        return None

    def _new_round(self) -> None:
        n = len(self._members)
        self._probe_index = 0
        self._round_n = n
        if n <= 1:
            self._round_n = 0
            return
        rng = self.rng
        a = 1 + rng.randrange(n - 1)
        while math.gcd(a, n) != 1:
            a = 1 + rng.randrange(n - 1)
        self._round_a = a
        self._round_b = rng.randrange(n)

    def _probe_stage(self, now: float) -> None:
        probe = self._probe
        assert probe is not None
        target = self._members.get(probe.target)
        if target is None or target.state not in _LIVE:
            self._probe = None  # it was declared dead or left meanwhile: nothing to find out
            return
        if probe.stage == 0:
            probe.stage = 1
            relays = self._random_members(
                self.config.indirect_checks,
                lambda m: m.state is MemberState.ALIVE and m.name != probe.target,
            )
            for relay in relays:
                req = IndirectPing(probe.seq, target.name, target.address, self.name)
                self._send_packet(relay.address, [req])
            probe.expected_nacks = len(relays)
            # memberlist's fallback: a ping over the reliable half gets through where packets are lost.
            self._send(target.address, Ping(probe.seq, target.name, self.name), reliable=True)
            return
        # The interval ended with no ack from anyone.
        self._probe = None
        self.stats.probes_failed += 1
        if probe.expected_nacks > 0:
            # Relays that did not even nack suggest the trouble is on our side.
            self._adjust_health(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._adjust_health(1)
        self._apply_suspect(now, Suspect(target.incarnation, target.name, self.name))

    def _adjust_health(self, delta: int) -> None:
        self._health = min(max(self._health + delta, 0), self.config.awareness_max_multiplier - 1)

    def _random_members(self, k: int, accept: Callable[[Member], bool]) -> list[Member]:
        """Up to ``k`` distinct random other members passing ``accept``, in O(k) expected time."""
        members = self._members
        count = len(members)
        chosen: list[Member] = []
        if count <= 1 or k <= 0:
            return chosen
        seen: set[str] = {self.name}
        rand = self.rng.random
        for _ in range(3 * count if count < 3 * k else 3 * k + 8):
            name = members.name_at(int(rand() * count))
            if name in seen:
                continue
            seen.add(name)
            member = members.get(name)
            if member is not None and accept(member):
                chosen.append(member)
                if len(chosen) >= k:
                    break
        return chosen

    # Message handlers ---------------------------------------------------------------------------------
    def _handle_one(self, now: float, sender: str, message: object, reliable: bool) -> None:
        handler = self._dispatch.get(type(message))
        if handler is None:
            self.stats.dropped_invalid += 1
            return
        try:
            handler(now, sender, message, reliable)
        except (TypeError, ValueError, AttributeError):
            # A message of a known kind with fields of the wrong type: drop it, stay up.
            self.stats.dropped_invalid += 1

    def _on_ping(self, now: float, sender: str, ping: Ping, reliable: bool) -> None:
        if ping.target != self.name:
            self.stats.dropped_misdirected += 1
            return
        answer: list[Message] = [Ack(ping.seq)]
        prober = self._members.get(ping.source) if type(ping.source) is str else None
        if prober is not None and prober.state not in _LIVE and prober.name != self.name:
            # A member we hold dead or left probes us: it is running after all (restarted, or
            # back from a partition) and may not know what we hold. Tell it, as Lifeguard tells
            # a suspect: it refutes, or answers a stale claim with its newer alive.
            left = prober.state is MemberState.LEFT
            answer.append(Dead(prober.incarnation, prober.name, prober.name if left else self.name))
        if reliable:
            self._send(sender, answer[0] if len(answer) == 1 else Compound(tuple(answer)), reliable=True)
        else:
            self._send_packet(sender, answer)

    def _on_indirect_ping(self, now: float, sender: str, req: IndirectPing, reliable: bool) -> None:
        self._seq += 1
        deadline = now + self.config.probe_timeout
        self._relays[self._seq] = (sender, req.seq, deadline)
        self._add_timer(deadline, "relay", self._seq)
        self._send_packet(req.target_addr, [Ping(self._seq, req.target, self.name)])

    def _on_ack(self, now: float, sender: str, ack: Ack, reliable: bool) -> None:
        probe = self._probe
        if probe is not None and ack.seq == probe.seq:
            self._probe = None
            if probe.stage == 0:
                self._adjust_health(-1)
                if len(self.stats.rtt_samples) < _RTT_SAMPLES_CAP:  # a shell that never drains them
                    self.stats.rtt_samples.append(now - probe.started)
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self._send_packet(relay[0], [Ack(relay[1])])

    def _on_nack(self, now: float, sender: str, nack: Nack, reliable: bool) -> None:
        probe = self._probe
        if probe is not None and nack.seq == probe.seq:
            probe.nacks += 1

    def _on_alive_msg(self, now: float, sender: str, msg: Alive, reliable: bool) -> None:
        self._apply_alive(now, msg)

    def _on_suspect_msg(self, now: float, sender: str, msg: Suspect, reliable: bool) -> None:
        self._apply_suspect(now, msg, sender)

    def _on_dead_msg(self, now: float, sender: str, msg: Dead, reliable: bool) -> None:
        self._apply_dead(now, msg, sender)

    def _on_user_msg(self, now: float, sender: str, msg: UserMsg, reliable: bool) -> None:
        key = (msg.origin, msg.msg_id)
        if key in self._user_seen:
            return
        self._remember_user(msg)
        self._events.append(UserMessage(msg.topic, msg.payload, msg.origin))
        self._enqueue(("u", msg.origin, msg.msg_id), msg)

    def _on_push_pull(self, now: float, sender: str, msg: PushPull, reliable: bool) -> None:
        if not msg.reply:
            # Answer with our state as it was before the merge, as memberlist does; the answer
            # carries the join flag back (memberlist's sendLocalState(conn, join)).
            self._send(sender, self._push_pull(join=msg.join, reply=True), reliable=True)
        elif msg.join and not self._left:
            self._outbid_former_self(now, msg.entries)
        members = self._members
        for e in msg.entries:
            if e.state is WireState.ALIVE:
                known = members.get(e.name)
                if known is not None and e.incarnation <= known.incarnation and e.name != self.name:
                    continue  # nothing new: the common case, kept cheap for large clusters
                self._apply_alive(now, Alive(e.incarnation, e.name, e.address, e.meta))
            elif e.state is WireState.LEFT:
                self._apply_dead(now, Dead(e.incarnation, e.name, e.name))
            else:
                # Another node's "dead" is only a suspicion here: the accused may refute it.
                self._apply_suspect(now, Suspect(e.incarnation, e.name, self.name))

    def _outbid_former_self(self, now: float, entries: Sequence[PushPullEntry]) -> None:
        """The answer to our join holds a record of us at or above our incarnation: outbid it.

        Whatever the cluster held of us before it heard our join belongs to a former self: the
        agent restarted (with incarnation 0, as memberlist's nodes do) and the others still hold
        the old process, alive, suspect, dead or left, at an incarnation as high as ours or
        higher. A record in another state is refuted by the merge anyway; an *alive* one at our
        own incarnation is not (memberlist ignores it), and that leaves a window: the old
        process's leave, or a suspicion of it, may still be spreading and would then land on
        the new process, which nobody would tell (no one gossips to a member that left) until
        its next push-pull. Raised above the record, our alive beats every such message.
        """
        for e in entries:
            if e.name != self.name:
                continue
            if e.incarnation < self.incarnation:
                return
            if (e.incarnation == self.incarnation and self.incarnation != self._first_incarnation
                    and e.state is WireState.ALIVE and e.address == self.address and e.meta == self.meta):
                return  # our own alive, already spread by this process (we joined through several seeds)
            self._refute(now, e.incarnation, accused_now=False)
            return

    # State changes --------------------------------------------------------------------------------------
    def _apply_alive(self, now: float, msg: Alive) -> None:
        if msg.incarnation < 0:
            raise ValueError("negative incarnation")
        if msg.node == self.name:
            if self._left:
                return
            if msg.incarnation > self.incarnation or (
                msg.incarnation == self.incarnation and (msg.address != self.address or msg.meta != self.meta)
            ):
                # Someone speaks for us with a newer or different record (a former self before a
                # restart, or an impostor): outbid it.
                self._refute(now, msg.incarnation)
            return
        member = self._members.get(msg.node)
        if member is None:
            member = Member(msg.node, msg.address, msg.meta, MemberState.ALIVE, msg.incarnation, now)
            self._members.add(member)
            self._n_live += 1
            self._order_add(msg.node)
            self._emit_member(member)
            self._enqueue(("n", msg.node), msg)
            return
        if msg.incarnation <= member.incarnation:
            return
        member = self._members.writable(msg.node)
        changed = member.address != msg.address or member.meta != msg.meta
        old = member.state
        member.incarnation = msg.incarnation
        member.address = msg.address
        member.meta = msg.meta
        if old is not MemberState.ALIVE:
            member.state = MemberState.ALIVE
            member.state_change = now
            self._suspicions.pop(msg.node, None)
            if old not in _LIVE:
                self._n_live += 1
                self._order_add(msg.node)
                self._dead.discard(msg.node)
            changed = True
        if changed:
            self._emit_member(member)
        self._enqueue(("n", msg.node), msg)

    def _apply_suspect(self, now: float, msg: Suspect, sender: str | None = None) -> None:
        member = self._members.get(msg.node)
        if member is None or msg.incarnation < member.incarnation:
            if msg.node == self.name:
                self._announce_again(sender)
            return
        if msg.node == self.name:
            if not self._left:
                self._refute(now, msg.incarnation)
            return
        if member.state is MemberState.SUSPECT:
            suspicion = self._suspicions.get(msg.node)
            if suspicion is not None and suspicion.confirm(msg.source):
                self._add_timer(suspicion.deadline, "suspect", msg.node)
                self._enqueue(("n", msg.node), msg)
            return
        if member.state is not MemberState.ALIVE:
            return
        member = self._members.writable(msg.node)
        member.state = MemberState.SUSPECT
        member.incarnation = msg.incarnation
        member.state_change = now
        cfg = self.config
        n = self._n_live
        min_ = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        k = suspicion_confirmations(cfg.suspicion_mult, n)
        max_ = min_ * cfg.suspicion_max_timeout_mult
        suspicion = _Suspicion(msg.incarnation, now, k, min_, max_, msg.source)
        self._suspicions[msg.node] = suspicion
        self._add_timer(suspicion.deadline, "suspect", msg.node)
        self.stats.suspicions_raised += 1
        self._emit_member(member)
        self._enqueue(("n", msg.node), msg)

    def _apply_dead(self, now: float, msg: Dead, sender: str | None = None) -> None:
        member = self._members.get(msg.node)
        if member is None or msg.incarnation < member.incarnation:
            if msg.node == self.name:
                self._announce_again(sender)
            return
        if member.state not in _LIVE:
            return
        if msg.node == self.name:
            self._refute(now, msg.incarnation)
            return
        self._suspicions.pop(msg.node, None)
        self._n_live -= 1
        self._order_remove(msg.node)
        member = self._members.writable(msg.node)
        left = msg.source == msg.node
        member.state = MemberState.LEFT if left else MemberState.DEAD
        if not left:
            self._dead.add(msg.node)
        member.incarnation = msg.incarnation
        member.state_change = now
        self._emit_member(member)
        self._enqueue(("n", msg.node), msg)

    def _refute(self, now: float, accused: int, *, accused_now: bool = True) -> None:
        self.incarnation = max(self.incarnation, accused) + 1
        self._self.incarnation = self.incarnation
        if accused_now:
            self.stats.suspicions_refuted += 1
            # Being accused hints that we are the slow one (Lifeguard): stretch our own timeouts.
            self._adjust_health(1)
        self._enqueue(("n", self.name), self._alive_self())

    def _announce_again(self, sender: str | None) -> None:
        """A claim about us below our incarnation: whoever spreads it missed our latest alive.

        Gossip is probabilistic: a refutation (or a restarted node's outbidding alive) may run
        out of retransmissions before some member hears it, and that member goes on to suspect
        us, declare us dead or spread our former self's leave. When such a claim reaches us,
        answer its sender with our alive, and queue it again if it is no longer queued, rather
        than leave those members wrong until their next push-pull. memberlist ignores such
        claims; this costs a packet per stale claim, and stale claims are rare.
        """
        if self._left:
            return
        if sender is not None and sender != self.address:
            self._send_packet(sender, [self._alive_self()])
        if not self._queue.has(("n", self.name)):
            self._enqueue(("n", self.name), self._alive_self())

    def _emit_member(self, m: Member) -> None:
        self._events.append(MemberEvent(m.name, m.address, m.state, m.incarnation, m.meta))

    def _remember_user(self, msg: UserMsg) -> None:
        seen = self._user_seen
        seen[(msg.origin, msg.msg_id)] = None
        if len(seen) > _USER_SEEN_CAP:
            del seen[next(iter(seen))]

    # Dissemination ------------------------------------------------------------------------------------
    def _alive_self(self) -> Alive:
        return Alive(self.incarnation, self.name, self.address, self.meta)

    def _enqueue(self, key: tuple[Any, ...], msg: Broadcastable) -> None:
        self._queue.push(key, msg)
        if self._next_gossip == _INF:
            # Resume gossip rounds on this node's fixed grid, as an ever-running ticker would.
            interval = self.config.gossip_interval
            phase = self._gossip_phase
            now = self._now
            steps = math.ceil((now - phase) / interval) if now > phase else 0
            self._next_gossip = phase + steps * interval

    def _gossip_tick(self, now: float) -> None:
        interval = self.config.gossip_interval
        self._next_gossip = now + interval
        queue = self._queue
        if not queue:
            self._next_gossip = _INF
            return
        gossip_window = self.config.gossip_to_dead_time
        # The recently dead get gossip too: if they are alive after all, they learn it and refute.
        targets = self._random_members(
            self.config.gossip_nodes,
            lambda m: m.state in _LIVE
            or (m.state is MemberState.DEAD and now - m.state_change < gossip_window),
        )
        limit = retransmit_limit(self.config.retransmit_mult, self._n_live)
        budget = self.config.packet_budget
        for target in targets:
            parts = queue.take(budget, limit)
            if not parts:
                break
            message = parts[0] if len(parts) == 1 else Compound(tuple(parts))
            self._send(target.address, message, reliable=False)

    def _send_packet(self, address: str, parts: list[Message]) -> None:
        """Send a packet, filling the room left in it with queued gossip."""
        if self._queue:
            limit = retransmit_limit(self.config.retransmit_mult, self._n_live)
            parts.extend(self._queue.take(self.config.packet_budget - 32 * len(parts), limit))
        self._send(address, parts[0] if len(parts) == 1 else Compound(tuple(parts)), reliable=False)

    def _send(self, address: str, message: Message, reliable: bool) -> None:
        self.stats.msgs_out += 1
        self._outbox.append(Outgoing(address, message, reliable))

    # Anti-entropy --------------------------------------------------------------------------------------
    def _push_pull(self, join: bool, reply: bool) -> PushPull:
        entries = self._members.entries(_entry)
        return PushPull(self.name, entries, join, reply)

    def _push_pull_tick(self, now: float) -> None:
        self._next_push_pull = now + push_pull_scale(self.config.push_pull_interval, self._n_live)
        if self._left:
            return
        peers = self._random_members(1, lambda m: m.state is MemberState.ALIVE)
        if peers:
            self._send(peers[0].address, self._push_pull(join=False, reply=False), reliable=True)

    def _reconnect_tick(self, now: float) -> None:
        self._next_reconnect = now + self.config.reconnect_interval
        if self._left or not self._dead:
            return
        # Sorted so the pick depends on the seed only, not on set iteration order.
        name = self.rng.choice(sorted(self._dead))
        member = self._members.get(name)
        assert member is not None
        self._send(member.address, self._push_pull(join=False, reply=False), reliable=True)
