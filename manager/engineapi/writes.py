"""How every Engine API write reaches the leader: one path for all of them.

A handler builds store operations (``Update("node", id, version, spec=...)``) and calls
:meth:`LeaderWrites.write`. On the leader that is the runtime's ``write(ops)`` (propose, commit,
apply). On a follower the shell refuses with ``NotLeaderError(leader_addr)``, as it does for the
control API; the follower then sends the same operations to the leader over the cluster port
(2377), where :func:`write_handler` serves ``/swarmlet.v1.EngineApiWrites/Write``, and relays
the leader's answer. The leader never forwards again. Errors travel by name and come back as the
same exceptions (``UpdateOutOfSequence``, ``NotFound``, ``NoLeaderError``...), so one mapping
(:func:`manager.engineapi.errors.api_error`) turns them into Docker's answers wherever the write
ran.

A write that surely never reached a leader (no leader known, the leader's port refusing the
connection, a leader that answered "not the leader" before proposing) is tried again once a
leader is known, until the write's timeout, as swarmkit's LeaderConn waits for one; only a
manager that has known no leader for several election timeouts refuses at once
(:mod:`manager.state.raft.leaderwait`). A write that may have been proposed is never retried.

Once a forwarded write is acknowledged, the follower waits (up to one election timeout) until
its own store has applied the leader's index, so a read the client makes next on the same node
sees its write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from manager.state.raft.leaderwait import Leadership, Unsent, retry_unsent
from manager.state.raft.shell import NoLeaderError, NotLeaderError, ProposalDropped
from manager.state.store import (
    Ambiguous,
    InUse,
    InvalidObject,
    NameConflict,
    NotFound,
    Op,
    StoreError,
    UpdateOutOfSequence,
    decode_batch,
    encode_batch,
    format_timestamp,
)
from nodeagent import tls
from nodeagent.transport.planes import FaultGate, LinkPartitioned

__all__ = [
    "LOST_LEADERSHIP_MESSAGE",
    "WRITE_METHOD",
    "LeaderWrites",
    "LostLeadership",
    "Propose",
    "propose_watching_leadership",
    "write_handler",
]

log = logging.getLogger(__name__)

_SERVICE = "swarmlet.v1.EngineApiWrites"
WRITE_METHOD = f"/{_SERVICE}/Write"
"""The gRPC method a follower forwards writes to, on the leader's cluster port."""

Propose = Callable[[Sequence[Op]], Awaitable[Any]]
"""The runtime's ``write(ops)``: propose on this manager (NotLeaderError on a follower)."""

LOST_LEADERSHIP_MESSAGE = "raft: failed to process the request: node lost leader status"
"""swarmkit's ErrLostLeadership, word for word: a write reached a leader that lost its quorum."""


class LostLeadership(Exception):
    """This manager led, lost its quorum and knows no leader since: the write was not committed.

    swarmkit answers so when a proposal's leader steps down before it commits; a real Swarm's
    surviving leader keeps listing itself Leader and answers every write so
    (five-nodes/x-multi.txt). Here: a write in flight when check-quorum steps the leader down,
    and any write later on a manager whose store still names it Leader while it knows no leader
    (once it has known none for several election timeouts: before, it waits for one).
    """

    def __init__(self) -> None:
        super().__init__(LOST_LEADERSHIP_MESSAGE)


_STORE_ERRORS: dict[str, type[StoreError]] = {
    cls.__name__: cls
    for cls in (Ambiguous, InUse, InvalidObject, NameConflict, NotFound, UpdateOutOfSequence)
}


class _Replica(Protocol):
    """What the writer needs to see of this manager: how far its store has applied."""

    @property
    def applied_index(self) -> int: ...


def _error_record(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, Unsent):  # refused before proposing: the follower waits for a leader
        return {"type": "NotProposed", "message": str(exc.answer)}
    if isinstance(exc, StoreError):
        return {"type": type(exc).__name__, "message": exc.message}
    if isinstance(exc, LostLeadership | ProposalDropped):
        return {"type": "LostLeadership", "message": str(exc)}
    if isinstance(exc, NoLeaderError | NotLeaderError):  # refused before proposing
        return {"type": "NotProposed", "message": str(exc)}
    if isinstance(exc, ConnectionAbortedError):  # the manager stopped mid-write: indeterminate
        return {"type": "NoLeaderError", "message": str(exc)}
    if isinstance(exc, TimeoutError):
        return {"type": "TimeoutError", "message": str(exc)}
    return {"type": "Error", "message": str(exc) or type(exc).__name__}


def _raise_record(record: dict[str, Any]) -> None:
    kind, message = str(record.get("type")), str(record.get("message", ""))
    store_error = _STORE_ERRORS.get(kind)
    if store_error is UpdateOutOfSequence:
        raise UpdateOutOfSequence(message)
    if store_error is not None:
        raise store_error(message)
    if kind == "NotProposed":
        raise Unsent(NoLeaderError())
    if kind == "NoLeaderError":
        raise NoLeaderError()
    if kind == "LostLeadership":
        raise LostLeadership()
    if kind == "TimeoutError":
        raise TimeoutError(message)
    raise RuntimeError(message)


