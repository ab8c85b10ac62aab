"""Raft messages survive protobuf and back; malformed frames are refused."""

from __future__ import annotations

from typing import cast

import pytest
from swarmlet.v1 import raft_pb2

from manager.state.raft.codec import RaftCodec
from manager.state.raft.messages import Message, MessageType
from manager.state.raft.types import ConfState, Entry, EntryType, SnapshotMeta

CODEC = RaftCodec()


def _kind(value: int) -> raft_pb2.RaftMessageType:
    return cast(raft_pb2.RaftMessageType, value)  # raw wire values, unknown ones included

SAMPLES = [
    Message(MessageType.APPEND, "b", "a", term=4, log_term=3, index=9, commit=8,
            entries=(Entry(10, 4, EntryType.NORMAL, b"\x00\xffdata"),
                     Entry(11, 4, EntryType.CONF_CHANGE, b"{}"))),
    Message(MessageType.APPEND_RESP, "a", "b", term=4, index=9, reject=True, reject_hint=6, log_term=2),
    Message(MessageType.VOTE, "c", "a", term=5, index=11, log_term=4, context=b"transfer"),
    Message(MessageType.SNAPSHOT, "c", "a", term=5,
            snapshot=SnapshotMeta(100, 5, ConfState(("a", "b", "c"), ("d",))), snapshot_data=b"state"),
    Message(MessageType.HEARTBEAT_RESP, "a", "c", term=5, context=b"read-7"),
    Message(MessageType.TRANSFER_LEADER, "a", "c", target="c"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.type.name)
def test_round_trip(message: Message) -> None:
    assert CODEC.decode(CODEC.encode(message)) == message


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        raft_pb2.RaftMessage(type=_kind(99), to="a", sender="b").SerializeToString(),
        raft_pb2.RaftMessage(type=_kind(1), to="", sender="b").SerializeToString(),
        # a SNAPSHOT without its metadata
        raft_pb2.RaftMessage(type=_kind(9), to="a", sender="b").SerializeToString(),
        raft_pb2.RaftMessage(
            type=_kind(1), to="a", sender="b", index=3, entries=[raft_pb2.RaftEntry(index=7, term=1)]
        ).SerializeToString(),  # entries that do not follow index
    ],
)
def test_malformed_frames_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        CODEC.decode(data)
