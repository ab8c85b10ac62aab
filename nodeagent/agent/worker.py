"""The worker: the node's assignments reconciled against running controllers, statuses reported.

The dispatcher client hands it each assignments message (:meth:`Worker.apply`): a complete set
replaces what the worker holds, an incremental one changes it. After each, :func:`plan` (pure)
says which tasks to start, which runners hear of a newer task (a DesiredState of shutdown stops
one), and which runners to drop (their task was removed). Each runner reports its states to the
:class:`StatusReporter`, which coalesces reports per task for a short interval and sends them in
one UpdateTaskStatus call; a failed send keeps them for the next try (a newer report of the same
task replaces an older one, which the dispatcher would ignore anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nodeagent.agent.dependencies import Dependencies, Payload
from nodeagent.agent.exec import Executor, make_status
from nodeagent.agent.taskrun import TaskRunner, desired_position, plan

__all__ = ["REPORT_INTERVAL", "StatusReporter", "Worker"]

log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.1
"""Seconds a report waits for others to join its batch (before the time scale)."""

Send = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[None]]
"""send([(task_id, status), ...]): one UpdateTaskStatus call; raises if it did not get through."""


class StatusReporter:
    """Coalesce task status reports and send them in batches."""

    def __init__(self, send: Send, interval: float) -> None:
        """``send`` delivers one batch; ``interval`` is how long reports gather before a send."""
        self.send = send
        self.interval = interval
        self.pending: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self.batches_sent = 0

    def report(self, task_id: str, status: dict[str, Any]) -> None:
        """Queue a status; a queued one for the same task is replaced unless it is further along."""
        held = self.pending.get(task_id)
        if held is None or desired_position(status.get("State")) >= desired_position(held.get("State")):
            self.pending[task_id] = status
        self._wake.set()

    async def flush(self) -> bool:
        """Send what is pending now; True if it got through (or nothing was pending)."""
        if not self.pending:
            return True
        batch = list(self.pending.items())
        try:
            await self.send(batch)
        except Exception as exc:
            log.debug("status reports not delivered (%s); retrying", exc)
            return False
        for task_id, status in batch:
            if self.pending.get(task_id) is status:
                del self.pending[task_id]
        self.batches_sent += 1
        return True

    async def run(self) -> None:
        """Send batches until cancelled."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(self.interval * 4)
                self._wake.set()
            elif self.pending:
                self._wake.set()


class Worker:
    """Runs the tasks assigned to this node through an executor."""

    def __init__(self, executor: Executor, reporter: StatusReporter, timestamp: Callable[[], str],
                 dependencies: Dependencies | None = None) -> None:
        """``timestamp()`` is RFC 3339 now, for the statuses the worker makes itself;
        ``dependencies`` holds the secrets and configs delivered with the tasks (in memory)."""
        self.executor = executor
        self.dependencies = dependencies if dependencies is not None else Dependencies()
        self.reporter = reporter
        self.timestamp = timestamp
        self.assigned: dict[str, Mapping[str, Any]] = {}
        self.runners: dict[str, TaskRunner] = {}
        self.done: set[str] = set()  # tasks this worker has finished with (never run twice)
        self.images_used: list[str] = []

    def apply(self, complete: bool, updates: list[Mapping[str, Any]], removals: list[str],
              payloads: list[Payload] | None = None,
              payload_removals: list[tuple[str, str]] | None = None) -> None:
        """Take one assignments message (tasks, and the secrets and configs they use), then reconcile.

        Payloads are taken before the tasks start, so a task that arrives with its secret finds
        it; then whatever no assigned task names any more is dropped from memory.
        """
        self.dependencies.apply(complete, payloads or [], payload_removals or [])
        if complete:
            self.assigned = {}
        for task in updates:
            self.assigned[str(task["ID"])] = task
        for task_id in removals:
            self.assigned.pop(task_id, None)
        self.dependencies.keep_only(self.assigned.values())
        self.reconcile()

    def reconcile(self) -> None:
        """Start, update and drop runners as :func:`plan` says."""
        running = {t: r.version for t, r in self.runners.items()}
        step = plan(self.assigned, running, self.done)
        for task_id in step.never_started:
            self.done.add(task_id)
            self.reporter.report(task_id, make_status("shutdown", self.timestamp()))
        for task_id in step.lost:
            self.done.add(task_id)
            status = dict(self.assigned[task_id].get("Status") or {})
            self.reporter.report(task_id, make_status(
                "failed", self.timestamp(), message=str(status.get("Message") or ""),
                err="task lost: the node agent restarted and its container is gone"))  # fmt: skip
        for task_id in step.start:
            task = self.assigned[task_id]
            image = str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")
            if image and image not in self.images_used:
                self.images_used.append(image)
            runner = TaskRunner(task, self.executor.controller(task), self.reporter.report, self.timestamp)
            self.runners[task_id] = runner
            self.done.add(task_id)
            runner.start()
        for task_id in step.update:
            self.runners[task_id].update(self.assigned[task_id])
        for task_id in step.drop:
            runner = self.runners.pop(task_id)
            asyncio.get_running_loop().create_task(self._drop(runner), name=f"drop-{task_id}")

    async def _drop(self, runner: TaskRunner) -> None:
        """A task no longer assigned here: stop it if it runs, then remove its container."""
        await runner.stop()
        with contextlib.suppress(Exception):
            await runner.controller.remove()

    def stop(self) -> None:
        """The agent is exiting: abandon every runner at once."""
        for runner in self.runners.values():
            runner.cancel()

    def rows(self) -> list[dict[str, Any]]:
        """What runs here, for the NodeTasks.ListTasks answer."""
        out = []
        for task_id, runner in sorted(self.runners.items()):
            task = runner.task
            listeners = runner.controller.facts().listeners
            address = f"{listeners[0]['Addr']}:{listeners[0]['Port']}" if listeners else ""
            out.append({
                "task_id": task_id,
                "name": str((task.get("Annotations") or {}).get("Name") or ""),
                "image": str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or ""),
                "state": runner.state,
                "desired_state": str(task.get("DesiredState") or ""),
                "address": address,
                "files": sorted(runner.controller.facts().files),
            })  # fmt: skip
        return out
