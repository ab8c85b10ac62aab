"""The global orchestrator: one task of each global service on every eligible node.

swarmkit's ``global`` orchestrator, per service, in one pure pass over the nodes:

* a node that is Down, drained, or no longer satisfies the service's placement constraints
  (its labels changed, say) has its tasks of the service shut down, not replaced;
* a node removed from the swarm (`docker node rm`) has its tasks of the service deleted, as
  swarmkit's global orchestrator does on the node's deletion: nothing will ever hear from them
  again, and ``docker service ls`` stops counting the last state they reported;
* a paused node keeps the tasks it has but gets no new one (and a task that stops there is not
  restarted);
* a node that is ready and active and satisfies the constraints gets a task if it has none
  (created with NodeID set: the scheduler only confirms that it fits);
* a task that stopped on a valid node is restarted on that node by the restart supervisor,
  with its delay; a node with more than one task meant to run keeps the furthest along.

Nodes joining, leaving, draining or changing labels are node changes, and every node change
makes every global service dirty, so the service follows its nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manager.component.base import StoreView
from manager.orchestrator.base import Context, Plan, ServiceOrchestrator
from manager.orchestrator.common import (
    RUNNING,
    desired,
    invalid_node,
    new_task,
    parse_timestamp,
    service_mode,
    set_desired,
    state,
)
from manager.orchestrator.restart import should_restart
from manager.orchestrator.tend import restart_or_release
from manager.scheduler.constraint import Constraint, ConstraintError, node_matches, parse_constraints
from manager.state.store.commands import Delete
from manager.state.store.objects import StoredObject

__all__ = ["GlobalOrchestrator", "constraints_of", "node_api", "satisfies"]


def constraints_of(service: StoredObject) -> list[Constraint]:
    """The service's placement constraints; ones that do not parse constrain nothing (swarmkit)."""
    template = service.spec.get("TaskTemplate") or {}
    placement = template.get("Placement") or {}
    try:
        return parse_constraints(placement.get("Constraints") or ())
    except ConstraintError:
        return []


def node_api(node: StoredObject) -> dict[str, Any]:
    """The Engine API shape the constraint matcher reads (references, not copies)."""
    return {
        "ID": node.id,
        "Spec": node.spec,
        "Description": node.extra.get("Description") or {},
        "Status": node.status,
    }


def satisfies(node: StoredObject, constraints: Sequence[Constraint]) -> bool:
    """Whether the node meets every constraint."""
    return not constraints or node_matches(constraints, node_api(node))


def accepts_new_tasks(node: StoredObject) -> bool:
    """A node a global service puts a new task on: ready and active."""
    return node.status.get("State") == "ready" and node.spec.get("Availability", "active") == "active"


class GlobalOrchestrator(ServiceOrchestrator):
    """Keeps one task of every global service on every eligible node."""

    name = "orchestrator-global"
    modes = frozenset({"Global"})

    def services_for_node(self, view: StoreView, node_id: str) -> set[str]:
        """Any node change may concern every service of this orchestrator's modes."""
        return {s.id for s in view.find("service") if service_mode(s) in self.modes}

    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """One global service: shut down where it may not run, restart, fill eligible nodes."""
        constraints = constraints_of(service)
        nodes = ctx.nodes()
        by_node: dict[str, list[StoredObject]] = {}
        for task in tasks:
            by_node.setdefault(str(task.extra.get("NodeID") or ""), []).append(task)
        occupied: set[str] = set()
        wake: float | None = None
        for node_id in sorted(by_node):
            node_tasks = by_node[node_id]
            node = nodes.get(node_id)
            live = [t for t in node_tasks if desired(t) <= RUNNING]
            if node is None and node_id:
                gone = [Delete("task", t.id, t.version) for t in node_tasks]
                if not plan.add(*gone):
                    return wake
                continue
            if node is None or invalid_node(node) or not satisfies(node, constraints):
                ops = [set_desired(t, "shutdown") for t in live]
                if ops and not plan.add(*ops):
                    return wake
                continue
            if not live:
                last = max(node_tasks, key=lambda t: (parse_timestamp(t.status.get("Timestamp")), t.id))
                if last.extra.get("DesiredState") != "remove" and not should_restart(
                    last, node_tasks, ctx.now, ctx.default_delay
                ):
                    occupied.add(node_id)
                continue
            when = self._keep_node(ctx, service, node, live, node_tasks, plan)
            occupied.add(node_id)
            if when is not None:
                wake = when if wake is None else min(wake, when)
        for node_id, node in sorted(nodes.items()):
            if node_id in occupied or not accepts_new_tasks(node) or not satisfies(node, constraints):
                continue
            if not plan.add(new_task(service, task_id=ctx.new_id(), now=ctx.now, node_id=node_id)):
                break
        return wake

    def _keep_node(
        self,
        ctx: Context,
        service: StoredObject,
        node: StoredObject,
        live: Sequence[StoredObject],
        node_tasks: Sequence[StoredObject],
        plan: Plan,
    ) -> float | None:
        """The node keeps one task: restart it if it stopped, release it if held, drop extras."""
        # During an update (start-first) a node has its old task and the new one: the old ones
        # are the update supervisor's to shut down, so only tasks of one Spec compete here.
        template = service.spec.get("TaskTemplate") or {}
        fresh = [t for t in live if t.spec == template]
        keep = max(fresh or live, key=lambda t: (state(t) <= RUNNING, state(t), t.created_at, t.id))
        for extra in fresh or live:
            if extra.id != keep.id:
                plan.add(set_desired(extra, "shutdown"))
        if state(keep) > RUNNING and node.spec.get("Availability") == "pause":
            plan.add(set_desired(keep, "shutdown"))
            return None
        return restart_or_release(ctx, plan, keep, service, node_tasks, node,
                                  restart_now=state(keep) > RUNNING)
