"""The Raft shell's network: one gRPC client stream per peer and direction.

Each manager opens ``/swarmlet.v1.RaftTransport/Stream`` to every peer it sends to and writes
frames (:mod:`manager.state.raft.framing`) of every message queued for that peer at the time. The
sender's id and cluster address travel as call metadata, which is how a node learns where a new
peer lives. Streams break when a peer's process or connection goes away; the shell hears of it
through ``peer_gone`` (it may be the leader: see :mod:`manager.state.raft.probe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc

from manager.state.raft.addresses import AddressBook
from manager.state.raft.framing import pack_frame, unpack_frame
from manager.state.raft.messages import Message, MessageType
from nodeagent import tls
from nodeagent.transport.planes import FaultGate

if TYPE_CHECKING:
    from manager.state.raft.codec import RaftCodec

__all__ = ["SERVER_OPTIONS", "RaftTransport", "StreamServer", "raft_transport_handler"]

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
_FRAME_BYTES = 1 << 20  # stop adding queued messages to a frame beyond this many bytes
_SERVICE = "swarmlet.v1.RaftTransport"
_METHOD = f"/{_SERVICE}/Stream"
_MD_FROM = "x-swarmlet-raft-from"
_MD_ADDR = "x-swarmlet-raft-addr"

ServicerContext = grpc.aio.ServicerContext[bytes, bytes]


class StreamServer(Protocol):
    """What the gRPC handler hands a peer's stream to (the shell)."""

    async def serve_stream(self, frames: AsyncIterator[bytes], context: ServicerContext) -> bytes:
        """Read the peer's frames until its stream ends."""
        ...


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


