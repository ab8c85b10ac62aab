"""What every orchestrator shares: task states by position, service modes, new tasks, node validity.

Pure helpers over stored objects (no I/O, no clock, no global randomness): a new task's ID comes
from the ``new_id`` callable the component was given (a seeded ``random.Random`` in the
simulator), its timestamps from the ``now`` of the reconcile.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from manager.state.store.commands import Create, Op, Update
from manager.state.store.objects import TASK_STATES, StoredObject, format_timestamp

__all__ = [
    "ASSIGNED",
    "COMPLETE",
    "CREATED_MESSAGE",
    "NEW",
    "ORPHANED_MESSAGE",
    "READY",
    "REMOVE",
    "RUNNING",
    "SHUTDOWN",
    "IdSource",
    "desired",
    "invalid_node",
    "job_iteration",
    "new_task",
    "orphan_tasks",
    "parse_timestamp",
    "service_mode",
    "set_desired",
    "state",
]

STATE = {name: i for i, name in enumerate(TASK_STATES)}
NEW = STATE["new"]
ASSIGNED = STATE["assigned"]
READY = STATE["ready"]
RUNNING = STATE["running"]
COMPLETE = STATE["complete"]
SHUTDOWN = STATE["shutdown"]
REMOVE = STATE["remove"]

CREATED_MESSAGE = "created"
"""Status.Message of a task the orchestrator has just made (swarmkit's)."""

IdSource = Callable[[], str]
"""Gives a new object ID on each call (``nodeagent.identity.new_id`` over a seeded RNG)."""


def state(task: StoredObject) -> int:
    """The position of the task's Status.State in TASK_STATES (an unknown state reads as new)."""
    return STATE.get(task.status.get("State"), NEW)  # type: ignore[arg-type]


def desired(task: StoredObject) -> int:
    """The position of the task's DesiredState in TASK_STATES (none reads as running)."""
    return STATE.get(task.extra.get("DesiredState"), RUNNING)  # type: ignore[arg-type]


def service_mode(service: StoredObject) -> str:
    """Replicated, Global, ReplicatedJob or GlobalJob; a service without a Mode is Replicated."""
    mode = service.spec.get("Mode")
    if isinstance(mode, Mapping) and len(mode) == 1:
        return str(next(iter(mode)))
    return "Replicated"


def job_iteration(service: StoredObject) -> int:
    """The job's run counter: the service's JobStatus.JobIteration.Index (0 before any rerun).

    The Engine API layer sets it (swarmkit bumps it when a job is updated, so the job runs
    again); tasks of an older iteration are removed.
    """
    status = service.extra.get("JobStatus")
    iteration = status.get("JobIteration") if isinstance(status, Mapping) else None
    index = iteration.get("Index") if isinstance(iteration, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def invalid_node(node: StoredObject | None) -> bool:
    """swarmkit's InvalidNode: a task there must be replaced: the node is gone, Down or drained."""
    return node is None or node.status.get("State") == "down" or node.spec.get("Availability") == "drain"


def new_task(
    service: StoredObject,
    *,
    task_id: str,
    now: float,
    slot: int = 0,
    node_id: str = "",
    desired_state: str = "running",
    iteration: int | None = None,
) -> Create:
    """A new task of ``service`` in state new, as the shared contract shapes it.

    Spec is the service's TaskTemplate as it is now; SpecVersion the service's version it came
    from. A replicated or job task has a ``Slot`` (1..N) and gets its node from the scheduler;
    a global task has ``NodeID`` from the start and no slot.
    """
    name = str(service.spec.get("Name") or "")
    extra: dict[str, Any] = {"ServiceID": service.id}
    if slot:
        extra["Slot"] = slot
        label = f"{name}.{slot}.{task_id}"
    else:
        label = f"{name}.{node_id}.{task_id}"
    if node_id:
        extra["NodeID"] = node_id
    extra.update(
        DesiredState=desired_state,
        ServiceAnnotations={"Name": name},
        Annotations={"Name": label},
        SpecVersion={"Index": service.version},
    )
    if iteration is not None:
        extra["JobIteration"] = {"Index": iteration} if iteration else {}
    status = {
        "Timestamp": format_timestamp(now),
        "State": "new",
        "Message": CREATED_MESSAGE,
        "PortStatus": {},
    }
    return Create("task", task_id, service.spec.get("TaskTemplate") or {}, status, extra)


def set_desired(task: StoredObject, desired_state: str) -> Op:
    """An update of the task's DesiredState alone (the agent acts on it).

    A shallow copy: the nested values stay the stored, frozen ones, which the batch encoder
    knows to be JSON already (a deep copy would be walked again, field by field).
    """
    return Update("task", task.id, task.version, extra={**task.extra, "DesiredState": desired_state})


ORPHANED_MESSAGE = "Task belonged to a node that has been deleted"
"""The status message of a task orphaned by ``docker node rm`` (swarmkit's words)."""


def orphan_tasks(tasks: Iterable[StoredObject], now: float) -> list[Op]:
    """The tasks of a node being removed that have not stopped, moved to ``orphaned``, to be
    written with the node's deletion (swarmkit's ``orphanNodeTasks``): no agent will report on
    them again, and a task left ``running`` would count in ``docker service ls`` beside its
    replacement. Their status is replaced whole, as swarmkit's; stopped tasks are left alone."""
    status = {"Timestamp": format_timestamp(now), "State": "orphaned", "Message": ORPHANED_MESSAGE}
    return [Update("task", t.id, t.version, status=status) for t in tasks if state(t) < COMPLETE]


def parse_timestamp(text: Any) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time as the store writes it (0.0 if unreadable).

    Store timestamps are stamped by the proposer from the same clock an orchestrator's ``now``
    comes from (the wall clock in a manager, virtual time in the simulator), so the two compare.
    """
    if not isinstance(text, str) or len(text) < 20 or not text.endswith("Z"):
        return 0.0
    try:
        whole = calendar.timegm(
            (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
             int(text[17:19]), 0, 0, 0)
        )  # fmt: skip
        frac = text[19:-1]
        return whole + (float(frac) if frac.startswith(".") and len(frac) > 1 else 0.0)
    except ValueError:
        return 0.0
