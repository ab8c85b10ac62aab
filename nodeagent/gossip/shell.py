"""The gossip shell: the SWIM core on an asyncio loop, a Transport, timers and metrics.

The core lives on the agent's one event loop and is only ever called from it. One task runs
the loop tick -> receive -> step -> send: it waits until the core's next deadline or until a
message arrives, ticks the core if a deadline passed, hands it every queued message, then drains
its outbox into the transport, its events to subscribers, and its counters into the Prometheus
metrics. The transport's receive callback only queues and wakes the loop; the few calls other
components make (join, broadcast, leave) run on the same loop between two steps and wake it.

The shell also implements :class:`nodeagent.roles.GossipView` for the rest of the agent, and
serves the ``AgentAdmin`` gRPC service (link faults, membership as this node sees it) on the
gossip port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from swarmlet.v1 import transport_pb2, transport_pb2_grpc

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import Member, MemberEvent, Swim, UserMessage
from nodeagent.gossip.messages import NodeMeta
from nodeagent.metrics import FaultMetrics, GossipMetrics
from nodeagent.transport import Transport
from nodeagent.transport.faults import LinkFaults, faults_from_proto, faults_to_proto

__all__ = ["AgentAdminServicer", "GossipShell"]

log = logging.getLogger(__name__)

_generated: Any = transport_pb2_grpc
# The loop wakes at least this often even when the core has nothing scheduled (inf).
_MAX_SLEEP_SECONDS = 1.0


class GossipShell:
    """Runs one SWIM member; see the module docstring for the loop."""

    def __init__(
        self,
        *,
        config: GossipConfig,
        name: str,
        meta: NodeMeta,
        transport: Transport,
        rng: random.Random,
        metrics: GossipMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        incarnation: int = 0,
    ) -> None:
        """Configure the member; nothing runs until :meth:`start`."""
        self.config = config
        self.name = name
        self.transport = transport
        self.metrics = metrics
        self._clock = clock
        now = clock()
        # The staggered probe schedule needs a clock every node shares: wall time, carried as an
        # offset so the core keeps running on the monotonic clock.
        offset = (time.time() - now) if clock is time.monotonic else 0.0
        self.swim = Swim(config, name, transport.address, meta, rng, now, incarnation, clock_offset=offset)
        self._inbox: list[tuple[str, Any, bool]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribers: list[Callable[[MemberEvent], None]] = []
        self._message_subscribers: list[Callable[[UserMessage], None]] = []
        self._stats_seen: dict[str, int] = {}
        self._stopping = False
        transport.set_handler(self._received)

    # GossipView ---------------------------------------------------------------------------------
    def members(self) -> list[Member]:
        """Every member this node knows (itself included)."""
        return self.swim.members()

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        """Call ``callback(event)`` on the loop for every membership event from now on."""
        self._subscribers.append(callback)

    def subscribe_messages(self, callback: Callable[[UserMessage], None]) -> None:
        """Call ``callback(message)`` on the loop for every user broadcast that arrives."""
        self._message_subscribers.append(callback)

    def broadcast(self, topic: str, payload: bytes) -> None:
        """Gossip ``payload`` under ``topic`` to every member (ValueError if too big)."""
        self.swim.broadcast(self._clock(), topic, payload)
        self._wake.set()

    def set_meta(self, **changes: Any) -> None:
        """Change fields of this node's NodeMeta (``labels=...``, ``addr=...``); the core gossips
        it with a new incarnation. TypeError for an unknown field, ValueError after a leave."""
        meta = dataclasses.replace(self.swim.meta, **changes)
        self.swim.set_meta(self._clock(), meta)
        self._wake.set()

    def alone(self) -> bool:
        """Whether this node knows no other live member (then it should join through its seeds)."""
        return self.swim.live_count <= 1

    def join(self, seeds: Sequence[str]) -> None:
        """Exchange full state with ``seeds`` (gossip addresses, resolved) to join or rejoin."""
        seeds = [s for s in seeds if s != self.transport.address]
        if seeds:
            self.swim.join(self._clock(), seeds)
            self._wake.set()

    @property
    def health(self) -> int:
        """The local health score (0 is healthy)."""
        return self.swim.health

    # Life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop (then :meth:`join` through seeds)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gossip")

    async def leave(self, timeout: float) -> None:
        """Tell the cluster this node is leaving; wait up to ``timeout`` s for the news to go out."""
        if self._task is None or self._task.done():
            return
        alone = self.alone()
        self.swim.leave(self._clock())
        if alone:
            return  # nobody to tell
        self._wake.set()
        # The loop keeps running gossip rounds meanwhile; the leave rides on them until it has been
        # sent its retransmit count (nothing pending) or the time is up.
        deadline = self._clock() + timeout
        while self.swim.pending_broadcasts() and self._clock() < deadline:
            await asyncio.sleep(min(0.01, self.config.gossip_interval))

    async def stop(self) -> None:
        """Stop the loop (after :meth:`leave`, or at once)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # The loop -----------------------------------------------------------------------------------
    def _received(self, sender: str, message: Any, reliable: bool) -> None:
        self._inbox.append((sender, message, reliable))
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:
                # A core bug must not silently stop membership: log it and keep the node going.
                log.exception("gossip step failed")
            if self._inbox:
                continue
            timeout = max(0.0, self.swim.next_deadline() - self._clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(timeout, _MAX_SLEEP_SECONDS))

    def _step(self) -> None:
        now = self._clock()
        if now >= self.swim.next_deadline():
            self.swim.tick(now)
        inbox, self._inbox = self._inbox, []
        for sender, message, reliable in inbox:
            self.swim.handle(now, sender, message, reliable)
        self._flush()

    def _flush(self) -> None:
        for out in self.swim.take_outbox():
            if out.reliable:
                self.transport.send_stream(out.to, out.message)
            else:
                self.transport.send_packet(out.to, out.message)
        changed = False
        for event in self.swim.take_events():
            if isinstance(event, MemberEvent):
                changed = True
                log.info("member %s (%s) is %s at incarnation %d", event.name,
                         dict(event.meta.labels).get("hostname", event.address), event.state.value,
                         event.incarnation)
                callbacks: list[Callable[[Any], None]] = list(self._subscribers)
            else:
                callbacks = list(self._message_subscribers)
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.exception("gossip subscriber failed")
        if self.metrics is not None:
            self._update_metrics(changed)

    def _update_metrics(self, membership_changed: bool) -> None:
        metrics = self.metrics
        assert metrics is not None
        if membership_changed or not self._stats_seen:
            counts = dict.fromkeys(GossipMetrics.STATES, 0)
            for member in self.swim.members():
                if member.name != self.name:
                    counts[member.state.value] = counts.get(member.state.value, 0) + 1
            for state, count in counts.items():
                metrics.members.labels(state=state).set(count)
        stats = self.swim.stats
        for field, counter in (
            ("probes_sent", metrics.probes),
            ("probes_failed", metrics.probes_failed),
            ("suspicions_raised", metrics.suspicions_raised),
            ("suspicions_refuted", metrics.suspicions_refuted),
        ):
            self._count(stats, field, counter.inc)
        self._count(stats, "dropped_invalid", metrics.dropped_messages.labels(reason="invalid").inc)
        for rtt in self.swim.take_rtt_samples():
            metrics.probe_rtt.observe(rtt)
        metrics.health.set(self.swim.health)

    def _count(self, stats: object, field: str, inc: Callable[[float], None]) -> None:
        value = int(getattr(stats, field, 0))
        delta = value - self._stats_seen.get(field, 0)
        if delta > 0:
            inc(delta)
        self._stats_seen[field] = value


