"""The Raft shell's loop in one process, with no peer that answers: what it does while it waits."""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import Callable

from manager.state.raft.config import ShellConfig
from manager.state.raft.messages import ConfChange, ConfChangeType
from manager.state.raft.promotion import HOLD_S
from manager.state.raft.shell import RaftShell


class _Log:
    """A state machine that keeps what it applied, in order."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, index: int, data: bytes) -> object:
        self.applied.append(data)
        return len(self.applied)

    def snapshot(self) -> bytes:
        return b"\n".join(self.applied)

    def restore(self, data: bytes, index: int) -> None:
        self.applied = data.split(b"\n") if data else []


def _silent_address() -> str:
    """An address on loopback where nothing listens: a learner that never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.01)


def test_a_write_held_for_a_learners_promotion_leaves_the_process_responsive(tmp_path: pathlib.Path) -> None:
    # A leader holds new writes back for up to HOLD_S while a learner it should promote catches
    # up. Before the fix the loop spun through the whole hold without yielding: the process
    # answered nothing for 0.5 s (not the learner's acks it was waiting for, not a heartbeat),
    # which on a busy machine cost the leader its term. The hold must be a wait, not a spin.
    async def scenario() -> tuple[float, float, object, list[bytes], tuple[str, ...]]:
        state = _Log()
        shell = RaftShell("a", _silent_address(), tmp_path, state, bootstrap=True,
                          config=ShellConfig(fsync=False), peers={"b": _silent_address()})
        await shell.start()
        try:
            await _until(lambda: shell.is_leader and shell.applied >= shell.node.log.last_index())
            shell.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "b"))
            await _until(lambda: "b" in shell.node.conf.learners and shell.applied >= shell.node.commit)
            shell.promote("b")  # b never answers, so its log never catches up

            loop = asyncio.get_running_loop()
            gaps: list[float] = []

            async def heartbeat_of_the_process() -> None:
                last = loop.time()
                while True:
                    await asyncio.sleep(0.005)
                    now = loop.time()
                    gaps.append(now - last)
                    last = now

            watcher = asyncio.create_task(heartbeat_of_the_process())
            began = loop.time()
            result = await shell.propose(b"written during the hold", timeout=5)
            took = loop.time() - began
            await asyncio.sleep(0.05)
            watcher.cancel()
            return max(gaps), took, result, state.applied, shell.node.conf.learners
        finally:
            await shell.stop()

    longest_gap, took, result, applied, learners = asyncio.run(scenario())
    assert longest_gap < 0.15, f"the event loop stood still for {longest_gap:.3f} s"
    # The write waited for the hold and then went in; the learner stayed a learner.
    assert HOLD_S - 0.1 <= took < HOLD_S + 1.0
    assert applied[-1] == b"written during the hold" and result == len(applied)
    assert learners == ("b",)
