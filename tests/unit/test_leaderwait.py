"""Waiting for a leader as swarmkit's LeaderConn does (manager/state/raft/leaderwait.py), and the
Engine API's writes that use it (manager/engineapi/writes.py LeaderWrites).

A write that found no leader is tried again once one is known, until its deadline; a manager
that has known no leader for several election timeouts refuses at once; a write that may have
been proposed is never tried twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from manager.engineapi.writes import LeaderWrites, LostLeadership, write_handler
from manager.state.raft.leaderwait import LOST_QUORUM_ELECTIONS, Unsent, lost_quorum, next_try, retry_unsent
from manager.state.raft.shell import NoLeaderError, NotLeaderError
from manager.state.store import Create, Op, Store, encode_batch, format_timestamp

WORKER = "w" * 25
ELECTION_S = 0.8


class FakeLeadership:
    """A Raft shell's view of the leader, as a test sets it; the clock is the real one."""

    def __init__(self, leader_id: str = "", leaderless: float = 0.0) -> None:
        self.leader_id = leader_id
        self._since = time.monotonic() - leaderless

    def lose(self, leaderless: float = 0.0) -> None:
        self.leader_id = ""
        self._since = time.monotonic() - leaderless

    def leaderless_seconds(self) -> float:
        return 0.0 if self.leader_id else time.monotonic() - self._since

    def election_seconds(self) -> float:
        return ELECTION_S


def _create() -> list[Op]:
    spec = {"Name": "", "Role": "worker", "Availability": "active", "Labels": {}}
    return [Create("node", WORKER, spec, {"State": "ready"}, {})]


@pytest.mark.parametrize(
    ("leaderless", "election", "lost"),
    [
        (0.0, 0.8, False),
        (0.5, 0.8, False),  # an election under way
        (LOST_QUORUM_ELECTIONS * 0.8, 0.8, False),  # the bound itself still waits
        (LOST_QUORUM_ELECTIONS * 0.8 + 0.01, 0.8, True),
        (60.0, 0.8, True),  # quorum long lost
        (3.0, 1.6, False),  # a slower time scale waits longer
    ],
)
def test_lost_quorum_after_several_election_timeouts(leaderless: float, election: float, lost: bool) -> None:
    assert lost_quorum(leaderless, election) is lost


def test_next_try_waits_for_a_leader_and_gives_up_as_swarm_does() -> None:
    async def run() -> None:
        shell = FakeLeadership()
        asyncio.get_running_loop().call_later(0.5, setattr, shell, "leader_id", "m2")
        start = time.monotonic()
        assert await next_try(shell, start + 5.0) is True
        assert 0.5 <= time.monotonic() - start < 1.5
        # Known leader (perhaps a stale one): one pause, then again.
        start = time.monotonic()
        assert await next_try(shell, start + 5.0, poll=0.05) is True
        assert time.monotonic() - start >= 0.05
        # Without a leader for long: at once.
        shell.lose(leaderless=60.0)
        start = time.monotonic()
        assert await next_try(shell, start + 5.0) is False
        assert time.monotonic() - start < 0.1
        # The deadline first.
        shell.lose()
        start = time.monotonic()
        assert await next_try(shell, start + 0.3) is False
        assert 0.3 <= time.monotonic() - start < 1.0
        # Nothing to wait on.
        assert await next_try(None, time.monotonic() + 5.0) is False

    asyncio.run(run())


def test_retry_unsent_tries_again_only_what_never_reached_a_leader() -> None:
    async def run() -> None:
        shell = FakeLeadership("m1")
        calls = itertools.count(1)

        async def twice_unsent() -> str:
            if next(calls) < 3:
                raise Unsent(NoLeaderError())
            return "done"

        assert await retry_unsent(twice_unsent, shell, time.monotonic() + 5.0) == "done"
        tries: list[int] = []

        async def indeterminate() -> str:
            tries.append(1)
            raise TimeoutError("context deadline exceeded")

        with pytest.raises(TimeoutError):
            await retry_unsent(indeterminate, shell, time.monotonic() + 5.0)
        assert tries == [1]

    asyncio.run(run())


# ---------------------------------------------------------------------- LeaderWrites


