"""The real :class:`nodeagent.transport.Transport`: UDP datagrams and gRPC streams on one port.

Why two carriers (the paragraph docs/architecture.md carries): SWIM's probes and gossip are
best-effort by design (a lost probe is what the protocol measures), small, and sent to a
different peer every round. UDP datagrams fit them exactly, as in memberlist: no connection
set-up per probe, no head-of-line blocking behind a retransmitting TCP segment, and a lost
datagram looks like a lost packet, which is what failure detection must see. Push-pull state
exchange and anything else that must arrive whole and in order goes over a gRPC client stream
per peer (HTTP/2 over TCP), which also gives us the project's one RPC stack, deadlines and
flow control. Both listen on the same port number (7946/udp and 7946/tcp), as Swarm's do.

Every message travels in an ``Envelope`` (proto/swarmlet/v1/transport.proto) that names the
sender's advertised gossip address; the payload inside is the protocol codec's bytes.
Anything that arrives oversized or malformed is counted (``on_drop(reason)``) and dropped; the
receiving code never raises into the event loop.

This is a shell: it runs on one asyncio event loop and calls the handler on that loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from swarmlet.v1 import transport_pb2, transport_pb2_grpc

from nodeagent import tls
from nodeagent.options import join_host_port, split_host_port
from nodeagent.transport import Codec, MessageHandler
from nodeagent.transport.faults import LinkFaults

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "MAX_STREAM_MESSAGE_BYTES",
    "GrpcTransport",
    "TransportObserver",
]

log = logging.getLogger(__name__)

# The generated gRPC module has no annotations; reached through Any so strict mypy accepts it.
_generated: Any = transport_pb2_grpc

#: The largest UDP payload IPv4 can carry; a datagram is one Envelope.
MAX_DATAGRAM_BYTES = 65507
#: The largest payload accepted on a stream (a push-pull of a few thousand members fits).
MAX_STREAM_MESSAGE_BYTES = 4 * 1024 * 1024
# An Envelope adds a few bytes of framing and the sender's address to the payload.
_ENVELOPE_SLACK = 512
# How long an outgoing stream may sit unused before it is closed (a new one opens on demand).
_STREAM_IDLE_SECONDS = 30.0
# How long a resolved host name is trusted (containers get new addresses when recreated).
_RESOLVE_TTL_SECONDS = 30.0
# Datagrams held for one host name while it resolves.
_RESOLVE_QUEUE_LIMIT = 64
# How long a stream may take to connect before its queued messages count as unreachable.
_CONNECT_TIMEOUT_SECONDS = 1.0
# Messages queued for one peer while its stream connects; beyond this the oldest are dropped,
# so a dead peer cannot make the agent's memory grow.
_STREAM_QUEUE_LIMIT = 1024


class TransportObserver(Protocol):
    """What the transport reports, for the metrics; every method is called on the loop."""

    def message_in(self, kind: str, size: int) -> None:
        """A message of ``size`` bytes arrived; ``kind`` is ``packet`` or ``stream``."""

    def message_out(self, kind: str, size: int) -> None:
        """A message of ``size`` bytes left."""

    def dropped(self, reason: str) -> None:
        """A message was dropped: ``oversized``, ``malformed``, ``unreachable`` or ``fault``."""


class _NullObserver:
    def message_in(self, kind: str, size: int) -> None:
        pass

    def message_out(self, kind: str, size: int) -> None:
        pass

    def dropped(self, reason: str) -> None:
        pass


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: GrpcTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._packet_received(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is gone, which SWIM finds out by itself.
        log.debug("udp error: %s", exc)


class _StreamServicer(transport_pb2_grpc.GossipTransportServicer):
    def __init__(self, owner: GrpcTransport) -> None:
        self.owner = owner

    async def Stream(
        self,
        request_iterator: AsyncIterator[transport_pb2.Envelope],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> transport_pb2.StreamAck:
        """Deliver every envelope of one peer's stream, in order, until the peer closes it."""
        received = 0
        async for envelope in request_iterator:
            received += 1
            self.owner._envelope_received(envelope, envelope.ByteSize(), reliable=True)
        return transport_pb2.StreamAck(received=received)


