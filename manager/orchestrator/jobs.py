"""The job orchestrators: replicated jobs and global jobs, whose tasks run to completion.

A job's task is created with DesiredState ``complete`` and ends in ``complete``; it carries the
job's iteration (``JobIteration``, the service's ``JobStatus.JobIteration.Index``, which the
Engine API bumps when the job is run again). Tasks of an older iteration that are still running
get DesiredState ``remove``. As in swarmkit's ``jobs`` orchestrator:

* replicated job (``Mode.ReplicatedJob``): ``TotalCompletions`` tasks must complete, at most
  ``MaxConcurrent`` at a time. Each pass counts this iteration's complete and active tasks and
  creates ``min(MaxConcurrent - active, TotalCompletions - complete - active)`` new ones, in free
  slots 1..TotalCompletions. MaxConcurrent defaults to 1 and TotalCompletions to MaxConcurrent,
  as dockerd fills them.
* global job (``Mode.GlobalJob``): one task per ready, active node that satisfies the
  constraints, once per iteration; a node that joins later gets its task too.

A task that fails (or whose node is lost while it runs) is restarted in its slot (on its node)
by the restart supervisor, with its policy's delay. Where swarmkit differs: a slot whose task
failed and may not be restarted (policy none, MaxAttempts used up) is finished here; swarmkit
would create a fresh task for it on its next pass, so the policy would not bound the job. And
slots are numbered from 1, as the shared contract says (swarmkit numbers a job's slots from 0,
and the docker CLI then names the task of slot 0 by its node ID).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from manager.orchestrator.base import Context, Plan, ServiceOrchestrator
from manager.orchestrator.common import (
    COMPLETE,
    REMOVE,
    RUNNING,
    desired,
    invalid_node,
    job_iteration,
    new_task,
    set_desired,
    state,
)
from manager.orchestrator.global_service import (
    GlobalOrchestrator,
    accepts_new_tasks,
    constraints_of,
    satisfies,
)
from manager.orchestrator.replicated import newest, slots_of
from manager.orchestrator.restart import should_restart
from manager.orchestrator.tend import restart_or_release
from manager.state.store.objects import StoredObject

__all__ = ["GlobalJobOrchestrator", "ReplicatedJobOrchestrator", "job_limits", "task_iteration"]


def task_iteration(task: StoredObject) -> int | None:
    """The job iteration a task belongs to (None: not a job's task)."""
    iteration = task.extra.get("JobIteration")
    if not isinstance(iteration, Mapping):
        return None
    index = iteration.get("Index", 0)
    return index if isinstance(index, int) else 0


def job_limits(service: StoredObject) -> tuple[int, int]:
    """(MaxConcurrent, TotalCompletions) of a replicated job, with dockerd's defaults."""
    mode = service.spec.get("Mode") or {}
    job = mode.get("ReplicatedJob") if isinstance(mode, Mapping) else None
    job = job if isinstance(job, Mapping) else {}
    concurrent = job.get("MaxConcurrent")
    concurrent = concurrent if isinstance(concurrent, int) and concurrent > 0 else 1
    total = job.get("TotalCompletions")
    total = total if isinstance(total, int) and total >= 0 else concurrent
    return concurrent, total


def _retire_old(service: StoredObject, tasks: Sequence[StoredObject], plan: Plan) -> list[StoredObject]:
    """Remove the still-running tasks of older iterations; returns this iteration's tasks."""
    iteration = job_iteration(service)
    current = []
    for task in tasks:
        if task_iteration(task) == iteration:
            current.append(task)
        elif state(task) <= RUNNING and desired(task) < REMOVE:
            plan.add(set_desired(task, "remove"))
    return current


def _tend(
    ctx: Context,
    service: StoredObject,
    task: StoredObject,
    group: Sequence[StoredObject],
    plan: Plan,
) -> float | None:
    """One active task of a job: restart it if it failed or lost its node, release it if held."""
    node_id = task.extra.get("NodeID")
    node = ctx.node(node_id)
    lost = bool(node_id) and invalid_node(node) and state(task) <= RUNNING
    return restart_or_release(ctx, plan, task, service, group, node,
                              restart_now=state(task) > COMPLETE or lost)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _finished(task_group: Sequence[StoredObject], ctx: Context) -> bool:
    """A slot (or node) with no active task is done if one completed, or if its last may not restart."""
    if any(t.status.get("State") == "complete" for t in task_group):
        return True
    last = newest(task_group)
    return last.extra.get("DesiredState") != "remove" and not should_restart(
        last, task_group, ctx.now, ctx.default_delay
    )


class ReplicatedJobOrchestrator(ServiceOrchestrator):
    """Runs TotalCompletions tasks of each replicated job to completion, MaxConcurrent at a time."""

    name = "orchestrator-replicated-job"
    modes = frozenset({"ReplicatedJob"})

    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """One replicated job: retire old iterations, tend active tasks, start more if allowed."""
        concurrent, total = job_limits(service)
        current = _retire_old(service, tasks, plan)
        active = complete = 0
        used: set[int] = set()
        wake: float | None = None
        for slot, group in slots_of(current).items():
            live = [t for t in group if desired(t) <= COMPLETE and t.status.get("State") != "complete"]
            if not live:
                if _finished(group, ctx):
                    used.add(slot)
                    complete += 1
                continue
            used.add(slot)
            active += 1
            for task in live:
                wake = _earliest(wake, _tend(ctx, service, task, group, plan))
        room = min(concurrent - active, total - complete - active)
        slot = 0
        while room > 0 and slot < total:
            slot += 1
            if slot in used:
                continue
            created = new_task(
                service, task_id=ctx.new_id(), now=ctx.now, slot=slot, desired_state="complete",
                iteration=job_iteration(service),
            )  # fmt: skip
            if not plan.add(created):
                break
            room -= 1
        return wake


class GlobalJobOrchestrator(GlobalOrchestrator):
    """Runs one task of each global job to completion on every eligible node, once per iteration."""

    name = "orchestrator-global-job"
    modes = frozenset({"GlobalJob"})

    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """One global job: retire old iterations, tend active tasks, cover nodes without one."""
        constraints = constraints_of(service)
        nodes = ctx.nodes()
        current = _retire_old(service, tasks, plan)
        by_node: dict[str, list[StoredObject]] = {}
        for task in current:
            by_node.setdefault(str(task.extra.get("NodeID") or ""), []).append(task)
        wake: float | None = None
        covered: set[str] = set()
        for node_id in sorted(by_node):
            group = by_node[node_id]
            covered.add(node_id)
            node = nodes.get(node_id)
            live = [t for t in group if desired(t) <= COMPLETE and t.status.get("State") != "complete"]
            if node is None or invalid_node(node) or not satisfies(node, constraints):
                ops = [set_desired(t, "shutdown") for t in live if state(t) <= RUNNING]
                if ops:
                    plan.add(*ops)
                continue
            for task in live:
                wake = _earliest(wake, _tend(ctx, service, task, group, plan))
        for node_id, node in sorted(nodes.items()):
            if node_id in covered or not accepts_new_tasks(node) or not satisfies(node, constraints):
                continue
            created = new_task(
                service, task_id=ctx.new_id(), now=ctx.now, node_id=node_id, desired_state="complete",
                iteration=job_iteration(service),
            )  # fmt: skip
            if not plan.add(created):
                break
        return wake