# Admin service ------------------------------------------------------------------------------------
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


class AgentAdminServicer(transport_pb2_grpc.AgentAdminServicer):
    """``AgentAdmin`` on the gossip port: link faults and this node's view of the membership."""

    def __init__(
        self, shell: GossipShell | None, faults: LinkFaults, fault_metrics: FaultMetrics | None = None
    ) -> None:
        """Serve ``shell``'s membership and ``faults``' rules.

        ``shell`` may be set later (:attr:`shell`): the service is registered before the gossip port
        is bound, and the shell can only be built once the port, hence its address, is known.
        """
        self.shell = shell
        self.faults = faults
        self.fault_metrics = fault_metrics

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        _generated.add_AgentAdminServicer_to_server(self, server)

    async def SetLinkFaults(
        self, request: transport_pb2.LinkFaults, context: grpc.aio.ServicerContext[Any, Any]
    ) -> transport_pb2.LinkFaults:
        """Replace the rules; an invalid rule changes nothing and answers INVALID_ARGUMENT."""
        try:
            rules = faults_from_proto(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid link fault rule: {exc}")
            raise  # abort raises; this line only tells type checkers so
        rules = [dataclasses.replace(r, peers=await self._expand(r.peers)) for r in rules]
        self.faults.set_rules(rules)
        log.warning("link faults now: %s", rules or "none")
        if self.fault_metrics is not None:
            self.fault_metrics.rules.set(len(rules))
        return faults_to_proto(self.faults.rules)

    async def _expand(self, peers: tuple[str, ...]) -> tuple[str, ...]:
        """Add the addresses of peers named by node id or hostname, or by a DNS name.

        Traffic is matched by the peer's address; people and the chaos command name nodes by
        hostname. A node found in the membership adds its gossip address and its bare host (the
        advertised IP, where its other planes are too: Raft, the dispatcher, the overlay); a DNS
        name adds the IPs it resolves to. A name that matches nothing is kept as given.
        """
        expanded = list(peers)
        members = self.shell.members() if self.shell is not None else []
        loop = asyncio.get_running_loop()
        for peer in peers:
            found = [m.address for m in members
                     if peer in (m.name, dict(m.meta.labels).get("hostname"))]
            found += [a.rpartition(":")[0].strip("[]") for a in found if ":" in a]
            if not found and not _is_ip(peer.rpartition(":")[0] or peer):
                with contextlib.suppress(OSError, TimeoutError):
                    infos = await asyncio.wait_for(
                        loop.getaddrinfo(peer, None, family=socket.AF_INET, type=socket.SOCK_DGRAM), 1.0)
                    found = [str(info[4][0]) for info in infos]
            expanded += [a for a in found if a not in expanded]
        return tuple(expanded)

    async def GetLinkFaults(
        self, request: transport_pb2.LinkFaults, context: grpc.aio.ServicerContext[Any, Any]
    ) -> transport_pb2.LinkFaults:
        """The rules in force."""
        return faults_to_proto(self.faults.rules)

    async def Members(
        self, request: transport_pb2.MembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> transport_pb2.MembersReply:
        """Every member as this node sees it."""
        shell = self.shell
        if shell is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gossip is starting")
            raise AssertionError("unreachable: abort raises")
        views = []
        for m in shell.members():
            labels = dict(m.meta.labels)
            views.append(transport_pb2.MemberView(
                name=m.name, address=m.address, state=m.state.value, incarnation=m.incarnation,
                role=m.meta.role, hostname=labels.get("hostname", ""),
            ))
        return transport_pb2.MembersReply(self=shell.name, members=views, health=shell.health)
