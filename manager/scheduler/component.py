"""The scheduler component: pending tasks placed on nodes, on every change that may let them fit.

It wraps the pure core (:func:`manager.scheduler.schedule` and
:func:`manager.scheduler.decision_ops`) in the component template. What it reconciles:

* a task that became pending (the allocator moved it) is placed in the next pass;
* any change to nodes or services, and any task change that frees room on a node (a task
  stopped, was removed or is no longer wanted), retries *every* pending task: a node that became
  ready, a label added, a reservation freed may let a stuck task fit, as swarmkit's scheduler
  retries its unassigned tasks on each tick.

The component keeps the IDs of the pending tasks it knows (filled from the store when it starts
leading), so a retry does not read every task to find them. A task that still fits nowhere
costs no Raft write: ``decision_ops`` writes nothing when its Message and Err are unchanged.
A pass places at most ``max_tasks`` tasks (slot order within services, services in ID order),
so one Raft entry stays small; the rest follow in a pass at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.scheduler.ops import decision_ops
from manager.scheduler.scheduler import schedulable, schedule
from manager.state.store.objects import TASK_STATES, StoredObject, format_timestamp
from manager.state.store.watch import Change

__all__ = ["MAX_TASKS_PER_PASS", "SchedulerComponent"]

MAX_TASKS_PER_PASS = 1000
"""The most tasks one pass decides on (and so the most updates in one Raft entry)."""

_RUNNING = TASK_STATES.index("running")
_STATE: dict[object, int] = {name: i for i, name in enumerate(TASK_STATES)}
_RETRY = ("scheduler", "retry")  # the dirty key that asks for every pending task to be retried


def _frees_room(change: Change) -> bool:
    """Did this task change free resources, ports or a replica count on its node?"""
    task = change.object
    if change.action == "remove":
        return True
    return (
        _STATE.get(task.status.get("State"), 0) > _RUNNING
        or _STATE.get(task.extra.get("DesiredState"), 0) > _STATE["complete"]
    )


class SchedulerComponent(Component):
    """Assigns pending tasks to nodes through the pure scheduler."""

    name = "scheduler"
    kinds = frozenset({"task", "node", "service"})

    def __init__(self, *, max_tasks: int = MAX_TASKS_PER_PASS) -> None:
        """``max_tasks``: the most tasks one pass decides on."""
        super().__init__()
        self.max_tasks = max_tasks
        self.pending: set[str] = set()  # IDs of tasks last seen pending (and schedulable)
        self.backlog: set[str] = set()  # pending tasks a pass left for the next one

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """A task: itself (and a retry if it freed room); a node or service: a retry."""
        if change.kind != "task":
            return (_RETRY,)
        keys: list[DirtyKey] = [("task", change.object.id)]
        if _frees_room(change):
            keys.append(_RETRY)
        return keys

    def start(self, view: StoreView, now: float) -> None:
        """A new leader: learn every pending task from the store."""
        self.pending = {t.id for t in view.find("task") if schedulable(t)}
        self.backlog.clear()

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Place the dirty pending tasks (all known pending tasks on a retry), in one batch."""
        candidates: set[str] = set(self.backlog)
        retry = _RETRY in dirty
        for kind, key in dirty:
            if kind == "task":
                candidates.add(key)
        if retry:
            candidates |= self.pending
        todo: list[StoredObject] = []
        for task_id in candidates:
            task = view.maybe("task", task_id)
            if task is not None and schedulable(task):
                self.pending.add(task_id)
                todo.append(task)
            else:
                self.pending.discard(task_id)
        if not todo:
            self.backlog = set()
            return Reconciled([], None)
        todo.sort(key=_order)
        batch, rest = todo[: self.max_tasks], todo[self.max_tasks :]
        self.backlog = {t.id for t in rest}
        decisions = schedule(view, batch)
        ops = decision_ops(batch, decisions, format_timestamp(now))
        return Reconciled(ops, now if rest else None)


def _order(task: StoredObject) -> tuple[str, int, str]:
    slot = task.extra.get("Slot")
    return (str(task.extra.get("ServiceID") or ""), slot if isinstance(slot, int) else 0, task.id)
