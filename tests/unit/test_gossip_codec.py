"""The gossip codec: every message survives the wire; bad bytes are refused with ValueError."""

from __future__ import annotations

import pytest
from swarmlet.v1 import gossip_pb2 as pb

from nodeagent.gossip.codec import MAX_MESSAGE_BYTES, MAX_NAME_CHARS, GossipCodec
from nodeagent.gossip.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
    UserMsg,
    WireState,
)

META = NodeMeta("id-7", "manager", "10.0.0.7:2377", (("rack", "r1"), ("zone", "")), "0.1.0")

MESSAGES: list[Message] = [
    Ping(1, "node-2", "node-1"),
    Ping(2**64 - 1, "node-2", "node-1"),
    IndirectPing(5, "node-3", "node-3:7946", "node-1"),
    Ack(9),
    Nack(10),
    Alive(3, "node-7", "node-7:7946", META),
    Alive(0, "n", "n:1", NodeMeta("", "", "")),
    Suspect(4, "node-2", "node-5"),
    Dead(4, "node-2", "node-2"),
    UserMsg("node-1", 12, "netdb/endpoints", bytes(range(256))),
    PushPull(
        "node-1",
        tuple(PushPullEntry(f"n{i}", f"n{i}:7946", META, i, WireState(i % 4)) for i in range(8)),
        join=True,
        reply=False,
    ),
    PushPull("node-1", (), join=False, reply=True),
    Compound(
        (Ping(1, "b", "a"), Alive(1, "a", "a:1", META), Suspect(0, "c", "a"), UserMsg("a", 1, "t", b""))
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    codec = GossipCodec()
    assert codec.decode(codec.encode(message)) == message


def _raw(**body: object) -> bytes:
    return pb.GossipMessage(**body).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff", "malformed"),
        (b"", "empty body"),
        (_raw(ping=pb.SwimPing(seq=1, target="", source="a")), "ping target is empty"),
        (_raw(suspect=pb.SwimSuspect(incarnation=1, node="x" * (MAX_NAME_CHARS + 1), source="a")), "longer"),
        (_raw(compound=pb.SwimCompound()), "compound"),
        (_raw(compound=pb.SwimCompound(parts=[pb.GossipMessage(compound=pb.SwimCompound(
            parts=[pb.GossipMessage(ack=pb.SwimAck(seq=1))]))])), "compound inside"),
        (_raw(push_pull=pb.SwimPushPull(source="a", entries=[pb.SwimPushPullEntry(
            name="b", address="b:1", state=9)])), "unknown member state"),  # type: ignore[arg-type]
        (b"\x0a" + b"\xff" * 20, "malformed"),
    ],
)
def test_bad_input_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        GossipCodec().decode(data)


def test_oversized_input_is_refused_before_parsing() -> None:
    codec = GossipCodec()
    with pytest.raises(ValueError, match="limit"):
        codec.decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))


def test_oversized_message_is_not_encoded_but_a_stream_codec_takes_it() -> None:
    big = PushPull("a", tuple(PushPullEntry(f"node-{i}", f"node-{i}:7946", META, i, WireState.ALIVE)
                              for i in range(2000)), join=False, reply=False)
    with pytest.raises(ValueError, match="limit"):
        GossipCodec().encode(big)
    stream = GossipCodec(max_bytes=4 * 1024 * 1024)
    assert stream.decode(stream.encode(big)) == big


def test_only_gossip_messages_are_encoded() -> None:
    with pytest.raises(ValueError, match="not a gossip message"):
        GossipCodec().encode("hello")  # type: ignore[arg-type]
