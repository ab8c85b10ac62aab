"""The Raft shell: the asyncio loop around the pure core, with durable storage and gRPC.

The core (:class:`manager.state.raft.core.RaftNode`) never does I/O. This shell does it, one step at a
time and always in the same order, which is what makes an acknowledgement mean something:

    tick -> receive -> step -> persist (storage.save, fsync) -> send -> apply -> advance

* Nothing the core asks to persist is sent on before it is on disk: a vote or an append
  acknowledgement leaves this node only after the fsync that backs it returned.
* A proposal's caller is answered only once its entry is committed (so on disk on a majority)
  *and* applied to the local state machine; the answer is the state machine's result.
* A follower does not accept writes: :meth:`RaftShell.propose` raises :class:`NotLeaderError`
  with the leader's cluster address so that the caller can forward; without a leader it waits at
  most one election timeout for one and then raises :class:`NoLeaderError` with Swarm's message.

Peers talk over one gRPC client stream per direction (``/swarmlet.v1.RaftTransport/Stream``).
Each frame carries every message queued for that peer at the time, each encoded by
:class:`manager.state.raft.codec.RaftCodec` and preceded by its length as a varint (:func:`pack_frame`):
under load one gRPC write then carries many messages, which is most of the throughput. The
sender's id and cluster address travel as call metadata, which is how a node learns where a new
peer lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pathlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import prometheus_client

from manager.state.raft.config import RaftConfig
from manager.state.raft.core import NO_LEADER_MESSAGE, NotLeader, RaftNode
from manager.state.raft.messages import ConfChange, ConfChangeType, Message, MessageType, Ready
from manager.state.raft.types import Entry, EntryType, SnapshotMeta

if TYPE_CHECKING:
    from manager.state.raft.storage import RaftStorage

__all__ = [
    "NO_LEADER_MESSAGE",
    "SERVER_OPTIONS",
    "NoLeaderError",
    "NotLeaderError",
    "ProposalDropped",
    "RaftMetrics",
    "RaftShell",
    "ShellConfig",
    "StateMachine",
    "pack_frame",
    "raft_transport_handler",
    "unpack_frame",
]

log = logging.getLogger(__name__)


# gRPC's default reconnect backoff grows to minutes; a manager that comes back must hear from the
# leader within an election timeout, or it campaigns needlessly.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    # gRPC takes this as the time one connection attempt may take, not only as a backoff: at
    # 50 ms a handshake on a busy machine timed out again and again, and a new stream to a peer
    # took seconds to open (seen in compose failovers).
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 250),
    # A peer whose container is killed vanishes without a reset: its connections stay open on
    # our side while TCP retransmits for minutes, and Raft messages sent on them go nowhere.
    # Keepalive pings (and the TCP user timeout gRPC derives from them) find such a connection
    # dead within about two seconds.
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # By default channels to the same address share one global connection, so a "new" channel
    # would inherit the dead connection it was made to replace. Each channel gets its own.
    ("grpc.use_local_subchannel_pool", 1),
)
SERVER_OPTIONS = (
    # Let peers ping as often as _CHANNEL_OPTIONS asks without being told to go away.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_permit_without_calls", 1),
)
_ELECTION_MESSAGES = frozenset(
    {MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}
)
_FRESH_STREAM_S = 1.0  # an outbound stream younger than this is not reset when the peer reconnects
_PROMOTION_HOLD = 0.5  # seconds new proposals may wait for a learner to catch up before promotion
_FRAME_BYTES = 1 << 20  # stop adding queued messages to a frame beyond this many bytes
_SERVICE = "swarmlet.v1.RaftTransport"
_METHOD = f"/{_SERVICE}/Stream"
_MD_FROM = "x-swarmlet-raft-from"
_MD_ADDR = "x-swarmlet-raft-addr"


class NoLeaderError(Exception):
    """The cluster has no leader (no quorum, or an election is under way)."""

    def __init__(self) -> None:
        super().__init__(NO_LEADER_MESSAGE)


class NotLeaderError(Exception):
    """This manager is a follower; ``leader_addr`` is where the write should go."""

    def __init__(self, leader_id: str, leader_addr: str) -> None:
        where = leader_addr or "an unknown address"
        super().__init__(f"not the leader; the leader is {leader_id} at {where}")
        self.leader_id = leader_id
        self.leader_addr = leader_addr


class ProposalDropped(Exception):
    """The entry was lost to a change of leader before it committed: it was not applied."""


class StateMachine(Protocol):
    """What the shell applies committed entries to (the store, or a test's key-value map)."""

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed entry; the result is handed to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, as of the last applied entry."""
        ...

    def restore(self, data: bytes, index: int) -> None:
        """Replace the whole state with a snapshot's, taken at log ``index``."""
        ...


@dataclass(frozen=True)
class ShellConfig:
    """Durability and buffering settings of the shell; timing lives in RaftConfig (``tick_s``)."""

    fsync: bool = True
    """Whether storage fsyncs before save returns; off only in benchmarks that say so."""
    peer_queue: int = 4096
    """Messages queued per peer before new ones are dropped (Raft retransmits what is lost)."""

    def __post_init__(self) -> None:
        if self.peer_queue < 1:
            raise ValueError("peer_queue must be at least 1")


class RaftMetrics:
    """The shell's Prometheus metrics, in the process's registry."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        reg = registry if registry is not None else prometheus_client.CollectorRegistry()
        g, c = prometheus_client.Gauge, prometheus_client.Counter
        self.term = g("swarmlet_raft_term", "Current Raft term", registry=reg)
        self.is_leader = g("swarmlet_raft_leader", "1 if this manager is the Raft leader", registry=reg)
        self.role = g("swarmlet_raft_role", "1 for this manager's current Raft role", ["role"], registry=reg)
        self.leader_changes = c(
            "swarmlet_raft_leader_changes", "Times the known leader changed", registry=reg
        )
        self.commit_index = g("swarmlet_raft_commit_index", "Highest committed log index", registry=reg)
        self.apply_index = g("swarmlet_raft_apply_index", "Highest applied log index", registry=reg)
        self.proposal_latency = prometheus_client.Histogram(
            "swarmlet_raft_proposal_latency_seconds",
            "Time from proposal to applied, on the leader",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=reg,
        )
        self.bytes_appended = c(
            "swarmlet_raft_appended_bytes", "Bytes of entries appended to the log", registry=reg
        )
        self.bytes_snapshotted = c(
            "swarmlet_raft_snapshotted_bytes", "Bytes of snapshots written", registry=reg
        )


@dataclass
class _Waiter:
    term: int
    future: asyncio.Future[Any]
    started: float


@dataclass
class _Proposal:
    data: bytes
    future: asyncio.Future[tuple[int, int]]  # resolves to (index, term) once in the log


@dataclass
class _Peer:
    address: str
    limit: int = 4096  # messages waiting for this peer before new ones are dropped
    # What waits to go out on the current stream. Each stream has its own queue, closed with a
    # None when the stream ends: gRPC keeps consuming a failed call's request generator, and a
    # generator shared between calls handed messages to dead calls, which lost them.
    outbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    opened: float = 0.0  # time.monotonic() when the current outbound stream task started


class RaftShell:
    """One manager's Raft: the core, its storage, its peers and its state machine."""

    def __init__(
        self,
        node_id: str,
        address: str,
        data_dir: str | os.PathLike[str],
        state_machine: StateMachine,
        *,
        bootstrap: bool = False,
        voters: tuple[str, ...] = (),
        peers: Mapping[str, str] | None = None,
        config: ShellConfig | None = None,
        raft_config: RaftConfig | None = None,
        registry: prometheus_client.CollectorRegistry | None = None,
        rng: random.Random | None = None,
        on_apply: Callable[[int], None] | None = None,
    ) -> None:
        """``bootstrap`` makes a new single-voter cluster on first start; ``voters`` instead
        starts a fixed membership (tests, benchmarks). Neither: wait to be added by a leader.
        ``peers`` maps node ids to cluster addresses ("host:port")."""
        self.node_id = node_id
        self.address = address
        self.data_dir = pathlib.Path(data_dir)
        self.state_machine = state_machine
        self.config = config or ShellConfig()
        self.raft_config = raft_config or RaftConfig.default()
        self.metrics = RaftMetrics(registry)
        self._bootstrap = bootstrap
        self._initial_voters = voters
        self._rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._codec: Any = None
        self._addresses: dict[str, str] = dict(peers or {})
        self._peers: dict[str, _Peer] = {}
        self._inbox: list[Any] = []
        self._proposals: list[_Proposal] = []
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._waiters: dict[int, _Waiter] = {}
        self._wake = asyncio.Event()
        self._leader_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._storage: RaftStorage | None = None
        self._node: RaftNode | None = None
        self._leader = ""
        self._applied = 0
        self._snapshot_index = 0
        self._read_ids = itertools.count(1)
        self._to_promote: set[str] = set()
        self._probing: set[str] = set()
        self._promotion_hold_until = 0.0
        self._on_apply = on_apply
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._last_role = ""
        self.last_contact: dict[str, float] = {}
        """Monotonic time each peer last sent us a message (the leader's view of reachability)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open storage, rebuild the core from it and start the loop."""
        # Imported here so that the errors above can be used by the control API without them.
        from manager.state.raft.codec import RaftCodec
        from manager.state.raft.storage import RaftStorage

        self._codec = RaftCodec()
        raft_dir = self.data_dir / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        self._load_addresses()
        storage = await asyncio.to_thread(RaftStorage.open, raft_dir, fsync=self.config.fsync)
        self._storage = storage
        snap: SnapshotMeta | None = storage.snapshot
        applied = 0
        if snap is not None and snap.index > 0:
            self.state_machine.restore(storage.snapshot_data, snap.index)
            applied = snap.index
            self._snapshot_index = snap.index
        entries = list(storage.entries())
        fresh = storage.hard_state.term == 0 and not entries and (snap is None or snap.index == 0)
        voters: tuple[str, ...] = ()
        if fresh and self._bootstrap:
            voters = (self.node_id,)
        elif fresh and self._initial_voters:
            voters = tuple(self._initial_voters)
        self._node = RaftNode(
            self.raft_config,
            self.node_id,
            self._rng,
            voters=voters,
            hard_state=storage.hard_state,
            entries=entries,
            snapshot=snap if snap is not None and snap.index > 0 else None,
            applied=applied,
            snapshot_data=storage.snapshot_data if applied else b"",
        )
        self._applied = applied
        self._task = asyncio.create_task(self._run(), name=f"raft-{self.node_id}")

    async def stop(self) -> None:
        """Stop the loop and the peer streams; fail whatever is still waiting."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for peer in self._peers.values():
            if peer.task is not None:
                peer.task.cancel()
        for peer in self._peers.values():
            if peer.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await peer.task
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close(None)
        self._fail_all(ConnectionAbortedError("the manager stopped; the write may or may not apply"))
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    # ------------------------------------------------------------------ state

    @property
    def node(self) -> RaftNode:
        """The core (read its role, term and progress; do not drive it from outside)."""
        assert self._node is not None, "start() first"
        return self._node

    @property
    def leader_id(self) -> str:
        """The current leader's node id, "" when none is known."""
        return self._leader

    @property
    def leader_address(self) -> str:
        """The current leader's cluster address, "" when none is known."""
        if not self._leader:
            return ""
        if self._leader == self.node_id:
            return self.address
        return self._addresses.get(self._leader, "")

    @property
    def is_leader(self) -> bool:
        """Whether this manager is the leader now."""
        return self._node is not None and self._leader == self.node_id and _role_name(self._node) == "leader"

    @property
    def applied(self) -> int:
        """The last log index applied to the state machine."""
        return self._applied

    def role(self) -> str:
        """The Raft role: "leader", "follower", "candidate" or "pre-candidate"."""
        return _role_name(self._node) if self._node is not None else "stopped"

    def addresses(self) -> dict[str, str]:
        """Known cluster addresses of the managers, by node id (this one included)."""
        out = dict(self._addresses)
        out[self.node_id] = self.address
        return out

    def set_peer_address(self, node_id: str, address: str) -> None:
        """Record where a manager can be reached; kept on disk so a restart can find its peers."""
        if not address or node_id == self.node_id or self._addresses.get(node_id) == address:
            return
        self._addresses[node_id] = address
        peer = self._peers.get(node_id)
        if peer is not None and peer.address != address:
            peer.address = address
            if peer.task is not None:
                peer.task.cancel()
                peer.task = None
        self._save_addresses()

    # ------------------------------------------------------------------ requests

    async def propose(self, data: bytes, timeout: float | None = None) -> Any:
        """Append ``data`` to the log and return the state machine's result once it is applied.

        Raises :class:`NotLeaderError` on a follower, :class:`NoLeaderError` when no leader
        emerges within one election timeout, :class:`ProposalDropped` if the entry was overwritten
        by a new leader, and ``TimeoutError`` when ``timeout`` passes first (the write may or may
        not happen then: it is indeterminate).
        """
        start = time.monotonic()
        await self._await_leader()
        if not self.is_leader:
            raise NotLeaderError(self._leader, self.leader_address)
        loop = asyncio.get_running_loop()
        placed: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._proposals.append(_Proposal(data, placed))
        self._wake.set()
        index, _term = await asyncio.wait_for(placed, timeout)
        waiter = self._waiters[index]
        elapsed = time.monotonic() - start
        remaining = None if timeout is None else max(0.0, timeout - elapsed)
        result = await asyncio.wait_for(asyncio.shield(waiter.future), remaining)
        self.metrics.proposal_latency.observe(time.monotonic() - start)
        return result

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Wait until this manager has applied everything committed before the call (ReadIndex).

        Only the leader serves it; a follower raises :class:`NotLeaderError`.
        """
        await self._await_leader()
        if not self.is_leader:
            raise NotLeaderError(self._leader, self.leader_address)
        loop = asyncio.get_running_loop()
        ctx = f"{self.node_id}/{next(self._read_ids)}".encode()
        got_index: asyncio.Future[int] = loop.create_future()
        self._reads[ctx] = got_index
        self.node.read_index(ctx)
        self._wake.set()
        try:
            index = await asyncio.wait_for(got_index, timeout)
        finally:
            self._reads.pop(ctx, None)
        if self._applied >= index:
            return
        done: asyncio.Future[None] = loop.create_future()
        self._read_waiters.append((index, done))
        await asyncio.wait_for(done, timeout)

    def propose_conf_change(self, change: Any) -> None:
        """Hand a membership change to the core (the leader only); it applies when committed."""
        self.node.propose_conf_change(change)
        self._wake.set()

    def promote(self, node_id: str) -> None:
        """Make learner ``node_id`` a voter as soon as its log has caught up (the leader only).

        The core promotes only a learner whose log matches the commit index. Under a steady
        stream of writes that moment may never come, so while a promotion waits the shell holds
        new proposals back for up to ``_PROMOTION_HOLD`` seconds, letting the learner catch up.
        """
        self._to_promote.add(node_id)
        self._wake.set()

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter ``to`` once its log has caught up (the leader only; used when
        the leader is demoted). Raises ValueError if ``to`` is not a voter."""
        self.node.transfer_leadership(to)
        self._wake.set()

    def _hold_for_promotion(self, node: RaftNode, now: float) -> bool:
        """Try the waiting promotions; True while new proposals should wait for one."""
        if not self._to_promote:
            return False
        if _role_name(node) != "leader":
            self._to_promote.clear()
            return False
        hold = False
        for learner in sorted(self._to_promote):
            if learner not in node.conf.learners:
                self._to_promote.discard(learner)
                continue
            progress = node.progress.get(learner)
            if progress is not None and progress.match >= node.commit:
                try:
                    node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, learner))
                except ValueError as exc:  # another change is still committing: next time
                    log.debug("raft: promotion of %s deferred: %s", learner, exc)
                    return False
                log.info("raft: promoting manager %s to voter", learner)
                self._to_promote.discard(learner)
                self._promotion_hold_until = 0.0
                return False
            hold = True
        if not hold:
            return False
        if self._promotion_hold_until == 0.0:
            self._promotion_hold_until = now + _PROMOTION_HOLD
        if now < self._promotion_hold_until:
            return True
        if now > self._promotion_hold_until + 2 * _PROMOTION_HOLD:
            self._promotion_hold_until = 0.0  # a slow learner: hold again later, never for long
        return False

    def receive(self, message: Any) -> None:
        """Queue one message from a peer for the loop."""
        self._inbox.append(message)
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    def _tick_seconds(self) -> float:
        return self.raft_config.tick_s

    def election_seconds(self) -> float:
        """The longest election timeout: how long a leaderless cluster may take to elect one."""
        return float(self.raft_config.election_ticks) * 2 * self.raft_config.tick_s

    async def _await_leader(self) -> None:
        if self._leader:
            return
        self._leader_event.clear()
        try:
            await asyncio.wait_for(self._leader_event.wait(), self.election_seconds())
        except TimeoutError:
            raise NoLeaderError() from None
        if not self._leader:
            raise NoLeaderError()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self._tick_seconds()
        next_tick = loop.time() + tick
        node = self.node
        await self._drain_ready(node)
        while not self._stopping:
            delay = next_tick - loop.time()
            if delay > 0 and not self._inbox and not self._proposals:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            now = loop.time()
            if now >= next_tick:
                node.tick()
                # After a long stall (a paused process), tick once rather than fire a burst.
                next_tick = max(next_tick + tick, now)
            inbox, self._inbox = self._inbox, []
            for message in inbox:
                try:
                    node.step(message)
                except Exception:  # a malformed or stale message must not stop the loop
                    log.exception("raft: step failed")
            if not self._hold_for_promotion(node, now):
                self._place_proposals(node)
            try:
                await self._drain_ready(node)
            except Exception:
                # Storage failing means this node can no longer promise anything: stop it.
                log.exception("raft: cannot persist; stopping this manager's Raft")
                self._fail_all(ConnectionAbortedError("storage failed; the write may or may not apply"))
                raise

    def _place_proposals(self, node: RaftNode) -> None:
        proposals, self._proposals = self._proposals, []
        loop = asyncio.get_running_loop()
        for p in proposals:
            if p.future.done():
                continue
            try:
                index = node.propose(p.data)
            except NotLeader as exc:
                leader = exc.leader or ""
                if leader:
                    p.future.set_exception(NotLeaderError(leader, self._addresses.get(leader, "")))
                else:
                    p.future.set_exception(NoLeaderError())
                continue
            term = node.term
            self._waiters[index] = _Waiter(term, loop.create_future(), time.monotonic())
            p.future.set_result((index, term))

    async def _drain_ready(self, node: RaftNode) -> None:
        while node.has_ready():
            rd = node.ready()
            await self._handle_ready(node, rd)
            node.advance(rd)

    async def _handle_ready(self, node: RaftNode, rd: Ready) -> None:
        storage = self._storage
        assert storage is not None
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            await asyncio.to_thread(storage.save_snapshot, meta, data)
            self.metrics.bytes_snapshotted.inc(len(data))
            self.state_machine.restore(data, meta.index)
            self._applied = meta.index
            self._snapshot_index = meta.index
        entries = tuple(rd.entries)
        if rd.hard_state is not None or entries:
            await asyncio.to_thread(storage.save, rd.hard_state, entries)
            if entries:
                self.metrics.bytes_appended.inc(sum(len(e.data) for e in entries))
        self._observe_soft_state(node)
        for message in rd.messages:
            self._send(message)
        for rs in rd.read_states:
            fut = self._reads.get(rs.context)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        committed = rd.committed
        for entry in committed:
            self._apply(entry)
        if committed:
            self.metrics.commit_index.set(node.commit)
            self.metrics.apply_index.set(self._applied)
            self._release_reads()
            if self._on_apply is not None:
                self._on_apply(self._applied)
            every = self.raft_config.snapshot_every
            if every and self._applied - self._snapshot_index >= every:
                await self._take_snapshot(node)

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self._applied:
            return
        result: Any = None
        error: BaseException | None = None
        if entry.type == EntryType.NORMAL and entry.data:
            try:
                result = self.state_machine.apply(entry.index, entry.data)
            except Exception as exc:  # the store refuses bad writes by result; this is a bug guard
                log.exception("raft: applying entry %d failed", entry.index)
                error = exc
        self._applied = entry.index
        waiter = self._waiters.pop(entry.index, None)
        if waiter is None or waiter.future.done():
            return
        if waiter.term != entry.term:
            waiter.future.set_exception(ProposalDropped("the entry was replaced by a new leader's"))
        elif error is not None:
            waiter.future.set_exception(error)
        else:
            waiter.future.set_result(result)

    def _release_reads(self) -> None:
        if not self._read_waiters:
            return
        still = []
        for index, fut in self._read_waiters:
            if self._applied >= index:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((index, fut))
        self._read_waiters = still

    async def _take_snapshot(self, node: RaftNode) -> None:
        storage = self._storage
        assert storage is not None
        index = self._applied
        data = self.state_machine.snapshot()
        node.compact(index, data)
        meta = node.snapshot
        await asyncio.to_thread(storage.save_snapshot, meta, data)
        self.metrics.bytes_snapshotted.inc(len(data))
        self._snapshot_index = index

    def _observe_soft_state(self, node: RaftNode) -> None:
        leader = str(node.leader or "")
        self.metrics.term.set(node.term)
        role = _role_name(node)
        if role != self._last_role:
            log.debug("raft: %s in term %d", role, node.term)
            self._last_role = role
        for name in ("leader", "follower", "candidate", "pre-candidate"):
            self.metrics.role.labels(name).set(1 if name == role else 0)
        self.metrics.is_leader.set(1 if role == "leader" else 0)
        if leader != self._leader:
            if leader:
                self.metrics.leader_changes.inc()
            log.info("raft: leader is now %s (term %d)", leader or "unknown", node.term)
            self._leader = leader
            if leader:
                self._leader_event.set()
            if leader != self.node_id:
                # Entries this node placed as leader may still commit under the new leader;
                # their waiters stay, and a different term at their index fails them.
                for p in self._proposals:
                    if not p.future.done():
                        p.future.set_exception(NotLeaderError(leader, self._addresses.get(leader, "")))
                self._proposals = []
                for fut in self._reads.values():
                    if not fut.done():
                        fut.set_exception(NotLeaderError(leader, self._addresses.get(leader, "")))

    def _fail_all(self, exc: Exception) -> None:
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(exc)
        self._waiters.clear()
        for p in self._proposals:
            if not p.future.done():
                p.future.set_exception(exc)
        self._proposals = []
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        for _, waiting in self._read_waiters:
            if not waiting.done():
                waiting.set_exception(exc)
        self._read_waiters = []

    # ------------------------------------------------------------------ the network

    def _send(self, message: Any) -> None:
        to = str(message.to)
        if message.type in _ELECTION_MESSAGES:
            log.debug("raft: send %s to %s term %d reject=%s", message.type.name, to, message.term,
                      message.reject)
        if to == self.node_id:
            self.receive(message)
            return
        peer = self._peers.get(to)
        if peer is None:
            address = self._addresses.get(to)
            if not address:
                return  # unknown address: Raft retries once we learn it
            peer = _Peer(address, self.config.peer_queue)
            self._peers[to] = peer
        if peer.task is None or peer.task.done():
            peer.opened = time.monotonic()
            peer.task = asyncio.create_task(self._stream_to(to, peer), name=f"raft-send-{to}")
        # A peer that cannot keep up loses messages; Raft resends what matters.
        if peer.outbox.qsize() < peer.limit:
            peer.outbox.put_nowait(self._codec.encode(message))

    def _reconnect(self, peer_id: str) -> None:
        """Drop our outbound stream and channel to ``peer_id``; the next send opens new ones."""
        peer = self._peers.get(peer_id)
        # A stream we opened within the last second is fresh: leaving it alone also keeps two
        # peers from resetting each other's new streams back and forth.
        if peer is None or time.monotonic() - peer.opened < _FRESH_STREAM_S:
            return
        log.debug("raft: opening a new stream to %s at %s", peer_id, peer.address)
        if peer.task is not None and not peer.task.done():
            peer.task.cancel()
        peer.task = None
        channel = self._channels.pop(peer.address, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _stream_to(self, to: str, peer: _Peer) -> None:
        metadata = ((_MD_FROM, self.node_id), (_MD_ADDR, self.address))
        backoff = 0.05
        while not self._stopping:
            channel = self._channels.get(peer.address)
            if channel is None:
                channel = grpc.aio.insecure_channel(peer.address, options=_CHANNEL_OPTIONS)
                self._channels[peer.address] = channel
            call = channel.stream_unary(_METHOD, request_serializer=None, response_deserializer=None)
            outbox = peer.outbox
            stale = True  # messages left when a stream fails are stale by the time the peer returns
            try:
                await call(_frames(outbox, to), metadata=metadata, wait_for_ready=False)
                backoff = 0.05
            except asyncio.CancelledError:
                stale = False  # a reconnect: what waits goes out on the next stream
                raise
            except Exception as exc:
                log.debug("raft: stream to %s at %s ended: %s", to, peer.address, exc)
                self._peer_gone(to)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.25)
            finally:
                peer.outbox = asyncio.Queue()
                while not outbox.empty():
                    item = outbox.get_nowait()
                    if item is not None and not stale:
                        peer.outbox.put_nowait(item)
                outbox.put_nowait(None)  # ends this stream's generator, wherever gRPC left it

    async def serve_stream(self, frames: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Server side of a peer's stream: decode each frame and queue it for the loop."""
        md = {k: v for k, v in (context.invocation_metadata() or ())}
        sender = str(md.get(_MD_FROM, ""))
        address = str(md.get(_MD_ADDR, ""))
        if sender and address:
            self.set_peer_address(sender, address)
        log.debug("raft: stream from %s (%s) opened", sender or "?", address or "?")
        if sender:
            # A peer opens a stream to us when it starts or after its connection broke: either
            # way our own connection to it may be a dead one (a restarted container never resets
            # the connections of its former self), so open a fresh one.
            self._reconnect(sender)
        try:
            await self._read_frames(frames, sender)
        finally:
            # A peer's stream ends only when its process or its connection goes away.
            if sender:
                self._peer_gone(sender)
        return b""

    async def _read_frames(self, frames: Any, sender: str) -> None:
        async for frame in frames:
            try:
                parts = unpack_frame(frame)
            except ValueError:
                log.warning("raft: dropped a malformed frame from %s", sender or "?")
                continue
            log.debug("raft: frame of %d messages from %s", len(parts), sender or "?")
            for data in parts:
                try:
                    message = self._codec.decode(data)
                except ValueError:
                    log.warning("raft: dropped a malformed message from %s", sender or "?")
                    continue
                if message.type in _ELECTION_MESSAGES:
                    log.debug("raft: got %s from %s term %d reject=%s", message.type.name, message.sender,
                              message.term, message.reject)
                self._inbox.append(message)
            if sender:
                self.last_contact[sender] = time.monotonic()
            self._wake.set()

    # ------------------------------------------------------------------ a leader that died

    def _peer_gone(self, peer: str) -> None:
        """A stream with ``peer`` broke; if it is our leader, find out whether its process is gone."""
        if self._stopping or peer != self._leader or peer in self._probing:
            return
        self._probing.add(peer)
        task = asyncio.create_task(self._probe_leader(peer), name=f"raft-probe-{peer}")
        task.add_done_callback(lambda _t: self._probing.discard(peer))

    async def _probe_leader(self, leader: str) -> None:
        """Campaign at once when the leader's port refuses connections (its process has died).

        Waiting for the election timeout is what Raft needs when it cannot tell a dead leader
        from a slow one. A refused connection tells: nothing listens there any more. Then one
        survivor campaigns right away, as a leadership transfer does (so the other followers'
        leases do not hold it back); the others stand by in order of node id, 3 ticks apart, so
        that two of them never split the vote. The vote itself still needs an up-to-date log and a
        majority, so this changes only how soon an election starts, never who may win it.
        """
        address = self._addresses.get(leader, "")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 0.3)
        except (ConnectionRefusedError, ConnectionResetError):
            pass  # the leader's process is gone
        except (TimeoutError, OSError):
            return  # cannot tell (a paused or cut-off host): let the election timeout decide
        else:
            writer.close()
            return  # it still listens: a broken connection, not a dead leader
        node = self.node
        ranked = sorted(v for v in node.conf.voters if v != leader)
        if self.node_id not in ranked:
            return
        await asyncio.sleep(ranked.index(self.node_id) * 3 * self.raft_config.tick_s)
        if self._stopping or self._leader != leader or _role_name(node) != "follower":
            return  # someone else already took over, or our own timer did
        log.info("raft: leader %s is gone (connection refused at %s); campaigning now", leader, address)
        self.receive(Message(MessageType.TIMEOUT_NOW, self.node_id, leader, term=node.term))

    # ------------------------------------------------------------------ peers on disk

    def _addresses_file(self) -> pathlib.Path:
        return self.data_dir / "raft" / "peers.json"

    def _load_addresses(self) -> None:
        path = self._addresses_file()
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            for k, v in saved.items():
                self._addresses.setdefault(str(k), str(v))

    def _save_addresses(self) -> None:
        path = self._addresses_file()
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self._addresses, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            log.warning("raft: could not save peer addresses to %s", path)


