"""The executor seam, as swarmkit's ``agent/exec``: an Executor makes a Controller per task.

A :class:`Controller` runs one task's container through its life: ``prepare`` (make it; an error
rejects the task), ``start`` (an error fails it at "starting"), ``wait`` (until it exits; a
non-zero exit raises :class:`ExitError`, a failed healthcheck :class:`UnhealthyError`),
``shutdown`` (stop it within its grace period) and ``remove`` (forget it). The worker never
looks inside: the emulated runtime (:mod:`nodeagent.agent.emulated`) is one implementation, and a
test can pass a stub of a few lines.

The statuses an agent reports are made here, with Docker's words (swarmkit ``exec.Do`` with
moby's container executor): "accepted", "preparing", "prepared", "starting", "started",
"finished", "shutdown"; a failure keeps the message of the step it happened in and sets Err
("task: non-zero exit (3)" after "started", "No such image: x" after "preparing"). These
functions are pure: the caller passes the timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "MESSAGES",
    "TERMINAL",
    "ContainerFacts",
    "Controller",
    "Executor",
    "ExitError",
    "RejectedError",
    "UnhealthyError",
    "make_status",
]

MESSAGES: dict[str, str] = {
    "accepted": "accepted",
    "preparing": "preparing",
    "ready": "prepared",
    "starting": "starting",
    "running": "started",
    "complete": "finished",
    "shutdown": "shutdown",
}
"""The Message a task's status carries on reaching each state (swarmkit exec.Do's words)."""

TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned", "remove"})
"""States after which a task never runs again."""


class ExitError(Exception):
    """The container exited with a non-zero code: Docker's "task: non-zero exit (N)"."""

    def __init__(self, code: int) -> None:
        super().__init__(f"task: non-zero exit ({code})")
        self.code = code


class UnhealthyError(Exception):
    """The healthcheck failed Retries times in a row: moby's "unhealthy container"."""

    def __init__(self, code: int = 137) -> None:
        super().__init__("unhealthy container")
        self.code = code


class RejectedError(Exception):
    """``prepare`` cannot make the container (e.g. "No such image: x"): the task is rejected."""


@dataclass
class ContainerFacts:
    """What the status shows of a container: ContainerStatus and where it listens."""

    container_id: str = ""
    pid: int = 0
    exit_code: int = 0
    listeners: list[dict[str, Any]] = field(default_factory=list)
    """swarmlet's own: {"Protocol", "TargetPort", "Addr", "Port"} per listener (container port ->
    the node's address and ephemeral port), for the networking work that routes to tasks."""
    files: list[str] = field(default_factory=list)
    """Paths of the secrets and configs mounted in the container (never their content): the
    node's ListTasks shows them; the task's status does not."""


class Controller(Protocol):
    """One task's container, driven by the worker (swarmkit's exec.Controller)."""

    async def prepare(self) -> None:
        """Make the container; raise RejectedError (or anything) to reject the task."""
        ...

    async def start(self) -> None:
        """Start it; raising fails the task at "starting"."""
        ...

    async def wait(self) -> None:
        """Until the container exits: return on exit 0, raise ExitError or UnhealthyError."""
        ...

    async def shutdown(self) -> None:
        """Stop it: SIGTERM, then kill after the task's stop grace period. Idempotent."""
        ...

    async def remove(self) -> None:
        """Forget it (its logs stay with the node, bounded). Idempotent."""
        ...

    def facts(self) -> ContainerFacts:
        """ContainerStatus and listeners as they are now."""
        ...


class Executor(Protocol):
    """Makes controllers (swarmkit's exec.Executor)."""

    def controller(self, task: Mapping[str, Any]) -> Controller:
        """A controller for ``task`` (the task as the dispatcher sent it, Engine API JSON)."""
        ...


def make_status(state: str, timestamp: str, *, message: str | None = None, err: str | None = None,
                facts: ContainerFacts | None = None,
                port_status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A task Status in the Engine API's shape, with the Message the state carries by default;
    ``port_status``: its PortStatus (the host-mode ports of a running task)."""
    status: dict[str, Any] = {
        "Timestamp": timestamp,
        "State": state,
        "Message": MESSAGES.get(state, state) if message is None else message,
    }
    if err:
        status["Err"] = err
    if facts is not None and facts.container_id:
        status["ContainerStatus"] = {
            "ContainerID": facts.container_id,
            "PID": facts.pid,
            "ExitCode": facts.exit_code,
        }
    status["PortStatus"] = dict(port_status) if port_status else {}
    if facts is not None and facts.listeners:
        status["Listeners"] = [dict(e) for e in facts.listeners]
    return status
