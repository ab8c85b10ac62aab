"""What the replicated, global and job orchestrators share: a component that reconciles services.

Each orchestrator owns some service modes and decides per service, in a pure
``reconcile_service(ctx, service, tasks, plan)``. This base turns the component template's dirty
keys into the services to look at:

* a service changed: that service;
* a task changed in a way an orchestrator cares about (created, removed, stopped, or held for a
  restart delay): its service. The scheduler's and the agents' progress reports (pending,
  assigned, ... running) change nothing here, so they cost no pass;
* a node changed: the services with tasks on it (:meth:`ServiceOrchestrator.services_for_node`;
  the global orchestrators: every service of their modes, since any node may need a task).

Restart delays are wake-up times per service (no sleeping): a service whose time has come is
looked at again even when nothing changed. A pass writes at most ``max_ops`` operations (one Raft
entry stays small); services left over are carried to a pass that follows at once.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.orchestrator.common import RUNNING, IdSource, invalid_node, service_mode, state
from manager.state.store.commands import Op
from manager.state.store.objects import StoredObject
from manager.state.store.watch import Change
from nodeagent.identity import new_id

__all__ = ["MAX_OPS_PER_PASS", "Context", "Plan", "ServiceOrchestrator"]

MAX_OPS_PER_PASS = 1000
"""The most store operations one pass writes (one Raft entry): 1,000 new tasks are about 1 MB."""


class Plan:
    """The ops of one pass, in groups that are written together or not at all."""

    __slots__ = ("budget", "ops", "truncated")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.ops: list[Op] = []
        self.truncated = False  # a service stopped short for want of room

    def room(self) -> int:
        """How many more operations this pass may write."""
        return max(0, self.budget - len(self.ops))

    def add(self, *ops: Op) -> bool:
        """Add a group; False (and nothing added, the service marked unfinished) if it does not fit.

        The first group of a pass always fits, so a pass never writes nothing for want of room.
        """
        if self.ops and len(ops) > self.room():
            self.truncated = True
            return False
        self.ops.extend(ops)
        return True


class Context:
    """What one pass reads besides a service and its tasks: nodes, the time, where IDs come from."""

    __slots__ = ("_lost", "_nodes", "default_delay", "new_id", "now", "view")

    def __init__(self, view: StoreView, now: float, new_id: IdSource, default_delay: float) -> None:
        self.view = view
        self.now = now
        self.new_id = new_id
        self.default_delay = default_delay
        self._nodes: dict[str, StoredObject] | None = None
        self._lost: dict[str, bool] = {}

    def nodes(self) -> dict[str, StoredObject]:
        """Every node by ID (read once per pass)."""
        if self._nodes is None:
            self._nodes = {n.id: n for n in self.view.find("node")}
        return self._nodes

    def lost(self, node_id: str) -> bool:
        """Whether a task on this node must be replaced (gone, Down or drained); asked once per node."""
        found = self._lost.get(node_id)
        if found is None:
            found = self._lost[node_id] = invalid_node(self.nodes().get(node_id))
        return found

    def node(self, node_id: Any) -> StoredObject | None:
        """The node with this ID, or None (no ID, or the node is gone)."""
        if not node_id:
            return None
        if self._nodes is not None:
            return self._nodes.get(str(node_id))
        return self.view.maybe("node", str(node_id))


class ServiceOrchestrator(Component):
    """A component that reconciles the services of some modes, one service at a time."""

    kinds = frozenset({"service", "task", "node"})
    modes: ClassVar[frozenset[str]] = frozenset()
    """The service modes (Replicated, Global, ReplicatedJob, GlobalJob) this orchestrator owns."""

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        default_delay: float | None = None,
        max_ops: int = MAX_OPS_PER_PASS,
    ) -> None:
        """``rng``: where new task IDs come from (seeded in the simulator; the OS's otherwise);
        ``default_delay``: the restart delay when a task's RestartPolicy states none (seconds;
        None: swarmkit's 5 s); ``max_ops``: the most operations one pass writes."""
        super().__init__()
        from manager.orchestrator.restart import DEFAULT_DELAY

        self._rng = rng
        self.default_delay = DEFAULT_DELAY if default_delay is None else default_delay
        self.max_ops = max_ops
        self.wakeups: dict[str, float] = {}  # service ID -> when a held task may start
        self.carry: set[str] = set()  # services a full pass left unfinished

    def new_id(self) -> str:
        """A new task ID."""
        return new_id(self._rng)

    # ---- dirty keys ------------------------------------------------------------------------------

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """Services to look at for one committed change (see the module docstring)."""
        obj = change.object
        if change.kind == "task":
            if change.action != "update" or _task_matters(obj):
                return (("service", str(obj.extra.get("ServiceID") or "")),)
            return ()
        return ((change.kind, obj.id),)

    def services_for_node(self, view: StoreView, node_id: str) -> set[str]:
        """The services a change of this node may concern: those with tasks on it."""
        return {str(t.extra.get("ServiceID") or "") for t in view.find("task", node_id=node_id)}

    def start(self, view: StoreView, now: float) -> None:
        """A new leader starts afresh: every service is dirty (the harness marks it so)."""
        self.wakeups.clear()
        self.carry.clear()

    # ---- the pass --------------------------------------------------------------------------------

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Reconcile every service a dirty key names, every carried one and every one due."""
        todo = set(self.carry)
        for kind, key in dirty:
            if kind == "service":
                todo.add(key)
            elif kind == "node":
                todo |= self.services_for_node(view, key)
            elif kind == "task":  # a new leader marks every object dirty by its own key
                task = view.maybe("task", key)
                if task is not None and _task_matters(task):
                    todo.add(str(task.extra.get("ServiceID") or ""))
        todo |= {sid for sid, when in self.wakeups.items() if when <= now}
        todo.discard("")
        ctx = Context(view, now, self.new_id, self.default_delay)
        plan = Plan(self.max_ops)
        leftover: set[str] = set()
        for service_id in sorted(todo):
            if plan.room() == 0:
                leftover.add(service_id)
                continue
            service = view.maybe("service", service_id)
            if service is None or service_mode(service) not in self.modes:
                self.wakeups.pop(service_id, None)
                continue
            tasks = view.find("task", service_id=service_id)
            wake = self.reconcile_service(ctx, service, tasks, plan)
            if plan.truncated:
                leftover.add(service_id)
                plan.truncated = False
            if wake is None:
                self.wakeups.pop(service_id, None)
            else:
                self.wakeups[service_id] = wake
        self.carry = leftover
        if leftover:
            return Reconciled(plan.ops, now)
        return Reconciled(plan.ops, min(self.wakeups.values(), default=None))

    @abc.abstractmethod
    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """Add the ops one service needs to ``plan``; return when to look at it again (None: on change)."""


def _task_matters(task: StoredObject) -> bool:
    """Does this task's state call for an orchestrator? Stopped, or held for a restart delay."""
    return state(task) > RUNNING or task.extra.get("DesiredState") == "ready"
