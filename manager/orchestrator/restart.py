"""The restart supervisor: whether a stopped task is replaced, and when its replacement starts.

swarmkit's ``restart.Supervisor`` as pure functions over the store. When a task stops (complete,
failed, rejected, shut down) while it was meant to run, or its node is gone, Down or drained,
the orchestrator that owns its service calls :func:`restart`: the old task's DesiredState
becomes ``shutdown`` and, if the task's RestartPolicy allows, a new task takes its slot (a
global service's: its node). The replacement is held with DesiredState ``ready`` until the
restart delay is over and the old task has stopped (or :data:`OLD_TASK_TIMEOUT` passed); then
:func:`held_start` says it may run, and the orchestrator sets DesiredState ``running`` (a job's
task: ``complete``). Nothing sleeps: the orchestrator asks to be woken at the time this module
computes (``next_wakeup``).

RestartPolicy, as ``docker service inspect`` shows it (times in nanoseconds):

=============  =========================================  ==========================
field          meaning                                    when absent (swarmkit)
=============  =========================================  ==========================
Condition      ``none``, ``on-failure`` or ``any``        ``any``
Delay          wait between a stop and the restart        5 s
MaxAttempts    restarts allowed (0: no limit)             0
Window         restarts count only within this window     0 (every restart counts)
=============  =========================================  ==========================

``on-failure`` replaces failed and rejected tasks, and tasks on a lost node, but not a task that
completed. A replacement on a drained node's behalf starts without delay (swarmkit).

Restart history is read from the store, not kept in memory: the tasks of one slot with the same
Spec, oldest first, are the original and its replacements, so the replacements created within
the window are the restarts that count. The task reaper keeps MaxAttempts + 1 tasks per slot
when MaxAttempts is set (as swarmkit), so the history it needs is never reaped. Unlike
swarmkit's in-memory history, it survives a change of leader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from manager.orchestrator.common import (
    ASSIGNED,
    RUNNING,
    IdSource,
    job_iteration,
    new_task,
    parse_timestamp,
    service_mode,
    set_desired,
    state,
)
from manager.state.store.commands import Op
from manager.state.store.objects import StoredObject

__all__ = [
    "DEFAULT_CONDITION",
    "DEFAULT_DELAY",
    "OLD_TASK_TIMEOUT",
    "RestartPolicy",
    "count_restarts",
    "held_start",
    "release_state",
    "restart",
    "restart_policy",
    "should_restart",
    "update_replacement",
]

DEFAULT_CONDITION = "any"
"""Condition when a task's RestartPolicy names none (swarmkit's default; Docker's API shows it)."""

DEFAULT_DELAY = 5.0
"""Seconds between a task's stop and its replacement's start when Delay is absent (swarmkit's
5 s, which ``docker service inspect`` shows as ``"Delay": 5000000000``)."""

OLD_TASK_TIMEOUT = 60.0
"""Seconds a held replacement waits at most for the task it replaces to stop (swarmkit's
TaskTimeout of one minute): an agent that never reports must not keep the slot empty."""

_JOB_MODES = ("ReplicatedJob", "GlobalJob")


@dataclass(frozen=True)
class RestartPolicy:
    """A task's restart policy in seconds."""

    condition: str  # none | on-failure | any
    delay: float  # seconds between the stop and the restart
    max_attempts: int  # 0: no limit
    window: float  # seconds; 0: every restart counts


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, float(value) / 1e9)
    return default


def restart_policy(spec: Mapping[str, Any], default_delay: float = DEFAULT_DELAY) -> RestartPolicy:
    """The RestartPolicy of a task Spec, with swarmkit's defaults for what it leaves out."""
    raw = spec.get("RestartPolicy")
    policy: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    condition = policy.get("Condition")
    if condition not in ("none", "on-failure", "any"):
        condition = DEFAULT_CONDITION
    attempts = policy.get("MaxAttempts")
    return RestartPolicy(
        condition=str(condition),
        delay=_seconds(policy.get("Delay"), default_delay),
        max_attempts=attempts if isinstance(attempts, int) and attempts > 0 else 0,
        window=_seconds(policy.get("Window"), 0.0),
    )


def count_restarts(task: StoredObject, slot_tasks: Sequence[StoredObject], window: float, now: float) -> int:
    """How many restarts of this slot count against MaxAttempts when ``task`` stops.

    The slot's tasks with ``task``'s Spec, oldest first: all but the first are replacements.
    Those created after ``task`` do not count (swarmkit's rule), nor, with a window, those
    created ``window`` seconds or more before ``now``.
    """
    created = parse_timestamp(task.created_at)
    same = sorted(
        ((parse_timestamp(t.created_at), t.id) for t in slot_tasks if t.spec == task.spec),
    )
    restarts = [when for when, _ in same[1:] if when <= created]
    if window > 0:
        restarts = [when for when in restarts if when > now - window]
    return len(restarts)