def test_a_write_succeeds_when_a_leader_appears_after_half_a_second() -> None:
    store = Store()
    index = itertools.count(1)
    shell = FakeLeadership()

    async def propose(ops: Sequence[Op]) -> None:
        if not shell.leader_id:
            raise NoLeaderError()  # as the shell says after waiting in vain
        store.apply(next(index), encode_batch(list(ops), now=format_timestamp(time.time())))

    async def run() -> float:
        asyncio.get_running_loop().call_later(0.5, setattr, shell, "leader_id", "m1")
        writes = LeaderWrites(propose, store, timeout=5.0, leadership=lambda: shell)
        start = time.monotonic()
        await writes.write(_create())
        return time.monotonic() - start

    took = asyncio.run(run())
    assert 0.5 <= took < 3.0
    assert store.get("node", WORKER).spec["Role"] == "worker"


def test_a_write_without_a_leader_for_long_gets_swarms_error_at_once() -> None:
    shell = FakeLeadership(leaderless=60.0)
    tries: list[int] = []

    async def propose(ops: Sequence[Op]) -> None:
        tries.append(1)
        raise NotLeaderError("", "")

    async def run() -> None:
        writes = LeaderWrites(propose, Store(), timeout=5.0, leadership=lambda: shell)
        start = time.monotonic()
        with pytest.raises(NoLeaderError):
            await writes.write(_create())
        assert time.monotonic() - start < 0.5
        # An election that never ends: refused once the bound is reached, before the deadline.
        shell.lose(leaderless=0.0)
        writes.timeout = 30.0
        start = time.monotonic()
        with pytest.raises(NoLeaderError):
            await writes.write(_create())
        took = time.monotonic() - start
        assert LOST_QUORUM_ELECTIONS * ELECTION_S <= took < LOST_QUORUM_ELECTIONS * ELECTION_S + 2.0

    asyncio.run(run())
    assert tries == [1, 1]  # no leader known meanwhile: nothing to try again with


def test_a_write_that_may_have_been_proposed_is_not_tried_again() -> None:
    shell = FakeLeadership("m1")
    for error in (TimeoutError("context deadline exceeded"), LostLeadership(),
                  ConnectionAbortedError("the manager stopped; the write may or may not apply")):
        tries: list[int] = []

        async def propose(ops: Sequence[Op], error: Exception = error, tries: list[int] = tries) -> None:
            tries.append(1)
            raise error

        async def run(propose: Any = propose) -> None:
            writes = LeaderWrites(propose, Store(), timeout=5.0, leadership=lambda: shell)
            await writes.write(_create())

        with pytest.raises(type(error)):
            asyncio.run(run())
        assert tries == [1], error


def test_a_forwarded_write_refused_by_a_former_leader_goes_to_the_new_one() -> None:
    """The follower forwards to the manager it believes leads; that one stepped down and refuses
    before proposing ("not proposed"); the follower learns of the new leader and writes there."""
    former, new, follower_store = Store(), Store(), Store()
    index = itertools.count(1)
    proposed_at_former: list[int] = []

    async def former_propose(ops: Sequence[Op]) -> None:
        proposed_at_former.append(1)
        raise NotLeaderError("", "")  # knows no leader: refuses, proposes nothing

    async def new_propose(ops: Sequence[Op]) -> None:
        data = encode_batch(list(ops), now=format_timestamp(time.time()))
        i = next(index)
        new.apply(i, data)
        follower_store.apply(i, data)

    async def main() -> None:
        servers, ports = [], []
        for propose, store in ((former_propose, former), (new_propose, new)):
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((write_handler(propose, store),))
            ports.append(server.add_insecure_port("127.0.0.1:0"))
            await server.start()
            servers.append(server)
        leader = {"addr": f"127.0.0.1:{ports[0]}"}
        shell = FakeLeadership("former")

        async def follower_propose(ops: Sequence[Op]) -> Any:
            raise NotLeaderError(shell.leader_id, leader["addr"])

        def new_leader() -> None:
            shell.leader_id, leader["addr"] = "new", f"127.0.0.1:{ports[1]}"

        asyncio.get_running_loop().call_later(0.5, new_leader)
        try:
            writes = LeaderWrites(follower_propose, follower_store, timeout=5.0, leadership=lambda: shell)
            await writes.write(_create())
        finally:
            for server in servers:
                await server.stop(0)

    asyncio.run(main())
    assert new.get("node", WORKER).spec["Role"] == "worker"
    assert former.find("node") == [] and proposed_at_former