def raft_transport_handler(shell_for: Callable[[], RaftShell | None]) -> grpc.GenericRpcHandler[Any, Any]:
    """The gRPC handler of ``/swarmlet.v1.RaftTransport/Stream``, delivering to ``shell_for()``."""

    async def stream(frames: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        shell = shell_for()
        if shell is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "raft is not running")
        assert shell is not None
        return await shell.serve_stream(frames, context)

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {"Stream": grpc.stream_unary_rpc_method_handler(stream)},
    )


async def _frames(outbox: asyncio.Queue[bytes | None], to: str) -> Any:
    """The request stream of one call: frames of queued messages until a None arrives."""
    while True:
        first = await outbox.get()
        if first is None:
            return
        # Everything queued for this peer goes out as one frame: a gRPC write costs far more
        # than the bytes in it, and under load many messages are waiting.
        batch = [first]
        size = len(first)
        end = False
        while not outbox.empty() and size < _FRAME_BYTES:
            item = outbox.get_nowait()
            if item is None:
                end = True
                break
            batch.append(item)
            size += len(item)
        log.debug("raft: writing %d messages to %s", len(batch), to)
        yield pack_frame(batch)
        if end:
            return


def pack_frame(messages: list[bytes]) -> bytes:
    """Join encoded messages into one stream frame, each preceded by its length as a varint
    (protobuf's length-delimited framing)."""
    out = bytearray()
    for m in messages:
        n = len(m)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += m
    return bytes(out)


def unpack_frame(frame: bytes) -> list[bytes]:
    """Split a frame made by :func:`pack_frame`; ``ValueError`` if it is cut short or malformed."""
    out: list[bytes] = []
    pos, end = 0, len(frame)
    while pos < end:
        n = shift = 0
        while True:
            if pos >= end or shift > 35:
                raise ValueError("truncated length prefix")
            byte = frame[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + n > end:
            raise ValueError("truncated message")
        out.append(frame[pos : pos + n])
        pos += n
    return out


def _role_name(node: RaftNode) -> str:
    return str(node.role.value)
