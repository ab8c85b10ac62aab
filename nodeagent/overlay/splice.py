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

__all__ = ["Splice", "join"]


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