class _Leadership(Protocol):
    """What the watch needs of the Raft shell: who leads now, and whether this manager does."""

    @property
    def leader_id(self) -> str: ...

    @property
    def is_leader(self) -> bool: ...


async def propose_watching_leadership(propose: Propose, ops: Sequence[Op], shell: _Leadership | None,
                                      stored_leader_is_self: Callable[[], bool],
                                      poll: float = 0.02) -> Any:
    """``propose(ops)``, refused with :class:`LostLeadership` as Swarm's surviving leader refuses.

    Before proposing: a manager that knows no leader while its store still names it Leader (the
    flag ``node ls`` shows it by) lost its quorum as leader, or is in an election it may yet win:
    it raises :class:`Unsent` with LostLeadership, which :class:`LeaderWrites` answers once no
    leader has come for several election timeouts (at once when none came for long). While proposing
    on the leader: if it steps down (check-quorum) and no other leader is known, the caller is
    answered at once instead of at the write's timeout; the entry may still commit if this
    manager wins the next election with it in its log, as in swarmkit.
    """
    if shell is not None and not shell.leader_id and stored_leader_is_self():
        raise Unsent(LostLeadership())
    if shell is None or not shell.is_leader:
        return await propose(ops)
    write = asyncio.ensure_future(propose(ops))
    try:
        while True:
            done, _ = await asyncio.wait({write}, timeout=poll)
            if done:
                return write.result()
            if not shell.leader_id:
                raise LostLeadership()
    finally:
        if not write.done():
            write.cancel()


class LeaderWrites:
    """Write a batch of operations through the leader, wherever this manager stands."""

    def __init__(self, propose: Propose, store: _Replica, *, timeout: float = 5.0,
                 settle: float = 0.8, faults: FaultGate | None = None,
                 leadership: Callable[[], Leadership | None] | None = None) -> None:
        """``propose`` is the runtime's write; ``timeout`` bounds the wait for a leader and then
        each attempt; ``settle`` bounds the wait for this store to catch up; ``faults``: the
        node's injected link faults on the link to the leader; ``leadership`` gives the Raft
        shell to wait on for a leader (without it, a write that finds none is refused at once)."""
        self.faults = faults if faults is not None else FaultGate(None, "control")
        self.propose = propose
        self.store = store
        self.timeout = timeout
        self.settle = settle
        self.leadership = leadership if leadership is not None else lambda: None

    async def write(self, ops: Sequence[Op]) -> None:
        """Commit ``ops`` as one batch; raise the store's or Raft's exception if refused."""
        deadline = time.monotonic() + self.timeout
        index = await retry_unsent(lambda: self._attempt(ops), self.leadership(), deadline)
        if index is None:
            return
        deadline = time.monotonic() + self.settle
        while self.store.applied_index < index and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _attempt(self, ops: Sequence[Op]) -> int | None:
        """One try: None once committed here, the leader's index once committed there; raises
        :class:`Unsent` when no leader took the write."""
        try:
            await self.propose(ops)
            return None
        except NotLeaderError as exc:
            if not exc.leader_addr:
                raise Unsent(NoLeaderError()) from None
            leader = exc.leader_addr
        except NoLeaderError as exc:  # the shell waited for a leader in vain, before proposing
            raise Unsent(exc) from None
        return await self._forward(leader, ops)

    async def _forward(self, leader: str, ops: Sequence[Op]) -> int:
        request = encode_batch(list(ops), now=format_timestamp(time.time()))
        try:
            # A leader behind a partitioned link never answers: the write times out unsent.
            await self.faults.call(leader, self.timeout)
        except LinkPartitioned:
            raise TimeoutError("context deadline exceeded") from None
        async with tls.channel(leader) as channel:
            call = channel.unary_unary(WRITE_METHOD, None, None)
            try:
                raw = await call(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise TimeoutError("context deadline exceeded") from None
                log.info("forwarding a write to the leader at %s failed: %s", leader, exc.details())
                if exc.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (exc.details() or ""):
                    raise Unsent(NoLeaderError()) from None  # refused: the leader never saw it
                # The leader is gone or unreachable: as good as no leader at all.
                raise NoLeaderError() from None
        answer = json.loads(raw)
        if "error" in answer:
            _raise_record(answer["error"])
        return int(answer.get("index", 0))


def write_handler(propose: Propose, store: _Replica) -> grpc.GenericRpcHandler[Any, Any]:
    """The leader's side: ``/swarmlet.v1.EngineApiWrites/Write`` proposes a forwarded batch.

    A manager that is not (or no longer) the leader answers "not proposed" rather than forward
    a second time; the follower then waits for the leader it will learn of and tries again.
    """

    async def write(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            ops, _their_now = decode_batch(request)
            await propose(ops)
        except Exception as exc:  # every refusal goes back to the follower by name
            return json.dumps({"error": _error_record(exc)}).encode()
        return json.dumps({"index": store.applied_index}).encode()

    handlers = {"Write": grpc.unary_unary_rpc_method_handler(write)}
    return grpc.method_handlers_generic_handler(_SERVICE, handlers)
