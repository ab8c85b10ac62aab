"""Two TCP connections spliced together at the protocol level: the relay of the mesh and the tunnels.

A :class:`Splice` is the asyncio protocol of one connection. Two of them are joined with
:func:`join`; from then on every chunk one receives is written to the other's transport in the
same callback (no task, no stream buffer, no await per chunk). Flow control follows the
transports': when a side's write buffer fills, the other side stops reading until it drains. An
end of file is passed on as a half close (the other direction keeps flowing); the connection is
closed once both directions ended or either side was lost (its queued bytes still flushed).

Bytes that arrive before the join (a request sent at once after connecting) wait in the
protocol and are written at the join. A :class:`Splice` may first read one header line
(:meth:`Splice.read_line`), as both ends of an overlay tunnel do, before it relays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Splice", "hand_over", "join", "register_listener", "serve_here", "serves_here",
           "unregister_listener"]


class Splice(asyncio.Protocol):
    """One connection of a spliced pair (see the module docstring)."""

    def __init__(self, count: Callable[[int], None] | None = None, *, line_limit: int = 0) -> None:
        """``count``: told the size of each chunk received once joined (metrics).
        ``line_limit``: read a header line first (:meth:`read_line`) of at most that many bytes."""
        self.transport: asyncio.Transport | None = None
        self.peer: Splice | None = None
        self.count = count
        self.line: asyncio.Future[bytes] | None = None
        self._line_limit = line_limit
        self._pending: list[bytes] = []
        self._eof = False
        self._lost = False
        self.on_lost: Callable[[Splice], None] | None = None

    # asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._line_limit:
            self.line = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.line is not None and not self.line.done():
            self._pending.append(data)
            buffered = b"".join(self._pending)
            head, newline, rest = buffered.partition(b"\n")
            if newline:
                self._pending = [rest] if rest else []
                self.line.set_result(head)
            elif len(buffered) > self._line_limit:
                self._pending = []
                self.line.set_exception(ValueError("header line too long"))
            return
        peer = self.peer
        if peer is None or peer.transport is None:
            self._pending.append(data)
            return
        if self.count is not None:
            self.count(len(data))
        peer.transport.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self.line is not None and not self.line.done():
            self.line.set_exception(ConnectionResetError("closed before its header"))
            return False
        peer = self.peer
        if peer is not None and peer.transport is not None:
            if peer._eof or not peer.transport.can_write_eof():
                self.close()
                peer.close()
                return False
            peer.transport.write_eof()
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.transport = None
        if self.line is not None and not self.line.done():
            self.line.set_exception(ConnectionResetError("closed before its header"))
        if self.peer is not None:
            self.peer.close()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # API -----------------------------------------------------------------------------------------
    async def read_line(self) -> bytes:
        """The header line (without its newline); bytes after it wait for the join.
        ValueError when longer than the limit, ConnectionResetError when closed before it."""
        assert self.line is not None, "made without line_limit"
        return await self.line

    def take_pending(self) -> list[bytes]:
        """The bytes received and not relayed yet (after the header line), handed over once."""
        pending, self._pending = self._pending, []
        return pending

    def write(self, data: bytes) -> None:
        """Write to this connection (a header line) unless it is gone."""
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close this connection once its queued bytes are written."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close this connection at once."""
        if self.transport is not None:
            self.transport.abort()

    @property
    def lost(self) -> bool:
        """Whether the connection was lost."""
        return self._lost


def join(a: Splice, b: Splice) -> None:
    """Relay ``a`` and ``b`` into each other from now on (bytes either received already first)."""
    a.peer, b.peer = b, a
    for side, other in ((a, b), (b, a)):
        if side.lost:
            other.close()
            return
    for side in (a, b):
        pending, side._pending = side._pending, []
        for data in pending:
            side.data_received(data)
        if side._eof:
            side.eof_received()


# Listeners of this process --------------------------------------------------------------------
_LISTENERS: dict[tuple[str, int], asyncio.Server] = {}


def register_listener(server: asyncio.Server) -> None:
    """``server`` (an emulated task's listener) serves in this process: a relayed connection to
    its address is handed to it directly (:func:`hand_over`) rather than dialled."""
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        _LISTENERS[(str(host), int(port))] = server


def unregister_listener(server: asyncio.Server) -> None:
    """``server`` is closed: dial its address again (refused)."""
    for key in [k for k, s in _LISTENERS.items() if s is server]:
        del _LISTENERS[key]


def serves_here(listener: tuple[str, int]) -> bool:
    """Whether a listener of this process serves at ``listener`` (:func:`hand_over` takes it)."""
    server = _LISTENERS.get((str(listener[0]), int(listener[1])))
    return server is not None and server.is_serving()


def serve_here(transport: asyncio.Transport, listener: tuple[str, int]) -> bool:
    """Give ``transport`` (an overlay tunnel's stream) to the listener of this process at
    ``listener``, as if it had accepted it. False when no such listener serves here."""
    server = _LISTENERS.get((str(listener[0]), int(listener[1])))
    if server is None or not server.is_serving():
        return False
    # asyncio.Server keeps the factory of its connections' protocols (start_server's
    # StreamReaderProtocol) in _protocol_factory, which its accept loop calls for each one.
    protocol: asyncio.Protocol = server._protocol_factory()  # type: ignore[attr-defined]
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return True


def hand_over(splice: Splice, listener: tuple[str, int], rx: Callable[[int], None] | None = None,
              tx: Callable[[int], None] | None = None) -> bool:
    """Give ``splice``'s connection to the listener of this process at ``listener``, as if it had
    accepted it, instead of dialling it and relaying (two sockets and a copy of every byte less).
    ``rx``/``tx`` count the bytes received and sent. False when no such listener serves here."""
    server = _LISTENERS.get((str(listener[0]), int(listener[1])))
    transport = splice.transport
    if server is None or not server.is_serving() or transport is None:
        return False
    # asyncio.Server keeps the factory of its connections' protocols (start_server's
    # StreamReaderProtocol) in _protocol_factory, which its accept loop calls for each one.
    protocol: asyncio.Protocol = server._protocol_factory()  # type: ignore[attr-defined]
    outer: asyncio.Transport = transport if tx is None else _CountingTransport(transport, tx)
    relay = _Counted(protocol, rx) if rx is not None else protocol
    transport.set_protocol(relay)
    protocol.connection_made(outer)
    for data in splice.take_pending():
        relay.data_received(data)
    if splice._eof:
        relay.eof_received()
    return True


class _Counted(asyncio.Protocol):
    """A protocol in front of another that counts the bytes received."""

    def __init__(self, inner: asyncio.Protocol, count: Callable[[int], None]) -> None:
        self.inner = inner
        self.count = count

    def data_received(self, data: bytes) -> None:
        self.count(len(data))
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _CountingTransport(asyncio.Transport):
    """A transport in front of another that counts the bytes written."""

    def __init__(self, inner: asyncio.Transport, count: Callable[[int], None]) -> None:
        super().__init__(inner.get_extra_info("extra"))
        self.inner = inner
        self.count = count

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.count(len(data))
        self.inner.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def can_write_eof(self) -> bool:
        return self.inner.can_write_eof()

    def write_eof(self) -> None:
        self.inner.write_eof()

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()
