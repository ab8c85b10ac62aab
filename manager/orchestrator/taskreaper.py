"""The task reaper: deletes the task history Swarm does not keep.

swarmkit's ``taskreaper``, as a component:

* per slot (a global service's: per node), at most ``TaskHistoryRetentionLimit`` tasks are kept
  (the Cluster object's ``Spec.Orchestration``; 5, Swarm's default, while there is no Cluster
  object). A service whose RestartPolicy sets MaxAttempts keeps MaxAttempts + 1, so the restart
  supervisor can still count its restarts. The oldest go first (by Status.Timestamp), and only
  tasks that stopped (state past running) or will never run (never assigned and no longer
  wanted); a task that runs is never reaped. A negative limit keeps everything;
* a task whose DesiredState is ``remove`` (a scale down, an older job iteration) is deleted once
  it has stopped or was never assigned;
* a task whose service is gone is deleted once it has stopped or was never assigned; while it
  may still run, its DesiredState becomes ``remove`` so its agent stops it first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.orchestrator.common import (
    ASSIGNED,
    COMPLETE,
    REMOVE,
    RUNNING,
    desired,
    parse_timestamp,
    service_mode,
)
from manager.orchestrator.common import set_desired as _set_desired
from manager.orchestrator.common import state as _state
from manager.state.store.commands import Delete, Op
from manager.state.store.objects import StoredObject
from manager.state.store.watch import Change

__all__ = ["DEFAULT_RETENTION", "TaskReaper", "retention_limit"]

DEFAULT_RETENTION = 5
"""Tasks kept per slot when the Cluster object says nothing (Swarm's TaskHistoryRetentionLimit)."""

_ALL = ("cluster", "*")


def retention_limit(cluster: StoredObject | None, service: StoredObject) -> int:
    """How many tasks of one slot of ``service`` are kept (negative: all of them)."""
    limit = DEFAULT_RETENTION
    if cluster is not None:
        orchestration = cluster.spec.get("Orchestration")
        value = orchestration.get("TaskHistoryRetentionLimit") if isinstance(orchestration, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool):
            limit = value
    template = service.spec.get("TaskTemplate") or {}
    policy = template.get("RestartPolicy") if isinstance(template, Mapping) else None
    attempts = policy.get("MaxAttempts") if isinstance(policy, Mapping) else None
    if isinstance(attempts, int) and attempts > 0:
        limit = attempts + 1
    return limit


def _stopped_or_never_ran(task: StoredObject) -> bool:
    """swarmkit's test for a removable task: never assigned, or finished (complete and after)."""
    current = _state(task)
    return current < ASSIGNED or current >= COMPLETE


def _reapable(task: StoredObject) -> bool:
    """History a slot may lose: stopped, or never to run (unassigned and no longer wanted)."""
    current = _state(task)
    return current > RUNNING or (current < ASSIGNED and desired(task) > RUNNING)


class TaskReaper(Component):
    """Deletes task history beyond the retention limit, removed tasks, and removed services' tasks."""

    name = "task-reaper"
    kinds = frozenset({"task", "service", "cluster"})

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """A task or service change: its service; a cluster change: every service.

        Only task changes that can make history reapable count: a new task (its slot grew), a
        task that stopped, or one no longer wanted. Progress reports up to running cost nothing.
        """
        if change.kind == "task":
            task = change.object
            if change.action == "create" or _state(task) > RUNNING or desired(task) > RUNNING:
                return (("service", str(task.extra.get("ServiceID") or "")),)
            return ()
        if change.kind == "service":
            return (("service", change.object.id),)
        return (_ALL,)

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Reap, per dirty service, what the module docstring says."""
        services: set[str] = set()
        for kind, key in dirty:
            if (kind, key) == _ALL:
                services |= {s.id for s in view.find("service")}
            elif kind == "service" and key:
                services.add(key)
            elif kind == "task":  # a new leader marks every object dirty by its own key
                task = view.maybe("task", key)
                if task is not None and task.extra.get("ServiceID"):
                    services.add(str(task.extra["ServiceID"]))
        cluster = view.cluster()
        ops: list[Op] = []
        for service_id in sorted(services):
            tasks = view.find("task", service_id=service_id)
            service = view.maybe("service", service_id)
            if service is None:
                ops.extend(_orphans(tasks))
            else:
                ops.extend(_reap_service(service, tasks, retention_limit(cluster, service)))
        return Reconciled(ops, None)


def _orphans(tasks: Sequence[StoredObject]) -> list[Op]:
    """The tasks of a removed service: deleted once stopped, asked to stop before that."""
    ops: list[Op] = []
    for task in tasks:
        if _stopped_or_never_ran(task):
            ops.append(Delete("task", task.id, task.version))
        elif desired(task) < REMOVE:
            ops.append(_set_desired(task, "remove"))
    return ops


def _reap_service(service: StoredObject, tasks: Sequence[StoredObject], limit: int) -> list[Op]:
    deleted: set[str] = set()
    ops: list[Op] = []
    for task in tasks:
        if task.extra.get("DesiredState") == "remove" and _stopped_or_never_ran(task):
            deleted.add(task.id)
            ops.append(Delete("task", task.id, task.version))
    if limit < 0:
        return ops
    by_node = service_mode(service) in ("Global", "GlobalJob")
    field = "NodeID" if by_node else "Slot"
    sizes = Counter(task.extra.get(field) for task in tasks if task.id not in deleted)
    over = {key for key, size in sizes.items() if size > limit}
    if not over:
        return ops  # the common case, one counting pass: no slot holds too much history
    groups: dict[object, list[StoredObject]] = {}
    for task in tasks:
        key = task.extra.get(field)
        if key in over and task.id not in deleted:
            groups.setdefault(key, []).append(task)
    for key in sorted(groups, key=str):
        group = groups[key]
        excess = len(group) - limit
        if excess <= 0:
            continue
        oldest_first = sorted(group, key=lambda t: (parse_timestamp(t.status.get("Timestamp")), t.id))
        for task in oldest_first:
            if excess <= 0:
                break
            if _reapable(task):
                ops.append(Delete("task", task.id, task.version))
                excess -= 1
    return ops