class _OutgoingStream:
    """One open client stream to a peer, fed from a queue, closed when idle or broken."""

    def __init__(self, owner: GrpcTransport, peer: str) -> None:
        self.owner = owner
        self.peer = peer
        self.queue: asyncio.Queue[transport_pb2.Envelope | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"gossip-stream-{peer}")

    def put(self, envelope: transport_pb2.Envelope) -> None:
        """Queue one envelope; past the limit the oldest queued one is dropped (and counted)."""
        if self.queue.qsize() >= _STREAM_QUEUE_LIMIT:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.owner.observer.dropped("unreachable")
        self.queue.put_nowait(envelope)

    async def _requests(self) -> AsyncIterator[transport_pb2.Envelope]:
        while True:
            try:
                envelope = await asyncio.wait_for(self.queue.get(), _STREAM_IDLE_SECONDS)
            except TimeoutError:
                return
            if envelope is None:
                return
            decision = self.owner.faults.on_stream(self.peer, self.owner.rng)
            if decision.copies == 0:
                self.owner.observer.dropped("fault")
                continue
            if decision.delay:
                # Delaying here, in the one writer, keeps the stream's order.
                await asyncio.sleep(decision.delay)
            self.owner.observer.message_out("stream", envelope.ByteSize())
            yield envelope

    async def _run(self) -> None:
        channel = tls.channel(self.peer, self.owner._channel_options, manager=False)
        try:
            # Connect first, so that a peer that is down costs the queued messages only (counted
            # as unreachable) and never a stream that swallows them silently.
            await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_SECONDS)
            stub = _generated.GossipTransportStub(channel)
            await stub.Stream(self._requests(), timeout=None)
        except TimeoutError:
            log.debug("stream to %s: cannot connect", self.peer)
        except grpc.aio.AioRpcError as exc:
            log.debug("stream to %s ended: %s", self.peer, exc.code())
        except Exception:  # a broken stream must never take the agent down
            log.exception("stream to %s failed", self.peer)
        finally:
            # What was still queued is lost, as on a reset TCP connection.
            while not self.queue.empty():
                if self.queue.get_nowait() is not None:
                    self.owner.observer.dropped("unreachable")
            if self.owner._streams.get(self.peer) is self:
                del self.owner._streams[self.peer]
            with contextlib.suppress(Exception):
                await channel.close(grace=None)


