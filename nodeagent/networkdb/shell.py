"""The network database's shell: the pure core on the agent's loop, gossip and the sync RPC.

* local writes and gossip user broadcasts (topic ``networkdb``) go through the core, whose
  ``Broadcast`` outputs are handed to :meth:`GossipShell.broadcast`;
* gossip membership events become ``node_alive`` / ``node_dead`` (suspect counts as alive, as
  memberlist only reports a node gone once it is declared dead or has left);
* a tick every ``tick_seconds`` (after the time scale) drives reaping and anti-entropy; each
  ``Sync`` output is one unary call ``/swarmlet.v1.NetworkDB/BulkSync`` on the peer's gossip port
  (the agent's gRPC server, the transport's stream half), whose answer is the peer's pull half.

The request and the answer are the sender's name, a newline, then the entries as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc
import prometheus_client

from nodeagent import tls
from nodeagent.networkdb.core import (
    ENDPOINTS,
    PEERS,
    Broadcast,
    Endpoint,
    NetworkDB,
    NetworkDBConfig,
    Sync,
    decode_entries,
    decode_entry,
    encode_entries,
    encode_entry,
)
from nodeagent.transport.planes import FaultGate

__all__ = ["SYNC_METHOD", "TOPIC", "NetworkDBShell"]

log = logging.getLogger(__name__)

TOPIC = "networkdb"
SYNC_METHOD = "/swarmlet.v1.NetworkDB/BulkSync"
_SYNC_TIMEOUT = 2.0


class _Gossip(Protocol):
    name: str

    def members(self) -> list[Any]: ...
    def subscribe(self, callback: Callable[[Any], None]) -> None: ...
    def subscribe_messages(self, callback: Callable[[Any], None]) -> None: ...
    def broadcast(self, topic: str, payload: bytes) -> None: ...


class NetworkDBShell:
    """One node's network database, wired to gossip and the gossip port's gRPC server."""

    def __init__(self, name: str, config: NetworkDBConfig, rng: Any, *, time_scale: float = 1.0,
                 registry: prometheus_client.CollectorRegistry | None = None,
                 faults: FaultGate | None = None) -> None:
        """The Lamport clock starts at wall-clock milliseconds so a restarted agent's writes win;
        ``swarmlet_networkdb_entries{table}`` (live entries this node holds) goes to ``registry``;
        ``faults`` (the node's injected link faults) act on the bulk syncs (the events travel
        with gossip, which applies them itself)."""
        self.faults = faults if faults is not None else FaultGate(None, "networkdb")
        self.db = NetworkDB(name, config, rng, clock=int(time.time() * 1000))
        self.config = config
        self.interval = config.tick_seconds * time_scale
        self.gossip: _Gossip | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tls_generation = tls.generation()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[set[str]], None]] = []
        self._entries = prometheus_client.Gauge(
            "swarmlet_networkdb_entries", "Live entries of the network database this node holds.", ["table"],
            registry=registry if registry is not None else prometheus_client.CollectorRegistry())

    # Wiring -------------------------------------------------------------------------------------
    def register(self, server: grpc.aio.Server) -> None:
        """Serve BulkSync on the gossip port (registered before the port starts)."""
        handler = grpc.unary_unary_rpc_method_handler(self._serve_sync)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("swarmlet.v1.NetworkDB", {"BulkSync": handler}),))

    async def start(self, gossip: _Gossip) -> None:
        """Follow gossip's members and messages; tick."""
        self.gossip = gossip
        for member in gossip.members():
            self._member(member)
        gossip.subscribe(self._member)
        gossip.subscribe_messages(self._message)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="networkdb")

    async def stop(self) -> None:
        """Stop ticking and close the sync channels."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._sends):
            task.cancel()
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close(None)
        self._channels.clear()

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(networks)`` after the tables of those networks changed."""
        self._listeners.append(callback)

    # Local writes (flushed at once) -------------------------------------------------------------
    def join_network(self, network: str, address: str) -> None:
        """A task of this node attached to ``network``."""
        self.db.join_network(network, address)
        self.flush()

    def leave_network(self, network: str) -> None:
        """The last task of this node on ``network`` left."""
        self.db.leave_network(network)
        self.flush()

    def set_endpoint(self, endpoint: Endpoint) -> None:
        """Publish a task of this node."""
        self.db.set_endpoint(endpoint)
        self.flush()

    def delete_endpoint(self, network: str, task_id: str) -> None:
        """Withdraw a task of this node."""
        self.db.delete_endpoint(network, task_id)
        self.flush()

    # Inputs -------------------------------------------------------------------------------------
    def _member(self, event: Any) -> None:
        state = getattr(event.state, "value", str(event.state))
        if state in ("alive", "suspect"):
            self.db.node_alive(event.name)
        else:
            self.db.node_dead(event.name)
        self.flush()

    def _message(self, message: Any) -> None:
        if message.topic != TOPIC:
            return
        try:
            entry = decode_entry(message.payload)
        except ValueError as exc:
            log.warning("networkdb: dropped a broadcast from %s: %s", message.origin, exc)
            return
        self.db.handle_broadcast(entry)
        self.flush()

    async def _serve_sync(self, request: bytes, context: Any) -> bytes:
        sender, _, body = request.partition(b"\n")
        try:
            entries = decode_entries(body)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        answer = self.db.handle_sync(sender.decode(errors="replace"), entries, reply=False)
        self.flush()
        if answer is None:
            return self.db.name.encode() + b"\n"
        return self.db.name.encode() + b"\n" + encode_entries(answer.entries)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.db.tick()
                self.flush()
            except Exception:
                log.exception("networkdb tick failed")

    # Outputs ------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the core's outbox to gossip and the sync RPC; tell listeners what changed."""
        for out in self.db.take_outbox():
            if isinstance(out, Broadcast):
                if self.gossip is not None:
                    try:
                        self.gossip.broadcast(TOPIC, encode_entry(out.entry))
                    except ValueError as exc:  # too big for gossip: anti-entropy will carry it
                        log.warning("networkdb: entry not gossiped: %s", exc)
            else:
                task = asyncio.get_running_loop().create_task(self._sync(out))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
        changed = self.db.take_changed()
        if changed:
            counts = {table: 0 for table in (ENDPOINTS, PEERS)}
            for table, _, _ in self.db.snapshot():
                counts[table] += 1
            for table, count in counts.items():
                self._entries.labels(table=table).set(count)
            for callback in self._listeners:
                callback(changed)

    def _address(self, node: str) -> str | None:
        if self.gossip is None:
            return None
        for member in self.gossip.members():
            if member.name == node:
                return str(member.address)
        return None

    async def _sync(self, sync: Sync) -> None:
        address = self._address(sync.to)
        if address is None:
            return
        try:
            await self.faults.call(address, _SYNC_TIMEOUT)
        except ConnectionError:
            log.debug("networkdb: bulk sync with %s: the link is partitioned", sync.to)
            return
        if self._tls_generation != tls.generation():  # new certificates: new connections
            self._tls_generation = tls.generation()
            stale, self._channels = list(self._channels.values()), {}
            for old in stale:
                await old.close(None)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.channel(address, manager=False)
        call = channel.unary_unary(SYNC_METHOD, None, None)
        request = self.db.name.encode() + b"\n" + encode_entries(sync.entries)
        try:
            raw = await call(request, timeout=_SYNC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.debug("networkdb: bulk sync with %s failed: %s", sync.to, exc.code())
            return
        sender, _, body = bytes(raw).partition(b"\n")
        try:
            entries = decode_entries(body)
        except ValueError as exc:
            log.warning("networkdb: bad sync answer from %s: %s", sync.to, exc)
            return
        self.db.handle_sync(sender.decode(errors="replace"), entries, reply=True)
        self.flush()
