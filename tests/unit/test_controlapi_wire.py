"""Pieces around the control plane that need no cluster: Raft stream framing and the agent's join.

The framing puts many Raft messages in one gRPC write; a frame cut short must be refused rather
than half-delivered. An agent without a join token must stop with Swarm's message before it
asks any manager.
"""

from __future__ import annotations

import asyncio
import pathlib
import random
from types import SimpleNamespace

import pytest

from manager.state.raft.codec import RaftCodec
from manager.state.raft.messages import Message, MessageType
from manager.state.raft.shell import pack_frame, unpack_frame
from manager.state.raft.types import Entry
from nodeagent.agent.session import AgentSession, JoinRefused


def test_frames_carry_many_messages_and_survive_the_codec() -> None:
    rng = random.Random(7)
    codec = RaftCodec()
    messages = [
        Message(
            MessageType.APPEND,
            to="b",
            sender="a",
            term=3,
            index=i,
            log_term=3,
            entries=tuple(Entry(i + 1 + k, 3, data=rng.randbytes(rng.randrange(0, 300))) for k in range(2)),
            commit=i,
        )
        for i in range(1, 40)
    ]
    frame = pack_frame([codec.encode(m) for m in messages])
    assert [codec.decode(part) for part in unpack_frame(frame)] == messages


def test_lengths_above_one_varint_byte_and_empty_messages() -> None:
    parts = [b"", b"x" * 127, b"y" * 128, b"z" * 70_000]
    assert unpack_frame(pack_frame(parts)) == parts


@pytest.mark.parametrize("cut", [1, 2, 100, 70_002])
def test_a_frame_cut_short_is_refused_whole(cut: int) -> None:
    frame = pack_frame([b"a" * 50, b"b" * 70_000])
    with pytest.raises(ValueError):
        unpack_frame(frame[: len(frame) - cut])


def test_agent_without_a_token_is_refused_before_asking_anyone(tmp_path: pathlib.Path) -> None:
    asked: list[str] = []

    def managers() -> list[str]:
        asked.append("called")
        return ["127.0.0.1:1"]

    options = SimpleNamespace(
        role="worker",
        data_dir=str(tmp_path),
        token_file=None,
        manager_token_file=None,
        advertise_addr="127.0.0.1",
        cluster_port=2377,
        time_scale=1.0,
    )
    context = SimpleNamespace(options=options, node_id="n" * 25, hostname="worker9")
    session = AgentSession(context, managers)
    with pytest.raises(JoinRefused) as err:
        asyncio.run(session.join())
    assert str(err.value) == "A valid join token is necessary to join this cluster"
    assert asked == []
    assert not (tmp_path / "session.json").exists()