class GrpcTransport:
    """A Transport over UDP (packets) and gRPC client streams (reliable), on one port."""

    def __init__(
        self,
        *,
        listen_host: str,
        port: int,
        advertise_host: str,
        codec: Codec,
        stream_codec: Codec | None = None,
        faults: LinkFaults | None = None,
        rng: random.Random | None = None,
        observer: TransportObserver | None = None,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
        max_stream_bytes: int = MAX_STREAM_MESSAGE_BYTES,
    ) -> None:
        """Configure; nothing is bound until :meth:`start`. ``port`` 0 picks a free one.

        ``codec`` encodes datagrams; ``stream_codec`` (default: the same) encodes stream messages,
        which may be larger (a full-state exchange).
        """
        self.listen_host = listen_host
        self.port = port
        self.advertise_host = advertise_host
        self.codec = codec
        self.stream_codec = stream_codec if stream_codec is not None else codec
        self.faults = faults if faults is not None else LinkFaults()
        self.rng = rng if rng is not None else random.Random()
        self.observer: TransportObserver = observer if observer is not None else _NullObserver()
        self.max_datagram_bytes = max_datagram_bytes
        self.max_stream_bytes = max_stream_bytes
        self._handler: MessageHandler | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: grpc.aio.Server | None = None
        self._streams: dict[str, _OutgoingStream] = {}
        self._servicers: list[Callable[[grpc.aio.Server], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Peers named by host name (seeds such as manager1:7946): resolved asynchronously, because
        # sendto() with a name would block the loop on DNS.
        self._literal: set[str] = set()
        self._resolved: dict[str, tuple[str, float]] = {}
        self._resolving: dict[str, list[tuple[bytes, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel_options = [
            ("grpc.max_send_message_length", max_stream_bytes + _ENVELOPE_SLACK),
            ("grpc.max_receive_message_length", max_stream_bytes + _ENVELOPE_SLACK),
        ]

    # Transport ---------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """This agent's gossip address as peers name it (``advertise_host:port``)."""
        return join_host_port(self.advertise_host, self.port)

    def set_handler(self, handler: MessageHandler) -> None:
        """Install the receiver; it is called on the event loop for every valid message."""
        self._handler = handler

    def send_packet(self, to: str, message: Any) -> None:
        """Encode and send one datagram; too big or unaddressable messages are dropped."""
        if self._udp is None or self._loop is None:
            return
        data = self._envelope(message)
        if data is None:
            return
        if len(data) > self.max_datagram_bytes:
            log.warning("not sending a %d-byte datagram to %s (limit %d)", len(data), to,
                        self.max_datagram_bytes)
            self.observer.dropped("oversized")
            return
        try:
            host, port = split_host_port(to)
        except ValueError:
            self.observer.dropped("unreachable")
            return
        decision = self.faults.on_packet(to, self.rng)
        if decision.copies == 0:
            self.observer.dropped("fault")
            return
        for _ in range(decision.copies):
            if decision.delay:
                self._loop.call_later(decision.delay, self._sendto, data, host, port)
            else:
                self._sendto(data, host, port)

    def _ip_for(self, host: str) -> str | None:
        """The IP to send to, or None while a name is being resolved (off the loop's critical path)."""
        if host in self._literal:
            return host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            self._literal.add(host)
            return host
        assert self._loop is not None
        cached = self._resolved.get(host)
        if cached is not None and cached[1] > self._loop.time():
            return cached[0]
        if host not in self._resolving:
            self._resolving[host] = []
            task = self._loop.create_task(self._resolve(host))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return None

    async def _resolve(self, host: str) -> None:
        assert self._loop is not None
        try:
            infos = await asyncio.wait_for(
                self._loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM), 2.0)
            ip: str | None = str(infos[0][4][0])
        except (OSError, TimeoutError, IndexError):
            ip = None
        waiting = self._resolving.pop(host, [])
        if ip is None:
            for _ in waiting:
                self.observer.dropped("unreachable")
            return
        self._resolved[host] = (ip, self._loop.time() + _RESOLVE_TTL_SECONDS)
        for data, port in waiting:
            self._sendto(data, host, port)

    def send_stream(self, to: str, message: Any) -> None:
        """Queue one message on the stream to ``to`` (opened on demand)."""
        if self._server is None:
            return
        data = self._encode(message, self.stream_codec)
        if data is None:
            return
        if len(data) > self.max_stream_bytes:
            self.observer.dropped("oversized")
            return
        stream = self._streams.get(to)
        if stream is None:
            stream = self._streams[to] = _OutgoingStream(self, to)
        stream.put(transport_pb2.Envelope(sender=self.address, payload=data))

    # Life cycle ------------------------------------------------------------------------------
    def add_servicer(self, register: Callable[[grpc.aio.Server], None]) -> None:
        """Have ``register(server)`` add another service to the gossip port's gRPC server."""
        self._servicers.append(register)

    async def start(self) -> None:
        """Bind the UDP socket and the gRPC server, both on :attr:`port`."""
        self._loop = asyncio.get_running_loop()
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            udp, _ = await self._loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.listen_host, self.port)
            )
            port = udp.get_extra_info("sockname")[1]
            server = grpc.aio.server(options=self._channel_options, interceptors=[tls.NodeGuard()])
            _generated.add_GossipTransportServicer_to_server(_StreamServicer(self), server)
            for register in self._servicers:
                register(server)
            try:
                bound = tls.add_port(server, join_host_port(self.listen_host, port))
            except RuntimeError:
                bound = 0
            if bound == port:
                self._udp, self._server, self.port = udp, server, port
                await server.start()
                log.info("gossip transport on %s:%d (udp + grpc)", self.listen_host, port)
                return
            # The TCP side of a port UDP got for us may be taken: try another (port 0 only).
            udp.close()
            await server.stop(None)
            log.debug("tcp port %d taken (attempt %d)", port, attempt + 1)
        raise OSError(f"cannot bind the gossip port {self.listen_host}:{self.port} over TCP")

    async def stop(self, grace: float = 0.2) -> None:
        """Close every stream and both sockets; in-flight RPCs get ``grace`` seconds."""
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(None)
        streams = [s.task for s in self._streams.values()]
        server, self._server = self._server, None

        async def close_outgoing() -> None:
            if streams:
                _, pending = await asyncio.wait(streams, timeout=grace)
                for task in pending:
                    task.cancel()

        # Both directions wind down at once, so the grace is spent once, not twice.
        await asyncio.gather(close_outgoing(), server.stop(grace) if server is not None else asyncio.sleep(0))

    # Internals -----------------------------------------------------------------------------------
    def _encode(self, message: Any, codec: Codec) -> bytes | None:
        try:
            return codec.encode(message)
        except ValueError as exc:
            # Our own message did not encode (too big for the codec): a bug worth a log line.
            log.warning("cannot encode %s: %s", type(message).__name__, exc)
            self.observer.dropped("oversized")
            return None

    def _envelope(self, message: Any) -> bytes | None:
        payload = self._encode(message, self.codec)
        if payload is None:
            return None
        return transport_pb2.Envelope(sender=self.address, payload=payload).SerializeToString()

    def _sendto(self, data: bytes, host: str, port: int) -> None:
        if self._udp is None:
            return
        ip = self._ip_for(host)
        if ip is None:
            waiting = self._resolving[host]
            if len(waiting) < _RESOLVE_QUEUE_LIMIT:
                waiting.append((data, port))
            else:
                self.observer.dropped("unreachable")
            return
        try:
            self._udp.sendto(data, (ip, port))
        except OSError as exc:
            log.debug("udp send to %s:%d failed: %s", host, port, exc)
            self.observer.dropped("unreachable")
            return
        self.observer.message_out("packet", len(data))

    def _packet_received(self, data: bytes) -> None:
        if len(data) > self.max_datagram_bytes:
            self.observer.dropped("oversized")
            return
        envelope = transport_pb2.Envelope()
        try:
            envelope.ParseFromString(data)
        except (DecodeError, ValueError):
            self.observer.dropped("malformed")
            return
        self._envelope_received(envelope, len(data), reliable=False)

    def _envelope_received(self, envelope: transport_pb2.Envelope, size: int, *, reliable: bool) -> None:
        kind = "stream" if reliable else "packet"
        limit = self.max_stream_bytes if reliable else self.max_datagram_bytes
        if len(envelope.payload) > limit:
            self.observer.dropped("oversized")
            return
        try:
            split_host_port(envelope.sender)
        except ValueError:
            self.observer.dropped("malformed")
            return
        if self.faults.blocked(envelope.sender):
            self.observer.dropped("fault")
            return
        try:
            message = (self.stream_codec if reliable else self.codec).decode(envelope.payload)
        except Exception:  # the codec promises ValueError; anything else is still the peer's fault
            self.observer.dropped("malformed")
            return
        self.observer.message_in(kind, size)
        handler = self._handler
        if handler is None:
            return
        try:
            handler(envelope.sender, message, reliable)
        except Exception:
            # A message the core choked on must not kill the receive path for everyone else.
            log.exception("handler failed on a message from %s", envelope.sender)
            self.observer.dropped("invalid")
