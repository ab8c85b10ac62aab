"""Overlay stream tunnels: many streams multiplexed over one lasting connection per pair of agents.

A node that needs a stream to a task on another node (a task's ``connect``, the routing mesh's
relay) opens it on its **tunnel connection** to that node: a TCP connection to the peer's port
4789, mutual TLS with the nodes' certificates when TLS is on (:mod:`nodeagent.overlay.tunnel_tls`),
made once and kept. Each stream is a run of frames on it, each frame a 9-byte head (kind, stream
number, payload length: ``!BII``) and its payload:

* ``OPEN``: the stream's tag, 16 bytes ``!I4sH4sH``: the network's VNI, the destination task's
  overlay address and port, the source address and port;
* ``OPENED`` / ``REFUSED`` (a reason in UTF-8): the receiver's answer; the opener may send its
  first bytes right after ``OPEN`` without waiting for it (the routing mesh does);
* ``DATA``; ``EOF`` (a half close: the other direction goes on); ``CLOSE`` (the stream is gone);
* ``PAUSE`` / ``RESUME``: the receiver's destination cannot take more for now / can again, so the
  sender stops / restarts reading its source (flow control per stream; the connection's own
  write buffer pauses every stream on it).

The dialer opens with :data:`PREFACE`. Frames a callback produces are written together once per
turn of the event loop (one write, one encryption, one system call for the lot). No handshake,
no connection and no header round trip per stream: what a stream costs is its frames.

A stream is an :class:`asyncio.Transport` (:class:`Stream`), so any protocol rides on it: a
:class:`~nodeagent.overlay.splice.Splice`, or an emulated task's own server protocol, handed the
stream as if it had accepted a socket. The shell that opens and answers streams is
:mod:`nodeagent.overlay.shell`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PREFACE", "Connection", "OpenRequest", "Stream"]

PREFACE = b"SWARMLET-TUNNEL 2\n"
"""The first bytes a dialer sends on a new tunnel connection (inside TLS when on)."""

OPEN, OPENED, REFUSED, DATA, EOF, CLOSE, PAUSE, RESUME = range(1, 9)
_HEAD = struct.Struct("!BII")
_TAG = struct.Struct("!I4sH4sH")
_MAX_FRAME = 16 * 1024 * 1024

ANSWER_TIMEOUT = 5.0
"""Seconds a stream may wait for its ``OPENED`` or ``REFUSED``: past that, the far node is taken
for gone (a node killed leaves no one to close its connections) and the tunnel connection is
dropped, its unanswered streams told (``on_refused``) so that they may go elsewhere."""


@dataclass(frozen=True)
class OpenRequest:
    """What an ``OPEN`` frame asks: the stream's tag."""

    vni: int
    dst: str
    dport: int
    src: str
    sport: int

    def encode(self) -> bytes:
        """The ``OPEN`` payload."""
        return _TAG.pack(self.vni, _packed(self.dst), self.dport, _packed(self.src), self.sport)

    @classmethod
    def decode(cls, payload: bytes) -> OpenRequest:
        """An ``OPEN`` payload read back (ValueError when malformed)."""
        try:
            vni, dst, dport, src, sport = _TAG.unpack(payload)
        except struct.error as exc:
            raise ValueError(f"bad OPEN frame: {exc}") from None
        return cls(vni, str(ipaddress.IPv4Address(dst)), dport, str(ipaddress.IPv4Address(src)), sport)


def _packed(addr: str) -> bytes:
    try:
        return ipaddress.IPv4Address(addr).packed
    except ValueError:
        return b"\0\0\0\0"


