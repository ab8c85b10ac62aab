"""Waiting for a leader before refusing a request, as swarmkit's ``Node.LeaderConn`` does.

A manager that momentarily knows no leader does not refuse a write at once in Swarm: elections
take a moment, and a follower that missed a few heartbeats (a loaded machine) campaigns and
knows no leader until the vote is over. swarmkit's ``LeaderConn`` (manager/state/raft/raft.go)
polls for a leader once a second until the request's context ends, unless the node has been
without a leader for more than ``lostQuorumTimeout`` ticks (one election timeout there): then the
quorum is taken as lost and "The swarm does not have a leader..." comes back at once.

Every write path does the same here: the Engine API's writes (manager/engineapi/writes.py) and
the control API (manager/controlapi/server.py). An attempt that *surely never reached a leader*
raises :class:`Unsent`: no leader known, a leader known by id but not by address, a channel
to it that never became ready or refused the connection, or a leader that answered "not the
leader" before proposing. :func:`retry_unsent` then waits (:func:`next_try`) and tries again,
until the request's deadline, or at once gives up when the manager has known no leader for
:data:`LOST_QUORUM_ELECTIONS` election timeouts. A write that may have been proposed (a timeout,
a manager stopping mid-write, a leader that lost its quorum) is never retried: its answer
stays Swarm's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

__all__ = [
    "LOST_QUORUM_ELECTIONS",
    "POLL_S",
    "Leadership",
    "Unsent",
    "lost_quorum",
    "next_try",
    "retry_unsent",
]

T = TypeVar("T")

LOST_QUORUM_ELECTIONS = 4
"""Longest election timeouts without a leader after which the quorum is taken as lost and a
request is refused at once (swarmkit: lostQuorumTimeout, 10 ticks). Long enough for a split vote
or two on a loaded machine, short enough that a follower left alone answers within seconds."""

POLL_S = 0.05
"""Seconds between two looks for a leader (swarmkit looks once a second; elections here take a
fraction of one)."""


class Leadership(Protocol):
    """What the wait needs of the Raft shell (:class:`manager.state.raft.shell.RaftShell`)."""

    @property
    def leader_id(self) -> str:
        """The leader known now, "" when none."""
        ...

    def leaderless_seconds(self) -> float:
        """How long no leader has been known; 0.0 while one is."""
        ...

    def election_seconds(self) -> float:
        """The longest election timeout, in seconds."""
        ...


class Unsent(Exception):
    """An attempt that surely never reached a leader; ``answer`` is raised if no retry follows."""

    def __init__(self, answer: BaseException) -> None:
        super().__init__(str(answer))
        self.answer = answer


def lost_quorum(leaderless_s: float, election_s: float) -> bool:
    """Whether a manager without a leader for ``leaderless_s`` seconds should stop waiting for
    one, elections lasting at most ``election_s`` seconds each."""
    return leaderless_s > LOST_QUORUM_ELECTIONS * election_s


async def next_try(leadership: Leadership | None, deadline: float, poll: float = POLL_S) -> bool:
    """Wait until a request that never reached a leader may be tried again; False to give up.

    True once a leader is known (at least ``poll`` seconds after the call, so that a follower
    whose view of the leader is stale does not spin). False when ``deadline`` (time.monotonic())
    comes first, when no leader has been known for :data:`LOST_QUORUM_ELECTIONS` election
    timeouts, or without a shell to ask.
    """
    if leadership is None:
        return False
    while True:
        now = time.monotonic()
        if now >= deadline:
            return False
        if not leadership.leader_id and lost_quorum(leadership.leaderless_seconds(),
                                                    leadership.election_seconds()):
            return False
        await asyncio.sleep(min(poll, deadline - now))
        if leadership.leader_id and time.monotonic() < deadline:
            return True


async def retry_unsent(attempt: Callable[[], Awaitable[T]], leadership: Leadership | None,
                       deadline: float, poll: float = POLL_S) -> T:
    """``await attempt()``, again after each :class:`Unsent` while :func:`next_try` allows;
    then raise the last attempt's ``answer``. Any other exception ends it at once."""
    while True:
        try:
            return await attempt()
        except Unsent as unsent:
            if not await next_try(leadership, deadline, poll):
                raise unsent.answer from None