class RaftTransport:
    """Streams to and from the other managers, for one manager's shell."""

    def __init__(
        self,
        node_id: str,
        address: str,
        book: AddressBook,
        codec: RaftCodec,
        *,
        peer_queue: int,
        deliver: Callable[[list[Message]], None],
        peer_gone: Callable[[str], None],
        learned_address: Callable[[str, str], None],
        last_contact: dict[str, float],
        faults: FaultGate | None = None,
    ) -> None:
        """``deliver`` takes the messages of each frame received; ``peer_gone`` hears of every
        stream that broke; ``learned_address`` of every peer address found in call metadata;
        ``last_contact`` is updated with the monotonic time of each peer's last frame;
        ``faults`` is the node's link faults, as the Raft plane sees them."""
        self._faults = faults if faults is not None else FaultGate(None, "raft")
        self.node_id = node_id
        self.address = address
        self._book = book
        self._codec = codec
        self._peer_queue = peer_queue
        self._deliver = deliver
        self._peer_gone = peer_gone
        self._learned_address = learned_address
        self._last_contact = last_contact
        self._peers: dict[str, _Peer] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tls_generation = tls.generation()
        self._closing: set[asyncio.Future[None]] = set()
        self._stopping = False

    async def close(self) -> None:
        """Cancel every outbound stream and close every channel."""
        self._stopping = True
        tasks = [peer.task for peer in self._peers.values() if peer.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close(None)

    def send(self, message: Message) -> None:
        """Queue ``message`` for its recipient, opening a stream if none is open."""
        to = message.to
        if message.type in _ELECTION_MESSAGES:
            log.debug("raft: send %s to %s term %d reject=%s", message.type.name, to, message.term,
                      message.reject)
        peer = self._peers.get(to)
        if peer is None:
            address = self._book.get(to)
            if not address:
                return  # unknown address: Raft retries once we learn it
            peer = _Peer(address, self._peer_queue)
            self._peers[to] = peer
        if self._faults.active:
            delay = self._faults.stream(peer.address)
            if delay is None:
                return  # partitioned away: lost, as on a cut wire; Raft resends what matters
            data = self._codec.encode(message)
            self._faults.send_later(to, delay, lambda: self._enqueue(to, data))
            return
        self._enqueue(to, self._codec.encode(message))

    def _enqueue(self, to: str, data: bytes) -> None:
        peer = self._peers.get(to)
        if peer is None or self._stopping:
            return
        if peer.task is None or peer.task.done():
            peer.opened = time.monotonic()
            peer.task = asyncio.create_task(self._stream_to(to, peer), name=f"raft-send-{to}")
        # A peer that cannot keep up loses messages; Raft resends what matters.
        if peer.outbox.qsize() < peer.limit:
            peer.outbox.put_nowait(data)

    def readdress(self, node_id: str, address: str) -> None:
        """``node_id`` moved to ``address``: the next send opens a stream there."""
        peer = self._peers.get(node_id)
        if peer is not None and peer.address != address:
            peer.address = address
            if peer.task is not None:
                peer.task.cancel()
                peer.task = None

    def reconnect(self, peer_id: str) -> None:
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

    def _follow_credentials(self) -> None:
        """New certificates (a renewal, a promotion, a CA rotation): reconnect with them; a
        channel keeps the credentials it was made with."""
        if self._tls_generation == tls.generation():
            return
        self._tls_generation = tls.generation()
        for channel in self._channels.values():
            task = asyncio.ensure_future(channel.close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._channels.clear()

    async def _stream_to(self, to: str, peer: _Peer) -> None:
        metadata = ((_MD_FROM, self.node_id), (_MD_ADDR, self.address))
        backoff = 0.05
        while not self._stopping:
            self._follow_credentials()
            channel = self._channels.get(peer.address)
            if channel is None:
                channel = tls.channel(peer.address, _CHANNEL_OPTIONS)
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

    async def serve_stream(self, frames: AsyncIterator[bytes], context: ServicerContext) -> bytes:
        """Server side of a peer's stream: decode each frame and deliver its messages."""
        md = {k: v for k, v in (context.invocation_metadata() or ())}
        sender = str(md.get(_MD_FROM, ""))
        address = str(md.get(_MD_ADDR, ""))
        if sender and address:
            self._learned_address(sender, address)
        log.debug("raft: stream from %s (%s) opened", sender or "?", address or "?")
        if sender:
            # A peer opens a stream to us when it starts or after its connection broke: either
            # way our own connection to it may be a dead one (a restarted container never resets
            # the connections of its former self), so open a fresh one.
            self.reconnect(sender)
        try:
            await self._read_frames(frames, sender, address)
        finally:
            # A peer's stream ends only when its process or its connection goes away.
            if sender:
                self._peer_gone(sender)
        return b""

    async def _read_frames(self, frames: AsyncIterator[bytes], sender: str, address: str) -> None:
        async for frame in frames:
            if self._faults.active and self._faults.blocked(address or self._book.get(sender) or sender):
                continue  # from a partitioned peer: never arrived
            try:
                parts = unpack_frame(frame)
            except ValueError:
                log.warning("raft: dropped a malformed frame from %s", sender or "?")
                continue
            log.debug("raft: frame of %d messages from %s", len(parts), sender or "?")
            messages: list[Message] = []
            for data in parts:
                try:
                    message = self._codec.decode(data)
                except ValueError:
                    log.warning("raft: dropped a malformed message from %s", sender or "?")
                    continue
                if message.type in _ELECTION_MESSAGES:
                    log.debug("raft: got %s from %s term %d reject=%s", message.type.name, message.sender,
                              message.term, message.reject)
                messages.append(message)
            if sender:
                self._last_contact[sender] = time.monotonic()
            self._deliver(messages)


def raft_transport_handler(
    server_for: Callable[[], StreamServer | None],
) -> grpc.GenericRpcHandler[bytes, bytes]:
    """The gRPC handler of ``/swarmlet.v1.RaftTransport/Stream``, delivering to ``server_for()``."""

    async def stream(frames: AsyncIterator[bytes], context: ServicerContext) -> bytes:
        server = server_for()
        if server is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "raft is not running")
        assert server is not None
        return await server.serve_stream(frames, context)

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {"Stream": grpc.stream_unary_rpc_method_handler(stream)},
    )


async def _frames(outbox: asyncio.Queue[bytes | None], to: str) -> AsyncIterator[bytes]:
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