class Stream(asyncio.Transport):
    """One stream of a tunnel connection, as a transport (see the module docstring)."""

    def __init__(self, conn: Connection, sid: int, peername: tuple[str, int]) -> None:
        """Stream ``sid`` of ``conn``; ``peername``: the far end's (address, port)."""
        super().__init__()
        self.conn = conn
        self.sid = sid
        self.peername = peername
        self.protocol: asyncio.BaseProtocol | None = None
        self.opened = False
        self.opened_at = 0.0  # loop time of the OPEN (the dialer's side)
        self.rx = self.tx = self.rx_frames = self.tx_frames = 0  # counted here, reported at the end
        self.on_end: Callable[[Stream], None] | None = None
        self.on_opened: Callable[[Stream], None] | None = None
        self.on_refused: Callable[[Stream, str], bool] | None = None
        self._closing = False
        self._reading = True
        self._eof_sent = False

    # asyncio.Transport -------------------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peername
        if name == "sockname":
            return self.conn.sockname
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self.tx += len(data)
        self.tx_frames += 1
        self.conn.send(DATA, self.sid, bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self._closing and not self._eof_sent:
            self._eof_sent = True
            self.conn.send(EOF, self.sid, b"")

    def close(self) -> None:
        self._end(None, send=True)

    def abort(self) -> None:
        self._end(None, send=True)

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self._reading = False
            self.conn.send(PAUSE, self.sid, b"")

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self.conn.send(RESUME, self.sid, b"")

    def is_reading(self) -> bool:
        return self._reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return self.conn.buffered()

    # The connection's side ---------------------------------------------------------------------
    def _end(self, exc: Exception | None, *, send: bool) -> None:
        """The stream is over: tell the far end (``send``), forget it, and tell its protocol."""
        if self._closing:
            return
        self._closing = True
        if send:
            self.conn.send(CLOSE, self.sid, b"")
        self.conn.streams.pop(self.sid, None)
        if self.on_end is not None:
            self.on_end(self)
        protocol = self.protocol
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, exc)