def should_restart(
    task: StoredObject,
    slot_tasks: Sequence[StoredObject],
    now: float,
    default_delay: float = DEFAULT_DELAY,
) -> bool:
    """Whether a stopped (or lost) task gets a replacement, by its RestartPolicy."""
    policy = restart_policy(task.spec, default_delay)
    if policy.condition == "none":
        return False
    if policy.condition == "on-failure" and task.status.get("State") == "complete":
        return False
    if policy.max_attempts == 0:
        return True
    return count_restarts(task, slot_tasks, policy.window, now) < policy.max_attempts


def restart(
    task: StoredObject,
    service: StoredObject,
    *,
    slot_tasks: Sequence[StoredObject],
    node: StoredObject | None,
    now: float,
    new_id: IdSource,
    default_delay: float = DEFAULT_DELAY,
) -> tuple[list[Op], float | None]:
    """Shut ``task`` down and, if its policy allows, replace it; returns (ops, wake-up).

    ``slot_tasks`` are every task of its slot (a global service's: of its node), ``task``
    included; ``node`` is the node it was on (None: none, or gone). The replacement runs at
    once when there is nothing to wait for (no delay, and the old task has stopped or its node
    is lost); otherwise it is held (DesiredState ``ready``) until :func:`held_start`, and the
    wake-up is when that will be (None: nothing held).
    """
    ops: list[Op] = [set_desired(task, "shutdown")]
    if not should_restart(task, slot_tasks, now, default_delay):
        return ops, None
    mode = service_mode(service)
    job = mode in _JOB_MODES
    drained = node is not None and node.spec.get("Availability") == "drain"
    delay = 0.0 if drained else restart_policy(task.spec, default_delay).delay
    wait_stop = _still_running(task, node)
    run_state = "complete" if job else "running"
    global_mode = mode in ("Global", "GlobalJob")
    ops.append(
        new_task(
            service,
            task_id=new_id(),
            now=now,
            slot=0 if global_mode else int(task.extra.get("Slot") or 0),
            node_id=str(task.extra.get("NodeID") or "") if global_mode else "",
            desired_state="ready" if delay > 0 or wait_stop else run_state,
            iteration=job_iteration(service) if job else None,
        )
    )
    if delay <= 0 and not wait_stop:
        return ops, None
    return ops, now + max(delay, OLD_TASK_TIMEOUT if wait_stop else 0.0)


def _still_running(task: StoredObject, node: StoredObject | None) -> bool:
    """Must a replacement wait for this task to stop? Only if it may still run on a live node."""
    if node is None or node.status.get("State") == "down":
        return False
    return ASSIGNED <= state(task) <= RUNNING


def held_start(
    task: StoredObject,
    slot_tasks: Sequence[StoredObject],
    nodes: Mapping[str, StoredObject],
    default_delay: float = DEFAULT_DELAY,
) -> float:
    """When a held replacement (DesiredState ``ready``) may start, on the store's clock.

    Its creation time plus the restart delay (none if the task it replaced was on a drained
    node); and while that task may still run on a live node, no earlier than its creation plus
    :data:`OLD_TASK_TIMEOUT` (its stop is a store change, which brings the orchestrator back
    sooner). The caller starts it once ``now`` reaches this time.
    """
    created = parse_timestamp(task.created_at)
    older = [
        (parse_timestamp(t.created_at), t.id, t)
        for t in slot_tasks
        if t.id != task.id and parse_timestamp(t.created_at) <= created
    ]
    old = max(older, key=lambda entry: entry[:2])[2] if older else None
    old_node = nodes.get(str(old.extra.get("NodeID") or "")) if old is not None else None
    drained = old_node is not None and old_node.spec.get("Availability") == "drain"
    no_delay = drained or (old is not None and update_replacement(task, old, old_node))
    start = created + (0.0 if no_delay else restart_policy(task.spec, default_delay).delay)
    if old is not None and _still_running(old, old_node):
        start = max(start, created + OLD_TASK_TIMEOUT)
    return start


def update_replacement(task: StoredObject, old: StoredObject, old_node: StoredObject | None) -> bool:
    """Was ``task`` made by the update supervisor to replace ``old`` (stop-first)? Then no restart
    delay applies, only the wait for ``old`` to stop (swarmkit's ``DelayStart(..., 0, true)``).

    Told from the store: the Specs differ, and ``old`` did not stop on its own (it runs, or was
    shut down as asked) on a live node; a restart replaces a task that failed or lost its node.
    """
    if task.spec == old.spec or old_node is None or old_node.status.get("State") == "down":
        return False
    return state(old) <= RUNNING or old.status.get("State") == "shutdown"


def release_state(task: StoredObject) -> str:
    """What a held task is released to: ``complete`` for a job's task, ``running`` otherwise."""
    return "complete" if "JobIteration" in task.extra else "running"
