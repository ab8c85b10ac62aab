"""The real gossip transport on 127.0.0.1: both halves, bad input from the network, link faults.

These bind loopback sockets on free ports (the transport is a shell; its tests need a socket).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nodeagent.transport.faults import LinkFaultRule, LinkFaults
from nodeagent.transport.grpc_transport import GrpcTransport


class JsonCodec:
    """A stand-in for the gossip codec: any JSON value, rejecting what does not parse."""

    def encode(self, message: Any) -> bytes:
        return json.dumps(message).encode()

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(str(exc)) from None


class Recorder:
    """Observer + handler: what came in, what went out, what was dropped and why."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any, bool]] = []
        self.dropped_reasons: Counter[str] = Counter()
        self.out: Counter[str] = Counter()
        self.bytes_in = 0

    def handler(self, sender: str, message: Any, reliable: bool) -> None:
        self.received.append((sender, message, reliable))

    def message_in(self, kind: str, size: int) -> None:
        self.bytes_in += size

    def message_out(self, kind: str, size: int) -> None:
        self.out[kind] += 1

    def dropped(self, reason: str) -> None:
        self.dropped_reasons[reason] += 1


def make(rec: Recorder, faults: LinkFaults | None = None, **kw: Any) -> GrpcTransport:
    t = GrpcTransport(listen_host="127.0.0.1", port=0, advertise_host="127.0.0.1", codec=JsonCodec(),
                      faults=faults, observer=rec, **kw)
    t.set_handler(rec.handler)
    return t


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


def test_packets_and_streams_arrive_with_the_senders_address() -> None:
    async def body() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = make(ra), make(rb)
        await a.start()
        await b.start()
        try:
            a.send_packet(b.address, {"ping": 1})
            a.send_stream(b.address, {"push": [1, 2, 3]})
            await until(lambda: len(rb.received) == 2)
            assert sorted(rb.received, key=lambda r: r[2]) == [
                (a.address, {"ping": 1}, False),
                (a.address, {"push": [1, 2, 3]}, True),
            ]
            assert rb.bytes_in > 0 and ra.out == Counter({"packet": 1, "stream": 1})
        finally:
            await a.stop()
            await b.stop()

    run(body)


def test_a_stream_delivers_in_order() -> None:
    async def body() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = make(ra), make(rb)
        await a.start()
        await b.start()
        try:
            for i in range(300):
                a.send_stream(b.address, i)
            await until(lambda: len(rb.received) == 300)
            assert [m for _, m, _ in rb.received] == list(range(300))
        finally:
            await a.stop()
            await b.stop()

    run(body)


def test_garbage_and_oversized_datagrams_are_counted_and_dropped() -> None:
    async def body() -> None:
        ra, rb = Recorder(), Recorder()
        a = make(ra)
        b = make(rb, max_datagram_bytes=2000)
        await a.start()
        await b.start()
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            target = ("127.0.0.1", b.port)
            raw.sendto(b"\xff\xfe not a protobuf", target)  # not an Envelope
            # A valid Envelope (field 1 sender, field 2 payload) whose payload the codec rejects.
            raw.sendto(b"\x0a\x0b127.0.0.1:1\x12\x03{{{", target)
            raw.sendto(b"\x0a\x03bad\x12\x02{}", target)  # a sender that is not host:port
            raw.sendto(b"x" * 3000, target)  # over this transport's limit
            await until(lambda: sum(rb.dropped_reasons.values()) == 4)
            assert rb.dropped_reasons == Counter({"malformed": 3, "oversized": 1})
            # The receive path still works afterwards.
            a.send_packet(b.address, "still here")
            await until(lambda: rb.received == [(a.address, "still here", False)])
        finally:
            raw.close()
            await a.stop()
            await b.stop()

    run(body)


def test_an_unencodable_or_too_big_message_is_not_sent() -> None:
    async def body() -> None:
        ra, rb = Recorder(), Recorder()
        a = make(ra, max_datagram_bytes=100)
        b = make(rb)
        await a.start()
        await b.start()
        try:
            a.send_packet(b.address, "y" * 500)
            assert ra.dropped_reasons == Counter({"oversized": 1})
            a.send_packet(b.address, "small")
            await until(lambda: len(rb.received) == 1)
        finally:
            await a.stop()
            await b.stop()

    run(body)


def test_partition_blocks_both_directions_until_healed() -> None:
    async def body() -> None:
        faults = LinkFaults()
        ra, rb = Recorder(), Recorder()
        a, b = make(ra, faults=faults), make(rb)
        await a.start()
        await b.start()
        try:
            faults.set_rules([LinkFaultRule(peers=(b.address,), partition=True)])
            a.send_packet(b.address, "out")
            a.send_stream(b.address, "out-stream")
            b.send_packet(a.address, "in")
            await until(lambda: ra.dropped_reasons["fault"] == 3)
            await asyncio.sleep(0.1)
            assert rb.received == [] and ra.received == []
            assert faults.counts["partition"] == 3
            faults.set_rules([])
            a.send_packet(b.address, "healed")
            b.send_packet(a.address, "healed")
            await until(lambda: len(ra.received) == 1 and len(rb.received) == 1)
        finally:
            await a.stop()
            await b.stop()

    run(body)


def test_a_rule_naming_a_bare_host_matches_every_port_on_it() -> None:
    rule = LinkFaultRule(peers=("127.0.0.3",), partition=True)
    assert rule.matches("127.0.0.3:7946") and not rule.matches("127.0.0.4:7946")
    assert LinkFaultRule().matches("anything:1")


def test_drop_and_duplicate_act_on_datagrams() -> None:
    async def body() -> None:
        faults = LinkFaults()
        ra, rb = Recorder(), Recorder()
        a, b = make(ra, faults=faults), make(rb)
        await a.start()
        await b.start()
        try:
            faults.set_rules([LinkFaultRule(drop=1.0)])
            for i in range(20):
                a.send_packet(b.address, i)
            assert ra.dropped_reasons["fault"] == 20
            faults.set_rules([LinkFaultRule(duplicate=1.0, delay=0.05)])
            a.send_packet(b.address, "twice")
            await until(lambda: len(rb.received) == 2)
            assert [m for _, m, _ in rb.received] == ["twice", "twice"]
        finally:
            await a.stop()
            await b.stop()

    run(body)


def test_a_stream_to_a_dead_peer_is_dropped_without_harm() -> None:
    async def body() -> None:
        ra = Recorder()
        a = make(ra)
        await a.start()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
        probe.close()  # nothing listens there now
        try:
            for i in range(3):
                a.send_stream(dead, i)
            await until(lambda: ra.dropped_reasons["unreachable"] == 3)
            assert dead not in a._streams
        finally:
            await a.stop()

    run(body)


@pytest.mark.parametrize("bad", [{"drop": 1.5}, {"duplicate": -0.1}, {"delay": -1.0}, {"peers": ("",)}])
def test_invalid_fault_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LinkFaultRule(**bad)


def test_packets_to_a_host_name_are_resolved_and_delivered() -> None:
    async def body() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = make(ra), make(rb)
        await a.start()
        await b.start()
        try:
            a.send_packet(f"localhost:{b.port}", "by name")
            a.send_packet(f"localhost:{b.port}", "again")
            await until(lambda: len(rb.received) == 2)
            assert sorted(m for _, m, _ in rb.received) == ["again", "by name"]
        finally:
            await a.stop()
            await b.stop()

    run(body)
