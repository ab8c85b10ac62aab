"""One task's life on the node, and the worker's pure plan of which tasks to start and stop.

:func:`plan` is the reconcile step (pure: assignments and what runs in, actions out).
:class:`TaskRunner` drives one :class:`~nodeagent.agent.exec.Controller` through Swarm's states
and reports each one: accepted -> preparing -> ready -> starting -> running -> complete | failed,
or rejected when ``prepare`` fails, or shutdown when the task's DesiredState asks for it. A task
told to stop before it started is reported shutdown without starting, as swarmkit does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeagent.agent.exec import TERMINAL, Controller, ExitError, UnhealthyError, make_status
from nodeagent.overlay.mesh import host_port_status

__all__ = ["Plan", "Report", "TaskRunner", "desired_position", "plan"]

log = logging.getLogger(__name__)

_ORDER = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
          "complete", "shutdown", "failed", "rejected", "remove", "orphaned")  # fmt: skip
_RUNNING = _ORDER.index("running")
_COMPLETE = _ORDER.index("complete")
_ASSIGNED = _ORDER.index("assigned")

Report = Callable[[str, dict[str, Any]], None]
"""report(task_id, status): hand a status to the reporter (which batches them)."""


def desired_position(state: Any) -> int:
    """Where a state stands in Swarm's order (-1 if it is not one)."""
    return _ORDER.index(state) if isinstance(state, str) and state in _ORDER else -1


def _stop_wanted(task: Mapping[str, Any]) -> bool:
    """Whether the managers want the task stopped: desired shutdown or beyond. A job's tasks are
    desired "complete", which means run to the end, not stop (swarmkit's agent reads it so too)."""
    return desired_position(task.get("DesiredState")) > _COMPLETE


@dataclass
class Plan:
    """What the worker does next: start runners, tell runners of new task versions, drop runners."""

    start: list[str] = field(default_factory=list)  # task IDs to run
    update: list[str] = field(default_factory=list)  # runners whose task changed
    drop: list[str] = field(default_factory=list)  # runners whose task is no longer assigned
    never_started: list[str] = field(default_factory=list)  # asked to stop, not running: report shutdown
    lost: list[str] = field(default_factory=list)  # the store has them past assigned, nothing runs them


def plan(assigned: Mapping[str, Mapping[str, Any]], running: Mapping[str, int], done: set[str]) -> Plan:
    """Reconcile the assignments with the runners (pure).

    ``assigned``: task ID -> the task as sent. ``running``: task ID -> the version its runner has.
    ``done``: tasks this worker already finished with (never run twice, never reported lost).
    A task whose stored state is past ``assigned`` that no runner knows was started by an earlier
    run of this agent: its container did not survive the restart, so it is reported lost (failed),
    unless the managers already want it stopped (they replaced it while the node was Down): then
    it is reported ``shutdown``, as swarmkit's agent shuts down such a task, and ``docker service
    ps`` shows the old task Shutdown once the node is back (five-nodes/d-reschedule.txt).
    """
    out = Plan()
    for task_id, task in assigned.items():
        version = int((task.get("Version") or {}).get("Index", 0))
        if task_id in running:
            if running[task_id] != version:
                out.update.append(task_id)
            continue
        if task_id in done:
            continue
        state = desired_position((task.get("Status") or {}).get("State"))
        if state == _ASSIGNED:
            (out.never_started if _stop_wanted(task) else out.start).append(task_id)
        elif _ASSIGNED < state <= _RUNNING:
            (out.never_started if _stop_wanted(task) else out.lost).append(task_id)
    out.drop = [t for t in running if t not in assigned]
    return out


class TaskRunner:
    """Runs one task through its controller and reports every state change."""

    def __init__(self, task: Mapping[str, Any], controller: Controller, report: Report,
                 timestamp: Callable[[], str]) -> None:
        """``timestamp()`` gives RFC 3339 now (the shell's clock) for each status."""
        self.task = task
        self.task_id = str(task["ID"])
        self.controller = controller
        self._report = report
        self._timestamp = timestamp
        self.state = "assigned"
        self.message = ""
        self._stop = asyncio.Event()
        self._job: asyncio.Task[None] | None = None
        if _stop_wanted(task):
            self._stop.set()

    @property
    def version(self) -> int:
        """The Version.Index of the task this runner last heard of."""
        return int((self.task.get("Version") or {}).get("Index", 0))

    @property
    def finished(self) -> bool:
        """Whether the task reached a terminal state."""
        return self.state in TERMINAL

    def start(self) -> None:
        """Begin the life of the task (a task of its own)."""
        self._job = asyncio.get_running_loop().create_task(self._life(), name=f"task-{self.task_id}")

    def update(self, task: Mapping[str, Any]) -> None:
        """A newer version of the task: its DesiredState may now ask it to stop."""
        self.task = task
        if _stop_wanted(task):
            self._stop.set()

    async def stop(self) -> None:
        """Stop the task (shutdown) and wait for its life to end."""
        self._stop.set()
        if self._job is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._job

    def cancel(self) -> None:
        """Abandon the task at once (the agent is exiting)."""
        if self._job is not None:
            self._job.cancel()

    def _set(self, state: str, *, err: str | None = None, message: str | None = None) -> None:
        self.state = state
        ports = host_port_status(self.task) if state == "running" else None
        status = make_status(state, self._timestamp(), message=message, err=err,
                             facts=self.controller.facts(), port_status=ports)  # fmt: skip
        self.message = str(status["Message"])
        self._report(self.task_id, status)

    async def _step(self, coro: Any) -> bool:
        """Run one controller step unless a stop comes first; True if the step finished."""
        step = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if step.done():
            step.result()  # raises what the step raised
            return True
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await step
        return False

    async def _life(self) -> None:
        if self._stop.is_set():
            self._set("shutdown")
            return
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a controller bug must still end the task in a state Swarm knows
            log.exception("task %s: controller failed", self.task_id)
            if not self.finished:
                self._set("failed", err=str(exc) or type(exc).__name__, message=self.message or None)

    async def _run(self) -> None:
        self._set("accepted")
        self._set("preparing")
        try:
            if not await self._step(self.controller.prepare()):
                return await self._shutdown()
        except Exception as exc:
            self._set("rejected", message="preparing", err=str(exc) or type(exc).__name__)
            return
        self._set("ready")
        self._set("starting")
        try:
            if not await self._step(self.controller.start()):
                return await self._shutdown()
        except Exception as exc:
            self._set("failed", message="starting", err=str(exc) or type(exc).__name__)
            return
        self._set("running")
        try:
            if not await self._step(self.controller.wait()):
                return await self._shutdown()
        except (ExitError, UnhealthyError) as exc:
            self._set("failed", message="started", err=str(exc))
            return
        self._set("complete")

    async def _shutdown(self) -> None:
        await self.controller.shutdown()
        self._set("shutdown")
