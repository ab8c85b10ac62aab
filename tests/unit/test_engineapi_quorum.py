"""Quorum loss in Swarm's words: which manager says "node lost leader status" and which says
"The swarm does not have a leader" (five-nodes/x-multi.txt; swarmkit's raft.go)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from manager.engineapi.base import api_error
from manager.engineapi.writes import (
    LeaderWrites,
    LostLeadership,
    _error_record,
    _raise_record,
    propose_watching_leadership,
)
from manager.state.raft.leaderwait import Unsent
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError, ProposalDropped
from manager.state.store import Op, Store

LOST = "rpc error: code = Unknown desc = raft: failed to process the request: node lost leader status"


class FakeShell:
    def __init__(self, leader_id: str, me: str = "m1", leaderless: float = 60.0) -> None:
        self.leader_id = leader_id
        self.me = me
        self.leaderless = leaderless

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.me

    def leaderless_seconds(self) -> float:
        return 0.0 if self.leader_id else self.leaderless

    def election_seconds(self) -> float:
        return 0.8


def test_words_and_status_codes_are_swarms() -> None:
    lost = api_error(LostLeadership())
    assert lost is not None and (lost.status, lost.message) == (500, LOST)
    dropped = api_error(ProposalDropped("replaced"))
    assert dropped is not None and (dropped.status, dropped.message) == (500, LOST)
    none = api_error(NoLeaderError())
    assert none is not None
    assert (none.status, none.message) == (500, f"rpc error: code = Unknown desc = {NO_LEADER_MESSAGE}")


def test_lost_leadership_travels_by_name_from_leader_to_follower() -> None:
    with pytest.raises(LostLeadership):
        _raise_record(_error_record(LostLeadership()))
    with pytest.raises(LostLeadership):  # swarmkit's answer when a new leader replaced the entry
        _raise_record(_error_record(ProposalDropped("replaced")))


def test_former_leader_without_a_leader_refuses_at_once() -> None:
    """No leader for long, and the store still names this manager Leader: "node lost leader
    status" at once, nothing proposed."""
    proposed: list[Sequence[Op]] = []
    shell = FakeShell("")

    async def propose(ops: Sequence[Op]) -> Any:
        proposed.append(ops)

    async def watched(ops: Sequence[Op]) -> Any:
        return await propose_watching_leadership(propose, ops, shell, lambda: True)

    async def run() -> float:
        with pytest.raises(Unsent) as unsent:
            await watched([])
        assert isinstance(unsent.value.answer, LostLeadership)
        start = time.monotonic()
        with pytest.raises(LostLeadership):
            await LeaderWrites(watched, Store(), leadership=lambda: shell).write([])
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.5
    assert proposed == []  # nothing reached the log


def test_former_leader_in_an_election_it_wins_again_writes() -> None:
    """A leader that stepped down for a moment (a loaded machine: heartbeats late, a follower
    campaigned) waits for the election instead of answering "node lost leader status"."""
    proposed: list[Sequence[Op]] = []
    shell = FakeShell("", leaderless=0.1)

    async def propose(ops: Sequence[Op]) -> Any:
        proposed.append(ops)

    async def watched(ops: Sequence[Op]) -> Any:
        return await propose_watching_leadership(propose, ops, shell, lambda: True)

    async def run() -> float:
        asyncio.get_running_loop().call_later(0.5, setattr, shell, "leader_id", "m1")
        start = time.monotonic()
        await LeaderWrites(watched, Store(), leadership=lambda: shell).write([])
        return time.monotonic() - start

    assert 0.5 <= asyncio.run(run()) < 3.0
    assert proposed == [[]]


def test_a_former_leaders_refusal_before_proposing_reaches_the_follower_as_not_proposed() -> None:
    with pytest.raises(Unsent):
        _raise_record(_error_record(Unsent(LostLeadership())))
    with pytest.raises(Unsent):
        _raise_record(_error_record(NotLeaderError("", "")))


def test_follower_without_a_leader_asks_raft() -> None:
    async def propose(ops: Sequence[Op]) -> Any:
        raise NoLeaderError()

    async def run() -> None:
        with pytest.raises(NoLeaderError):
            await propose_watching_leadership(propose, [], FakeShell(""), lambda: False)

    asyncio.run(run())


def test_leader_stepping_down_mid_write_answers_at_once() -> None:
    shell = FakeShell("m1")

    async def propose(ops: Sequence[Op]) -> Any:
        await asyncio.sleep(30)  # never commits: no quorum

    async def step_down() -> None:
        await asyncio.sleep(0.05)
        shell.leader_id = ""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        stepping = asyncio.ensure_future(step_down())
        with pytest.raises(LostLeadership):
            await propose_watching_leadership(propose, [], shell, lambda: True, poll=0.01)
        await stepping
        return loop.time() - start

    assert asyncio.run(run()) < 5.0


def test_leader_with_quorum_commits() -> None:
    async def propose(ops: Sequence[Op]) -> Any:
        await asyncio.sleep(0.03)
        return "applied"

    async def run() -> Any:
        return await propose_watching_leadership(propose, [], FakeShell("m1"), lambda: True, poll=0.01)

    assert asyncio.run(run()) == "applied"
