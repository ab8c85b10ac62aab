"""The overlay's tunnel connections alone (nodeagent/overlay/tunnel.py), on loopback.

Streams multiplexed on one connection: the tag survives the wire, bytes and half closes go both
ways per stream, a refusal reaches the opener, garbage drops the connection, and a far end that
never answers (a node killed) is given up after the answer timeout, its streams told.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from nodeagent.overlay.splice import Splice
from nodeagent.overlay.tunnel import PREFACE, Connection, OpenRequest, Stream

pytestmark = pytest.mark.unit


class _Echo(asyncio.Protocol):
    """The accepting side's protocol on a stream: echoes, upper-cased, and ends at EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())

    def eof_received(self) -> bool:
        self.transport.write(b"!")
        self.transport.close()
        return True


def test_the_tag_survives_the_wire_and_refuses_garbage() -> None:
    request = OpenRequest(4097, "10.0.1.3", 80, "10.0.1.4", 40000)
    assert len(request.encode()) == 16
    assert OpenRequest.decode(request.encode()) == request
    with pytest.raises(ValueError):
        OpenRequest.decode(b"short")


def test_streams_share_one_connection_each_with_its_bytes_half_closes_and_refusals() -> None:
    async def main() -> None:
        opened: list[OpenRequest] = []

        def on_open(conn: Connection, sid: int, request: OpenRequest) -> None:
            opened.append(request)
            if request.dport != 80:
                conn.answer(sid, "Connection refused")
                return
            stream = conn.accept(sid, request)
            protocol = _Echo()
            stream.set_protocol(protocol)
            protocol.connection_made(stream)
            conn.answer(sid)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(on_open), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, dialer = await loop.create_connection(Connection, "127.0.0.1", port)
        await dialer.ready
        answers: list[bytes] = []
        splices = []
        for i in range(3):
            splice = Splice()
            stream = dialer.open(OpenRequest(4097, "10.0.1.3", 80, "10.0.1.4", i), splice)
            splice.connection_made(stream)
            splices.append(splice)
        for i, splice in enumerate(splices):  # first bytes before any answer: pipelined
            assert splice.transport is not None
            splice.transport.write(f"hello {i}".encode())
            splice.transport.write_eof()
        for splice in splices:
            got = b""
            for _ in range(100):
                await asyncio.sleep(0.02)
                got = b"".join(splice.take_pending())
                if got.endswith(b"!"):
                    break
            answers.append(got)
        assert answers == [b"HELLO 0!", b"HELLO 1!", b"HELLO 2!"]
        assert [r.sport for r in opened] == [0, 1, 2] and {r.vni for r in opened} == {4097}
        refused: list[str] = []
        stream = dialer.open(OpenRequest(4097, "10.0.1.3", 81, "10.0.1.4", 9), Splice())
        stream.on_refused = lambda _s, reason: refused.append(reason) or False
        for _ in range(100):
            if refused:
                break
            await asyncio.sleep(0.02)
        assert refused == ["Connection refused"] and stream.is_closing()
        assert not dialer.lost  # every stream on the one connection
        server.close()
        dialer.close()

    asyncio.run(main())


def test_a_peer_that_does_not_speak_the_protocol_is_dropped() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(lambda *_: None), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE + bytes([99]) + bytes(8))  # no such frame kind
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        server.close()

    asyncio.run(main())


def test_a_far_end_that_never_answers_is_given_up_and_its_streams_told() -> None:
    async def main() -> None:
        with socket.socket() as hole:  # accepts (the kernel does) but never answers: a node killed
            hole.bind(("127.0.0.1", 0))
            hole.listen()
            loop = asyncio.get_running_loop()
            _, dialer = await loop.create_connection(lambda: Connection(answer_timeout=0.3),
                                                     *hole.getsockname())  # fmt: skip
            told: list[str] = []

            def refused(_stream: Stream, reason: str) -> bool:
                told.append(reason)
                return True  # moved elsewhere: not ended as lost

            stream = dialer.open(OpenRequest(4096, "10.0.0.5", 80, "0.0.0.0", 0), Splice())
            stream.on_refused = refused
            for _ in range(150):
                if dialer.lost and told:
                    break
                await asyncio.sleep(0.02)
            assert told == ["tunnel lost"] and dialer.lost

    asyncio.run(main())
