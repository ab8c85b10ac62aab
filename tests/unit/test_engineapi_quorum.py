"""Quorum loss in Swarm's words: which manager says "node lost leader status" and which says
"The swarm does not have a leader" (five-nodes/x-multi.txt; swarmkit's raft.go)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from manager.engineapi.base import api_error
from manager.engineapi.writes import (
    LostLeadership,
    _error_record,
    _raise_record,
    propose_watching_leadership,
)
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, ProposalDropped
from manager.state.store import Op

LOST = "rpc error: code = Unknown desc = raft: failed to process the request: node lost leader status"


class FakeShell:
    def __init__(self, leader_id: str, me: str = "m1") -> None:
        self.leader_id = leader_id
        self.me = me

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.me


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
    proposed: list[Sequence[Op]] = []

    async def propose(ops: Sequence[Op]) -> Any:
        proposed.append(ops)

    async def run() -> None:
        with pytest.raises(LostLeadership):
            await propose_watching_leadership(propose, [], FakeShell(""), lambda: True)

    asyncio.run(run())
    assert proposed == []  # nothing reached the log


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
