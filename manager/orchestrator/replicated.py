"""The replicated orchestrator: slots 1..Replicas, each with one task meant to run.

swarmkit's ``replicated`` orchestrator, per service, in one pure pass:

1. The slots. A slot is *occupied* when one of its tasks is meant to run (DesiredState at most
   running), or when its newest task stopped and must not be restarted (RestartPolicy none,
   on-failure after a clean exit, MaxAttempts used up): Swarm leaves such a slot alone. A slot
   whose newest task is being removed (scale down) is free.
2. Scale down: when more slots are occupied than Replicas asks, the extra slots' tasks get
   DesiredState ``remove`` (the agent stops them, the task reaper deletes them). Which slots go
   is swarmkit's rule: slots with a running task are kept first (then lower slot numbers), and
   each task counts as the n-th copy of the service on its node; the highest counts go first,
   so the nodes with the most tasks of the service lose them first. Slots with several tasks
   or none on a node go before any of those. The sort is stable (swarmkit's is not), so the
   same state gives the same choice.
3. Restarts in the kept slots: a task meant to run that stopped (complete, failed, rejected,
   shut down) or whose node is gone, Down or drained is shut down and replaced by the restart
   supervisor (``manager.orchestrator.restart``): the new task takes the same slot and is
   scheduled elsewhere if the node is lost. A held replacement starts when its delay is over.
4. Scale up: each missing slot (the lowest free numbers) gets a new task.

Tasks whose spec is older than the service's are left to the update supervisor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from manager.orchestrator.base import Context, Plan, ServiceOrchestrator
from manager.orchestrator.common import (
    RUNNING,
    desired,
    new_task,
    parse_timestamp,
    set_desired,
    state,
)
from manager.orchestrator.restart import should_restart
from manager.orchestrator.tend import restart_or_release
from manager.state.store.objects import StoredObject

__all__ = ["ReplicatedOrchestrator", "replicas_of", "scale_down_order", "slots_of"]


def replicas_of(service: StoredObject) -> int:
    """Mode.Replicated.Replicas (1 when absent, as the Engine API fills it)."""
    mode = service.spec.get("Mode")
    replicated = mode.get("Replicated") if isinstance(mode, Mapping) else None
    replicas = replicated.get("Replicas") if isinstance(replicated, Mapping) else None
    return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1


def slots_of(tasks: Sequence[StoredObject]) -> dict[int, list[StoredObject]]:
    """Tasks by Slot, in slot order."""
    slots: dict[int, list[StoredObject]] = {}
    for task in tasks:
        slot = task.extra.get("Slot")
        slots.setdefault(slot if isinstance(slot, int) else 0, []).append(task)
    return dict(sorted(slots.items()))


def newest(tasks: Sequence[StoredObject]) -> StoredObject:
    """The task whose Status is the most recent (swarmkit's TasksByTimestamp), ties by ID."""
    return max(tasks, key=lambda t: (parse_timestamp(t.status.get("Timestamp")), t.id))


def scale_down_order(slots: Mapping[int, Sequence[StoredObject]]) -> list[int]:
    """Occupied slots, the ones to keep first (see the module docstring, point 2)."""

    def running_first(slot: int) -> tuple[bool, int]:
        return (not any(t.status.get("State") == "running" for t in slots[slot]), slot)

    per_node: dict[str, int] = {}
    ranked: list[tuple[int, int]] = []  # (index, slot); index -1 sorts last
    for slot in sorted(slots, key=running_first):
        tasks = slots[slot]
        node_id = tasks[0].extra.get("NodeID") if len(tasks) == 1 else ""
        if node_id:
            per_node[str(node_id)] = per_node.get(str(node_id), 0) + 1
            ranked.append((per_node[str(node_id)], slot))
        else:
            ranked.append((-1, slot))
    ranked.sort(key=lambda entry: (entry[0] < 0, entry[0]))  # stable: ties keep running_first order
    return [slot for _, slot in ranked]


class ReplicatedOrchestrator(ServiceOrchestrator):
    """Keeps Replicas tasks of every replicated service running."""

    name = "orchestrator-replicated"
    modes = frozenset({"Replicated"})

    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """One replicated service: scale, restart, start held tasks, fill missing slots."""
        # One tight loop over the service's tasks (a pass may see 10,000 of them): slots, the
        # live tasks of each, and the slots that need a closer look.
        slots: dict[int, list[StoredObject]] = {}
        occupied: dict[int, list[StoredObject]] = {}
        attention: set[int] = set()
        lost = ctx.lost
        for task in tasks:
            extra = task.extra
            slot = extra.get("Slot")
            slot = slot if isinstance(slot, int) else 0
            slots.setdefault(slot, []).append(task)
            wanted = extra.get("DesiredState", "running")
            if wanted != "running" and wanted != "ready":
                continue
            occupied.setdefault(slot, []).append(task)
            node_id = extra.get("NodeID")
            if wanted == "ready" or state(task) > RUNNING or (node_id and lost(str(node_id))):
                attention.add(slot)
        for slot, slot_tasks in slots.items():
            if slot in occupied:
                continue
            last = newest(slot_tasks)
            if last.extra.get("DesiredState") != "remove" and not should_restart(
                last, slot_tasks, ctx.now, ctx.default_delay
            ):
                occupied[slot] = [last]
        replicas = replicas_of(service)
        keep = list(occupied)
        if len(occupied) > replicas:
            order = scale_down_order(occupied)
            keep = order[:replicas]
            for slot in order[replicas:]:
                ops = [
                    set_desired(t, "remove")
                    for t in occupied[slot]
                    if t.extra.get("DesiredState") != "remove"
                ]
                if ops and not plan.add(*ops):
                    return None
        wake: float | None = None
        for slot in sorted(attention.intersection(keep)):
            when = self._keep_slot(ctx, service, occupied[slot], slots[slot], plan)
            if when is not None:
                wake = when if wake is None else min(wake, when)
        missing = replicas - len(keep)
        slot = 0
        taken = set(keep)
        while missing > 0:
            slot += 1
            if slot in taken:
                continue
            if not plan.add(new_task(service, task_id=ctx.new_id(), now=ctx.now, slot=slot)):
                break
            missing -= 1
        return wake

    def _keep_slot(
        self,
        ctx: Context,
        service: StoredObject,
        live: Sequence[StoredObject],
        slot_tasks: Sequence[StoredObject],
        plan: Plan,
    ) -> float | None:
        """Restart what stopped or lost its node; start a held task whose time has come."""
        wake: float | None = None
        for task in live:
            if desired(task) > RUNNING:
                continue  # an occupied slot whose stopped task is not to be restarted
            node_id = task.extra.get("NodeID")
            node = ctx.node(node_id)
            lost = bool(node_id) and ctx.lost(str(node_id))
            when = restart_or_release(ctx, plan, task, service, slot_tasks, node,
                                      restart_now=state(task) > RUNNING or lost)
            if when is not None:
                wake = when if wake is None else min(wake, when)
        return wake
