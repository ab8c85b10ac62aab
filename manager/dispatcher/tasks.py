"""The leader's task path to and from agents: assignments streams and batched status reports.

* **Assignments** (one stream per agent): on connect the complete set of the node's tasks (and
  the secrets and configs they use, to that node only), then only changes. One store watch on
  tasks (:class:`AssignmentsHub`) routes each committed change to the streams of the node it
  concerns (its NodeID now, or the node it was last routed to, so a task that moved is removed
  where it was); nothing rescans the store after the first set.
* **UpdateTaskStatus**: reports from every agent are queued (:class:`StatusBatcher`), coalesced
  per task for a short interval and written in one store batch through Raft; the call returns
  once the batch carrying its reports committed, so an agent that got an answer may forget them.
  What to write is decided by the pure :func:`manager.dispatcher.assignments.status_ops`.
* **NodeTasks**: a read of a node's tasks from this manager's store (for tools and tests).

Only the leader serves the first two; a follower answers with the leader's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import prometheus_client
from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from manager.dispatcher.assignments import (
    AssignmentChange,
    NodeAssignments,
    Report,
    merge_reports,
    payload_api,
    status_ops,
)
from manager.state.raft.shell import NO_LEADER_MESSAGE
from manager.state.store.errors import NotFound, UpdateOutOfSequence
from manager.state.store.objects import StoredObject
from manager.state.store.store import Store
from manager.state.store.watch import Change, Watch

__all__ = ["AssignmentsHub", "StatusBatcher", "TaskDispatcher"]

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.05
"""Seconds the leader gathers status reports before writing them in one batch (before the time scale)."""
MAX_BATCH = 10_000
"""Reports written in one batch at most (swarmkit's maxBatchItems)."""
_CONFLICT_RETRIES = 5


class _Subscriber:
    """One Assignments stream's inbox: committed changes routed to its node, and a wake-up."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.changes: list[Change] = []
        self.wake = asyncio.Event()


class AssignmentsHub:
    """One watch on tasks for every stream; routes each change to the streams of its node(s)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._subs: dict[str, set[_Subscriber]] = {}
        self._routed: dict[str, str] = {}  # task ID -> the node it was last routed to
        self._watch: Watch | None = None

    def start(self) -> None:
        """Open the watch (before any stream reads its complete set, so no change falls between)."""
        if self._watch is None:
            self._watch = self.store.watch(["task"], on_change=self._on_change)

    def close(self) -> None:
        """Close the watch; streams still open stop hearing changes."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def subscribe(self, node_id: str) -> _Subscriber:
        """A new inbox for ``node_id``'s stream; read the complete set after this, not before."""
        self.start()
        sub = _Subscriber(node_id)
        self._subs.setdefault(node_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        """Forget a stream that ended."""
        subs = self._subs.get(sub.node_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.node_id]

    def _on_change(self) -> None:
        if self._watch is None:
            return
        for change in self._watch.poll():
            task = change.object
            node = task.extra.get("NodeID")
            targets = {node} if isinstance(node, str) and node else set()
            before = self._routed.get(task.id)
            if before is not None:
                targets.add(before)
            if change.action == "remove":
                self._routed.pop(task.id, None)
            elif isinstance(node, str) and node:
                self._routed[task.id] = node
            for target in targets:
                for sub in self._subs.get(target, ()):
                    sub.changes.append(change)
                    sub.wake.set()


class _Waiting:
    """A caller of UpdateTaskStatus waiting for the batch that carries its reports."""

    def __init__(self, task_ids: Sequence[str]) -> None:
        self.task_ids = list(task_ids)
        self.done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()


class StatusBatcher:
    """Coalesce reports from all agents for ``interval`` seconds, then write them in one batch."""

    def __init__(self, runtime: Any, interval: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self._pending: dict[str, Report] = {}
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self.batches = 0  # batches written, for tests and metrics
        registry = getattr(getattr(runtime, "context", None), "registry", None)
        if not isinstance(registry, prometheus_client.CollectorRegistry):
            registry = prometheus_client.CollectorRegistry()
        self._batches = prometheus_client.Counter(
            "swarmlet_dispatcher_status_batches", "Store batches of task status reports written",
            registry=registry,
        )  # fmt: skip
        self._reports = prometheus_client.Counter(
            "swarmlet_dispatcher_status_reports",
            "Task status reports by outcome: written, or why ignored "
            "(stale, unchanged, deleted, foreign, invalid)",
            ["outcome"], registry=registry,
        )  # fmt: skip

    async def submit(self, reports: Sequence[Report], timeout: float) -> tuple[int, int]:
        """Queue ``reports``; return (written, ignored) once their batch committed."""
        for report in reports:
            merge_reports(self._pending, report)
        waiting = _Waiting([r.task_id for r in reports])
        self._waiting.append(waiting)
        self._wake.set()
        return await asyncio.wait_for(waiting.done, timeout)

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)  # let other agents' reports join this batch
            self._wake.clear()
            reports = list(self._pending.values())[:MAX_BATCH]
            for report in reports:
                del self._pending[report.task_id]
            waiting, self._waiting = self._waiting, []
            if self._pending:
                self._wake.set()
            try:
                written, ignored = await self._write(reports)
            except Exception as exc:  # no leader, leadership lost: the agents report again
                for w in waiting:
                    if not w.done.done():
                        w.done.set_exception(exc)
                continue
            for w in waiting:
                if not w.done.done():
                    mine = set(w.task_ids)
                    w.done.set_result((len(mine & written), len(mine & ignored)))

    async def _write(self, reports: list[Report]) -> tuple[set[str], set[str]]:
        store = self.runtime.store

        def get_task(task_id: str) -> StoredObject | None:
            try:
                task: StoredObject = store.get("task", task_id)
            except NotFound:
                return None
            return task

        for _ in range(_CONFLICT_RETRIES):
            decision = status_ops(get_task, reports)
            if decision.ignored:
                log.debug("status reports ignored: %s", decision.ignored)
            if not decision.ops:
                self._count(decision.written, decision.ignored)
                return set(), set(decision.ignored)
            try:
                await self.runtime.write(decision.ops, timeout=2.0 * self.runtime.time_scale)
            except UpdateOutOfSequence:
                continue  # another writer touched one of these tasks: decide again on what committed
            self.batches += 1
            self._batches.inc()
            self._count(decision.written, decision.ignored)
            return set(decision.written), set(decision.ignored)
        raise UpdateOutOfSequence()

    def _count(self, written: list[str], ignored: dict[str, str]) -> None:
        if written:
            self._reports.labels("written").inc(len(written))
        for reason in ignored.values():
            self._reports.labels(reason).inc()


def _task_json(task: StoredObject) -> bytes:
    return json.dumps(task.to_api(), separators=(",", ":")).encode()


def _to_pb(change: AssignmentChange) -> dispatcher_pb2.AssignmentChange:
    if change.action == "remove" or change.object is None:
        return dispatcher_pb2.AssignmentChange(
            action=dispatcher_pb2.AssignmentChange.REMOVE, kind=change.kind, id=change.id
        )
    if change.kind == "task":
        body = _task_json(change.object)
    else:  # a secret or config: only what the node needs, {ID, Spec: {Name, Data, Templating}}
        body = json.dumps(payload_api(change.object), separators=(",", ":")).encode()
    return dispatcher_pb2.AssignmentChange(
        action=dispatcher_pb2.AssignmentChange.UPDATE, kind=change.kind, id=change.id, object=body,
    )  # fmt: skip


def _lookup(store: Store) -> Callable[[str, str], StoredObject | None]:
    """The committed secret or config by ID, or None once it is gone."""

    def get(kind: str, object_id: str) -> StoredObject | None:
        try:
            obj: StoredObject = store.get(kind, object_id)
        except NotFound:
            return None
        return obj

    return get


class TaskDispatcher(dispatcher_pb2_grpc.AssignmentsServicer):
    """Serves Assignments, UpdateTaskStatus and NodeTasks for the manager ``runtime``."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` is the ManagerRuntime: its shell, store, ``write`` and ``time_scale``."""
        self.runtime = runtime
        self.hub = AssignmentsHub(runtime.store)
        self.batcher = StatusBatcher(runtime, BATCH_INTERVAL * runtime.time_scale)
        self._leader_check = 0.5 * runtime.time_scale

    def _leader_addr(self) -> str | None:
        """"" on the leader, the leader's address on a follower, None when no leader is known."""
        shell = self.runtime.shell
        if shell is not None and shell.is_leader:
            return ""
        addr = getattr(shell, "leader_address", None) if shell is not None else None
        return str(addr) if addr else None

    async def run(self) -> None:
        """Write status batches until cancelled; the watch is closed on the way out."""
        self.hub.start()
        try:
            await self.batcher.run()
        finally:
            self.hub.close()

    async def Assignments(
        self, request: dispatcher_pb2.AssignmentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[dispatcher_pb2.AssignmentsMessage]:
        """The complete set, then changes, while this manager leads."""
        leader = self._leader_addr()
        if leader is None:
            yield dispatcher_pb2.AssignmentsMessage(error=NO_LEADER_MESSAGE)
            return
        if leader:
            yield dispatcher_pb2.AssignmentsMessage(leader_addr=leader)
            return
        store = self.runtime.store
        try:
            store.get("node", request.node_id)
        except NotFound:
            yield dispatcher_pb2.AssignmentsMessage(error="node not found: join the swarm first")
            return
        sub = self.hub.subscribe(request.node_id)
        state = NodeAssignments(request.node_id, lookup=_lookup(store))
        try:
            first = state.complete(store.find("task", node_id=request.node_id))
            yield dispatcher_pb2.AssignmentsMessage(
                type=dispatcher_pb2.AssignmentsMessage.COMPLETE, store_index=store.applied_index,
                changes=[_to_pb(c) for c in first],
            )  # fmt: skip
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), self._leader_check)
                sub.wake.clear()
                if self._leader_addr() != "":
                    return  # leadership moved: the agent reconnects to the new leader
                changes, sub.changes = sub.changes, []
                out = state.incremental(changes)
                if out:
                    yield dispatcher_pb2.AssignmentsMessage(
                        type=dispatcher_pb2.AssignmentsMessage.INCREMENTAL,
                        store_index=store.applied_index, changes=[_to_pb(c) for c in out],
                    )  # fmt: skip
        finally:
            self.hub.unsubscribe(sub)

    async def UpdateTaskStatus(
        self, request: dispatcher_pb2.UpdateTaskStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dispatcher_pb2.UpdateTaskStatusResponse:
        """Queue the node's reports and answer once the batch carrying them committed."""
        leader = self._leader_addr()
        if leader is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER_MESSAGE)
        if leader:
            return dispatcher_pb2.UpdateTaskStatusResponse(leader_addr=leader)
        reports: list[Report] = []
        for update in request.updates:
            try:
                status = json.loads(update.status)
            except ValueError:
                status = None
            if not isinstance(status, dict):
                bad = f"task {update.task_id}: the status is not a JSON object"
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad)
            reports.append(Report(request.node_id, update.task_id, status))
        try:
            written, ignored = await self.batcher.submit(reports, timeout=5.0 * self.runtime.time_scale)
        except Exception as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc) or type(exc).__name__)
            raise AssertionError("unreachable") from None
        return dispatcher_pb2.UpdateTaskStatusResponse(written=written, ignored=ignored)

    async def NodeTasks(
        self, request: dispatcher_pb2.NodeTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dispatcher_pb2.NodeTasksResponse:
        """Every task of a node (every task, for an empty node ID) in this manager's store."""
        store = self.runtime.store
        tasks = store.find("task", node_id=request.node_id) if request.node_id else store.find("task")
        return dispatcher_pb2.NodeTasksResponse(tasks=[_task_json(t) for t in tasks])
