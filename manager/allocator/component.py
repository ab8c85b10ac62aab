"""The allocator component: a new task becomes pending, ready for the scheduler.

swarmkit's allocator allocates a task's network attachments (and a service's VIPs and
published ports), then moves the task from ``new`` to ``pending`` with the message
"pending task scheduling". Here a service's VIPs and ports are allocated by the Engine API when
the service is written (manager/engineapi/networks.py); this component gives each new task an
address on each of its networks (``NetworksAttachments``, from the pure IPAM in
:mod:`manager.allocator.networks`, its state rebuilt from the store so a new leader recovers it)
and a copy of its service's ``Endpoint``, as swarmkit does, in the same write that makes it
pending. A new task that is no longer wanted (its DesiredState is past complete) is left new:
it will never run, and the task reaper deletes it.

A task held for its restart delay (DesiredState ``ready``) is allocated only once the
orchestrator releases it (DesiredState ``running``/``complete``). swarmkit allocates and places
it at once and its agent prepares it but waits to start it; swarmlet's agent starts whatever it
is assigned, so the hold happens here, before the task can reach a node, and the restart delay
is really waited. The replacement is therefore placed when its delay is over, not before.
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.allocator.ipam import AllocationState
from manager.allocator.networks import allocate_task_in_view, state_from_view
from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.state.store.commands import Op, Update
from manager.state.store.objects import TASK_STATES, format_timestamp
from manager.state.store.watch import Change

__all__ = ["ALLOCATED_MESSAGE", "MAX_OPS_PER_PASS", "Allocator"]

ALLOCATED_MESSAGE = "pending task scheduling"
"""Status.Message of an allocated task (swarmkit's allocatedStatusMessage)."""

MAX_OPS_PER_PASS = 1000
"""Tasks moved per pass at most (one Raft entry stays small); the rest follow at once."""

_COMPLETE = TASK_STATES.index("complete")
_WANTED = {name for name in TASK_STATES if TASK_STATES.index(name) <= _COMPLETE}


class Allocator(Component):
    """Moves new tasks to pending."""

    name = "allocator"
    kinds = frozenset({"task"})

    def __init__(self, *, max_ops: int = MAX_OPS_PER_PASS) -> None:
        """``max_ops``: the most tasks one pass moves."""
        super().__init__()
        self.max_ops = max_ops
        self.carry: set[DirtyKey] = set()

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """Only a task that is new concerns the allocator."""
        if change.kind == "task" and change.object.status.get("State") == "new":
            return (("task", change.object.id),)
        return ()

    def start(self, view: StoreView, now: float) -> None:
        """A new leader: the harness marks every task dirty; nothing is carried over."""
        self.carry.clear()

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Each dirty task still new and wanted: to pending, in ID order."""
        timestamp = format_timestamp(now)
        ops: list[Op] = []
        leftover: set[DirtyKey] = set()
        addresses: AllocationState | None = None  # read from the store once, if a task needs it
        for key in sorted(dirty | self.carry):
            kind, task_id = key
            if kind != "task":
                continue
            if len(ops) >= self.max_ops:
                leftover.add(key)
                continue
            task = view.maybe("task", task_id)
            if task is None or task.status.get("State") != "new":
                continue
            if task.extra.get("DesiredState", "running") not in _WANTED:
                continue
            if task.extra.get("DesiredState") == "ready":
                continue  # held for its restart delay: allocated once released
            status = {**task.status, "State": "pending", "Timestamp": timestamp, "Message": ALLOCATED_MESSAGE}
            status.pop("Err", None)
            extra = dict(task.extra)
            service_id = task.extra.get("ServiceID")
            service = view.maybe("service", service_id) if isinstance(service_id, str) else None
            if service is not None and service.extra.get("Endpoint"):
                extra["Endpoint"] = service.extra["Endpoint"]
            if task.spec.get("Networks") or (service is not None and service.extra.get("Endpoint")):
                if addresses is None:
                    addresses = state_from_view(view)
                attached = allocate_task_in_view(view, task, addresses)
                if attached:
                    extra["NetworksAttachments"] = attached
            ops.append(Update("task", task.id, task.version, status=status,
                              extra=extra if extra != task.extra else None))
        self.carry = leftover
        return Reconciled(ops, now if leftover else None)