class Connection(asyncio.Protocol):
    """A tunnel connection between two agents (see the module docstring).

    ``on_open(conn, sid, request)`` answers an ``OPEN`` of the far end (the node that accepted
    the connection); None on the dialer's side, where only this end opens streams."""

    def __init__(self, on_open: Callable[[Connection, int, OpenRequest], None] | None = None, *,
                 on_ready: Callable[[Connection], bool] | None = None,
                 answer_timeout: float = ANSWER_TIMEOUT) -> None:
        """``on_ready(conn)``: called once the connection is up (after TLS); False aborts it.
        ``answer_timeout``: :data:`ANSWER_TIMEOUT`."""
        self.on_open = on_open
        self.answer_timeout = answer_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.on_ready = on_ready
        self.dialer = on_open is None
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.sockname = ("0.0.0.0", 0)  # this end's address: a stream's own, as a socket says
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost = False
        self.on_lost: Callable[[Connection], None] | None = None
        self.peer_node = ""  # the far end's node ID, from its certificate (TLS only)
        self._greeted = self.dialer
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flushing = False
        self._next_sid = 1
        self._paused = False

    # asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.sockname = (str(sockname[0]), int(sockname[1]))
        if self.on_ready is not None and not self.on_ready(self):
            transport.abort()
            return
        if self.dialer:
            transport.write(PREFACE)
        if self._out:
            self._flush()
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._greeted:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self._abort()
                return
            if buf[: len(PREFACE)] != PREFACE:
                self._abort()
                return
            del buf[: len(PREFACE)]
            self._greeted = True
        pos, size = 0, len(buf)
        while size - pos >= 9:
            kind, sid, length = _HEAD.unpack_from(buf, pos)
            if length > _MAX_FRAME:
                self._abort()
                return
            end = pos + 9 + length
            if end > size:
                break
            payload = bytes(buf[pos + 9:end])
            pos = end
            self._frame(kind, sid, payload)
            if self.lost:
                return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionResetError("tunnel closed"))
            self.ready.exception()  # retrieved: nobody may be waiting
        if self._watchdog is not None:
            self._watchdog.cancel()
        for stream in list(self.streams.values()):
            moved = not stream.opened and stream.on_refused is not None
            if moved and stream.on_refused is not None and stream.on_refused(stream, "tunnel lost"):
                stream._closing = True
                self.streams.pop(stream.sid, None)
                continue
            stream._end(ConnectionResetError("tunnel connection lost"), send=False)
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._paused = True
        for stream in list(self.streams.values()):
            if stream.protocol is not None:
                stream.protocol.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        for stream in list(self.streams.values()):
            if stream.protocol is not None:
                stream.protocol.resume_writing()

    # Frames ------------------------------------------------------------------------------------
    def _frame(self, kind: int, sid: int, payload: bytes) -> None:
        if kind == OPEN:
            if self.on_open is None or sid in self.streams:
                self._abort()
                return
            try:
                request = OpenRequest.decode(payload)
            except ValueError:
                self._abort()
                return
            self.on_open(self, sid, request)
            return
        if not OPENED <= kind <= RESUME:
            self._abort()
            return
        stream = self.streams.get(sid)
        if stream is None:
            return  # a stream this end closed already: its late frames are dropped
        protocol = stream.protocol
        if kind == DATA:
            stream.rx += len(payload)
            stream.rx_frames += 1
            if protocol is not None:
                protocol.data_received(payload)  # type: ignore[attr-defined]
        elif kind == EOF:
            keep = protocol.eof_received() if protocol is not None else False  # type: ignore[attr-defined]
            if not keep:
                stream.close()
        elif kind == CLOSE:
            stream._end(None, send=False)
        elif kind == OPENED:
            stream.opened = True
            if stream.on_opened is not None:
                stream.on_opened(stream)
        elif kind == REFUSED:
            reason = payload.decode(errors="replace") or "Connection refused"
            if stream.on_refused is not None and stream.on_refused(stream, reason):
                stream._closing = True
                self.streams.pop(sid, None)
                return
            stream._end(ConnectionRefusedError(reason), send=False)
        elif kind == PAUSE:
            if protocol is not None:
                protocol.pause_writing()
        elif kind == RESUME and protocol is not None and not self._paused:
            protocol.resume_writing()

    def send(self, kind: int, sid: int, payload: bytes) -> None:
        """Queue one frame; the frames of this turn of the event loop are written together."""
        self._out.append(_HEAD.pack(kind, sid, len(payload)))
        if payload:
            self._out.append(payload)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self.transport is None:
            if self.lost:
                self._out.clear()
            return  # not up yet: connection_made writes them
        out, self._out = self._out, []
        if not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def buffered(self) -> int:
        """Bytes queued on the connection and not sent yet."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _abort(self) -> None:
        """A peer that does not speak the protocol: drop the connection."""
        if self.transport is not None:
            self.transport.abort()
        self.lost = True

    # Streams -----------------------------------------------------------------------------------
    def open(self, request: OpenRequest, protocol: asyncio.BaseProtocol, *,
             early: bytes = b"") -> Stream:
        """A new stream tagged ``request`` (the dialer's side), ``protocol`` riding on it;
        ``early``: its first bytes, sent with the ``OPEN`` (no round trip before them)."""
        sid = self._next_sid
        self._next_sid += 1
        stream = Stream(self, sid, (request.dst, request.dport))
        stream.protocol = protocol
        self.streams[sid] = stream
        stream.opened_at = asyncio.get_running_loop().time()
        if self._watchdog is None:
            self._watch()
        self.send(OPEN, sid, request.encode())
        if early:
            stream.write(early)
        return stream

    def accept(self, sid: int, request: OpenRequest) -> Stream:
        """The stream ``sid`` the far end opened, taken (the answer, ``OPENED``, is sent apart)."""
        stream = Stream(self, sid, (request.src, request.sport))
        self.streams[sid] = stream
        return stream

    def answer(self, sid: int, refused: str = "") -> None:
        """Answer an ``OPEN``: ``OPENED``, or ``REFUSED`` with a reason (the stream, if taken, ends)."""
        if refused:
            stream = self.streams.pop(sid, None)
            if stream is not None:
                stream._closing = True
            self.send(REFUSED, sid, refused.encode())
        else:
            self.send(OPENED, sid, b"")

    def _watch(self) -> None:
        """Every second while streams wait for their answer: drop the connection if one waited
        longer than :attr:`answer_timeout` (the far node is gone)."""
        loop = asyncio.get_running_loop()
        self._watchdog = None
        waiting = [s.opened_at for s in self.streams.values() if not s.opened]
        if not waiting or self.lost:
            return
        if loop.time() - min(waiting) > self.answer_timeout:
            self._abort()
            return
        self._watchdog = loop.call_later(1.0, self._watch)

    def close(self) -> None:
        """Close the connection (its streams end)."""
        if self.transport is not None:
            self.transport.close()
