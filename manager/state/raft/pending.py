"""Callers waiting on the log: proposals not yet placed, entries not yet applied, reads not yet
confirmed. The shell's loop moves them along; this module only keeps the books.

A proposal's caller is answered once its entry is committed and applied; the answer is the state
machine's result. An entry that a new leader replaced at the same index fails its caller with
:class:`ProposalDropped` (it was not applied); a change of leader fails what was not yet placed
with :class:`NotLeaderError`, so the caller can retry at the new leader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from manager.state.raft.core import NotLeader, RaftNode
from manager.state.raft.errors import NoLeaderError, NotLeaderError, ProposalDropped
from manager.state.raft.types import Entry

__all__ = ["PendingRequests"]


@dataclass
class _Waiter:
    term: int
    future: asyncio.Future[object]
    started: float


@dataclass
class _Proposal:
    data: bytes
    future: asyncio.Future[tuple[int, int]]  # resolves to (index, term) once in the log


class PendingRequests:
    """Every caller of one shell that waits on its log."""

    def __init__(self) -> None:
        self._proposals: list[_Proposal] = []
        self._waiters: dict[int, _Waiter] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def has_proposals(self) -> bool:
        """Whether proposals wait to be placed in the log."""
        return bool(self._proposals)

    # Proposals --------------------------------------------------------------------------------
    def propose(self, data: bytes) -> asyncio.Future[tuple[int, int]]:
        """Queue ``data``; the future gives (index, term) once the loop placed it in the log."""
        placed: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._proposals.append(_Proposal(data, placed))
        return placed

    def result_of(self, index: int) -> asyncio.Future[object]:
        """The state machine's result for the entry placed at ``index``."""
        return self._waiters[index].future

    def place(self, node: RaftNode, address_of: Callable[[str], str]) -> None:
        """Hand every queued proposal to the core; a follower's fail with the leader's address."""
        proposals, self._proposals = self._proposals, []
        loop = asyncio.get_running_loop()
        for p in proposals:
            if p.future.done():
                continue
            try:
                index = node.propose(p.data)
            except NotLeader as exc:
                leader = exc.leader or ""
                if leader:
                    p.future.set_exception(NotLeaderError(leader, address_of(leader)))
                else:
                    p.future.set_exception(NoLeaderError())
                continue
            term = node.term
            self._waiters[index] = _Waiter(term, loop.create_future(), time.monotonic())
            p.future.set_result((index, term))

    def applied(self, entry: Entry, result: object, error: BaseException | None) -> None:
        """``entry`` was applied with ``result`` (or failed with ``error``): answer its proposer."""
        waiter = self._waiters.pop(entry.index, None)
        if waiter is None or waiter.future.done():
            return
        if waiter.term != entry.term:
            waiter.future.set_exception(ProposalDropped("the entry was replaced by a new leader's"))
        elif error is not None:
            waiter.future.set_exception(error)
        else:
            waiter.future.set_result(result)

    # Reads ------------------------------------------------------------------------------------
    def read(self, ctx: bytes) -> asyncio.Future[int]:
        """A ReadIndex request under ``ctx``; the future gives the index to wait for."""
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = got
        return got

    def forget_read(self, ctx: bytes) -> None:
        """The caller of read ``ctx`` stopped waiting."""
        self._reads.pop(ctx, None)

    def read_confirmed(self, ctx: bytes, index: int) -> None:
        """The core confirmed read ``ctx`` at ``index`` (a ReadState)."""
        fut = self._reads.get(ctx)
        if fut is not None and not fut.done():
            fut.set_result(index)

    def until_applied(self, index: int) -> asyncio.Future[None]:
        """A future that completes once ``index`` is applied (see :meth:`release_reads`)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append((index, done))
        return done

    def release_reads(self, applied: int) -> None:
        """Everything up to ``applied`` is applied: wake the reads that waited for it."""
        if not self._read_waiters:
            return
        still = []
        for index, fut in self._read_waiters:
            if applied >= index:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((index, fut))
        self._read_waiters = still

    # Failures ---------------------------------------------------------------------------------
    def leader_changed(self, leader: str, address: str) -> None:
        """Another manager leads now: what waits to be placed or confirmed must go there.

        Entries this node placed as leader may still commit under the new leader; their waiters
        stay, and a different term at their index fails them.
        """
        error = NotLeaderError(leader, address)
        for p in self._proposals:
            if not p.future.done():
                p.future.set_exception(error)
        self._proposals = []
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(error)

    def fail_all(self, exc: Exception) -> None:
        """Fail every caller with ``exc`` (the shell stops, or its storage failed)."""
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(exc)
        self._waiters.clear()
        for p in self._proposals:
            if not p.future.done():
                p.future.set_exception(exc)
        self._proposals = []
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        for _, waiting in self._read_waiters:
            if not waiting.done():
                waiting.set_exception(exc)
        self._read_waiters = []
