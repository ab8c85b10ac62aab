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
* Every input reaches the core from the loop, between two Readys: messages from peers, ticks,
  proposals, and what the leader probe found (``report_leader_unreachable``).

The other concerns live beside it: the streams to peers (:mod:`.transport`, framed by
:mod:`.framing`), their addresses (:mod:`.addresses`), the probe of a leader whose stream broke
(:mod:`.probe`), the callers waiting on the log (:mod:`.pending`), learner promotion
(:mod:`.promotion`), recovery from storage (:mod:`.recovery`), metrics (:mod:`.metrics`) and the
errors callers catch (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pathlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import prometheus_client

from manager.state.raft.addresses import AddressBook
from manager.state.raft.config import RaftConfig, ShellConfig
from manager.state.raft.core import RaftNode
from manager.state.raft.encryption import DataCipher
from manager.state.raft.errors import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError, ProposalDropped
from manager.state.raft.framing import pack_frame, unpack_frame
from manager.state.raft.messages import ConfChange, Message, Ready
from manager.state.raft.metrics import RaftMetrics
from manager.state.raft.pending import PendingRequests
from manager.state.raft.probe import LeaderProbe
from manager.state.raft.promotion import Promotions
from manager.state.raft.recovery import StateMachine, recover
from manager.state.raft.rekey import DataKeyRotation, DataKeys
from manager.state.raft.storage import RaftStorage
from manager.state.raft.transport import (
    SERVER_OPTIONS,
    RaftTransport,
    ServicerContext,
    raft_transport_handler,
)
from manager.state.raft.types import Entry, EntryType
from nodeagent.transport.planes import FaultGate

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


def take_turn(node: RaftNode, inbox: Sequence[Message], now: float, next_tick: float, tick: float) -> float:
    """One turn of the loop's inputs: step what arrived, then tick if one is due; returns when
    the next tick is due.

    What arrived is stepped before the tick: after a stall (a busy or paused process) the inbox
    holds the answers peers sent meanwhile, and a tick taken first would count them as silence:
    a leader's check-quorum would step down (seen when five nodes started at once on two cores:
    the leader stepped down 0.43 s after promoting a manager whose answers were waiting)."""
    for message in inbox:
        try:
            node.step(message)
        except Exception:  # a malformed or stale message must not stop the loop
            log.exception("raft: step failed")
    if now >= next_tick:
        node.tick()
        # After a long stall (a paused process), tick once rather than fire a burst.
        return max(next_tick + tick, now)
    return next_tick


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
        campaign_first: bool = False,
        config: ShellConfig | None = None,
        raft_config: RaftConfig | None = None,
        registry: prometheus_client.CollectorRegistry | None = None,
        rng: random.Random | None = None,
        on_apply: Callable[[int], None] | None = None,
        data_key: bytes | None = None,
        faults: FaultGate | None = None,
        keys: DataKeys | None = None,
    ) -> None:
        """``bootstrap`` makes a new single-voter cluster on first start; ``voters`` instead
        starts a fixed membership (a new cluster's founding managers, tests, benchmarks); with
        ``campaign_first`` this one campaigns as soon as it starts on empty storage, rather than
        after an election timeout (one founder only, so that they do not split the vote).
        Neither: wait to be added by a leader. ``peers`` maps node ids to cluster addresses
        ("host:port"). ``data_key`` (32 bytes) encrypts the log and snapshots at rest, as every
        manager runs; None leaves them in plaintext (benchmarks comparing the two). ``faults`` is
        the node's injected link faults (``swarmlet chaos``) as the Raft plane sees them. ``keys``
        (the manager's key file) gives the data key instead of ``data_key``, and lets the shell
        rotate it when autolock is turned on (:mod:`.rekey`)."""
        self._faults = faults
        self.node_id = node_id
        self.address = address
        self.data_dir = pathlib.Path(data_dir)
        self.state_machine = state_machine
        self.config = config or ShellConfig()
        self.raft_config = raft_config or RaftConfig.default()
        self.metrics = RaftMetrics(registry)
        self._bootstrap = bootstrap
        self._initial_voters = voters
        self._campaign_first = campaign_first
        self._rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._book = AddressBook(self.data_dir / "raft" / "peers.json", peers)
        self._transport: RaftTransport | None = None
        self._probe = LeaderProbe(self._book.get, self._leader_refused)
        self._inbox: list[Message] = []
        self._refusals: list[tuple[str, int]] = []  # (leader, term) found refusing connections
        self._pending = PendingRequests()
        self._promotions = Promotions()
        self._wake = asyncio.Event()
        self._leader_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._storage: RaftStorage | None = None
        self._node: RaftNode | None = None
        self._leader = ""
        self._leaderless_since: float | None = time.monotonic()  # None while a leader is known
        self._applied = 0
        self._snapshot_index = 0
        self._read_ids = itertools.count(1)
        self._on_apply = on_apply
        self._rekey = DataKeyRotation(keys) if keys is not None else None
        """The data key rotation (a manager's shell); None with a fixed key or none."""
        self._cipher = (self._rekey.cipher() if self._rekey is not None
                        else DataCipher(data_key) if data_key is not None else None)
        self._last_role = ""
        self.last_contact: dict[str, float] = {}
        """Monotonic time each peer last sent us a message (the leader's view of reachability)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open storage, rebuild the core from it and start the loop."""
        # The codec needs the generated protobuf modules; the errors and this module do not.
        from manager.state.raft.codec import RaftCodec

        raft_dir = self.data_dir / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        self._book.load()
        self._transport = RaftTransport(
            self.node_id,
            self.address,
            self._book,
            RaftCodec(),
            peer_queue=self.config.peer_queue,
            deliver=self._deliver,
            peer_gone=self._peer_gone,
            learned_address=self.set_peer_address,
            last_contact=self.last_contact,
            faults=self._faults,
        )
        storage = await asyncio.to_thread(RaftStorage.open, raft_dir, fsync=self.config.fsync,
                                          cipher=self._cipher)
        self._storage = storage
        if self._rekey is not None:
            await self._rekey.opened(storage)
        self._node = recover(
            storage, self.state_machine, self.raft_config, self.node_id, self._rng,
            bootstrap=self._bootstrap, voters=self._initial_voters,
        )
        self._applied = self._snapshot_index = self._node.snapshot.index
        self._task = asyncio.create_task(self._run(), name=f"raft-{self.node_id}")

    async def stop(self) -> None:
        """Stop the loop and the peer streams; fail whatever is still waiting."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._probe.close()
        if self._transport is not None:
            await self._transport.close()
        self._pending.fail_all(ConnectionAbortedError("the manager stopped; the write may or may not apply"))
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
        return self._book.get(self._leader)

    @property
    def is_leader(self) -> bool:
        """Whether this manager is the leader now."""
        return self._node is not None and self._leader == self.node_id and self.role() == "leader"

    def leaderless_seconds(self) -> float:
        """How long this manager has known no leader, 0.0 while it knows one (swarmkit's
        ticksWithNoLeader, in seconds): see :mod:`manager.state.raft.leaderwait`."""
        since = self._leaderless_since
        return 0.0 if since is None or self._leader else time.monotonic() - since

    @property
    def applied(self) -> int:
        """The last log index applied to the state machine."""
        return self._applied

    def role(self) -> str:
        """The Raft role: "leader", "follower", "candidate" or "pre-candidate"."""
        return str(self._node.role.value) if self._node is not None else "stopped"

    def addresses(self) -> dict[str, str]:
        """Known cluster addresses of the managers, by node id (this one included)."""
        out = self._book.all()
        out[self.node_id] = self.address
        return out

    def set_peer_address(self, node_id: str, address: str) -> None:
        """Record where a manager can be reached; kept on disk so a restart can find its peers."""
        if node_id == self.node_id or not self._book.set(node_id, address):
            return
        if self._transport is not None:
            self._transport.readdress(node_id, address)

    # ------------------------------------------------------------------ requests

    async def propose(self, data: bytes, timeout: float | None = None) -> object:
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
        placed = self._pending.propose(data)
        self._wake.set()
        index, _term = await asyncio.wait_for(placed, timeout)
        applied = self._pending.result_of(index)
        elapsed = time.monotonic() - start
        remaining = None if timeout is None else max(0.0, timeout - elapsed)
        result = await asyncio.wait_for(asyncio.shield(applied), remaining)
        took = time.monotonic() - start
        self.metrics.proposal_latency.observe(took)
        self.metrics.transaction_latency.observe(took)
        return result

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Wait until this manager has applied everything committed before the call (ReadIndex).

        Only the leader serves it; a follower raises :class:`NotLeaderError`.
        """
        await self._await_leader()
        if not self.is_leader:
            raise NotLeaderError(self._leader, self.leader_address)
        ctx = f"{self.node_id}/{next(self._read_ids)}".encode()
        got_index = self._pending.read(ctx)
        self.node.read_index(ctx)
        self._wake.set()
        try:
            index = await asyncio.wait_for(got_index, timeout)
        finally:
            self._pending.forget_read(ctx)
        if self._applied >= index:
            return
        await asyncio.wait_for(self._pending.until_applied(index), timeout)

    def propose_conf_change(self, change: ConfChange) -> None:
        """Hand a membership change to the core (the leader only); it applies when committed."""
        self.node.propose_conf_change(change)
        self._wake.set()

    def promote(self, node_id: str) -> None:
        """Make learner ``node_id`` a voter as soon as its log has caught up (the leader only);
        see :mod:`manager.state.raft.promotion`."""
        self._promotions.add(node_id)
        self._wake.set()

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter ``to`` once its log has caught up (the leader only; used when
        the leader is demoted). Raises ValueError if ``to`` is not a voter."""
        self.node.transfer_leadership(to)
        self._wake.set()

    def receive(self, message: Message) -> None:
        """Queue one message from a peer for the loop."""
        self._inbox.append(message)
        self._wake.set()

    async def serve_stream(self, frames: AsyncIterator[bytes], context: ServicerContext) -> bytes:
        """Server side of a peer's stream (see :func:`raft_transport_handler`)."""
        if self._transport is None:
            return b""
        return await self._transport.serve_stream(frames, context)

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

    # ------------------------------------------------------------------ from the network

    def _deliver(self, messages: list[Message]) -> None:
        self._inbox.extend(messages)
        self._wake.set()

    def _peer_gone(self, peer: str) -> None:
        """A stream with ``peer`` broke; if it is our leader, the probe finds out whether it died."""
        node = self._node
        if self._stopping or node is None or node.leader is None:
            return
        self._probe.stream_broke(peer, node.leader, node.term)

    def _leader_refused(self, leader: str, term: int) -> None:
        self._refusals.append((leader, term))
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.raft_config.tick_s
        next_tick = loop.time() + tick
        node = self.node
        fresh = node.term == 1 and node.log.last_index() == 1 and not node.vote
        if node.conf.voters == (self.node_id,) or (self._campaign_first and fresh):
            # The only voter (a new cluster's first manager, or a one-manager cluster restarting)
            # wins its own vote: waiting the election timeout first would only delay the leader.
            # The first founder of a new cluster asks for votes at once too; peers not up yet
            # miss it, and the election timeout then tries again as usual.
            node.campaign()
        await self._drain_ready(node)
        held = False  # proposals wait for a learner's promotion (see .promotion)
        while not self._stopping:
            delay = next_tick - loop.time()
            # Held proposals are no work: the loop sleeps until a tick or a message, as otherwise
            # it would spin without yielding for the whole hold, and the learner's answers, the
            # peers' heartbeats and every other task of the process would wait for it.
            placeable = self._pending.has_proposals and not held
            if delay > 0 and not self._inbox and not placeable and not self._refusals:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            now = loop.time()
            inbox, self._inbox = self._inbox, []
            next_tick = take_turn(node, inbox, now, next_tick, tick)
            refusals, self._refusals = self._refusals, []
            for leader, term in refusals:
                if node.report_leader_unreachable(leader, term):
                    log.info("raft: leader %s is gone (its port refuses connections); electing another",
                             leader)
            held = self._promotions.hold(node, now)
            if not held:
                self._pending.place(node, self._book.get)
            try:
                await self._drain_ready(node)
                if self._rekey is not None:
                    await self._rotate_data_key(node)
            except Exception:
                # Storage failing means this node can no longer promise anything: stop it.
                log.exception("raft: cannot persist; stopping this manager's Raft")
                failed = ConnectionAbortedError("storage failed; the write may or may not apply")
                self._pending.fail_all(failed)
                raise

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
            if self._rekey is not None:
                await self._rekey.snapshotted(storage)
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
            self._pending.read_confirmed(rs.context, rs.index)
        committed = rd.committed
        for entry in committed:
            self._apply(entry)
        if committed:
            self.metrics.commit_index.set(node.commit)
            self.metrics.apply_index.set(self._applied)
            self._pending.release_reads(self._applied)
            if self._on_apply is not None:
                self._on_apply(self._applied)
            every = self.raft_config.snapshot_every
            if every and self._applied - self._snapshot_index >= every:
                await self._take_snapshot(node)

    def _send(self, message: Message) -> None:
        if message.to == self.node_id:
            self.receive(message)
        elif self._transport is not None:
            self._transport.send(message)

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self._applied:
            return
        result: object = None
        error: BaseException | None = None
        if entry.type == EntryType.NORMAL and entry.data:
            try:
                result = self.state_machine.apply(entry.index, entry.data)
            except Exception as exc:  # the store refuses bad writes by result; this is a bug guard
                log.exception("raft: applying entry %d failed", entry.index)
                error = exc
        self._applied = entry.index
        self._pending.applied(entry, result, error)

    async def _take_snapshot(self, node: RaftNode) -> None:
        storage = self._storage
        assert storage is not None
        began = time.monotonic()
        index = self._applied
        data = self.state_machine.snapshot()
        node.compact(index, data)
        meta = node.snapshot
        await asyncio.to_thread(storage.save_snapshot, meta, data)
        self.metrics.bytes_snapshotted.inc(len(data))
        self.metrics.snapshot_latency.observe(time.monotonic() - began)
        self._snapshot_index = index
        if self._rekey is not None:
            await self._rekey.snapshotted(storage)

    async def _rotate_data_key(self, node: RaftNode) -> None:
        # Begin a rotation the key file asks for; snapshot once that replaces every old file.
        assert self._rekey is not None and self._storage is not None
        if await self._rekey.step(self._storage, self._applied, node.snapshot.index):
            await self._take_snapshot(node)
            await self._drain_ready(node)

    @property
    def data_key_rotations(self) -> int:
        """Data key rotations finished since this shell started (tests)."""
        return self._rekey.rotations if self._rekey is not None else 0

    def _observe_soft_state(self, node: RaftNode) -> None:
        leader = node.leader or ""
        role = self.role()
        self.metrics.observe_role(role, node.term)
        if role != self._last_role:
            log.debug("raft: %s in term %d", role, node.term)
            self._last_role = role
        if leader == self._leader:
            return
        if leader:
            self.metrics.leader_changes.inc()
        log.info("raft: leader is now %s (term %d)", leader or "unknown", node.term)
        self._leader = leader
        self._leaderless_since = None if leader else time.monotonic()
        if leader:
            self._leader_event.set()
        if leader != self.node_id:
            self._pending.leader_changed(leader, self._book.get(leader))
