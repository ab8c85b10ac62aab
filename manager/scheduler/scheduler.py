"""The scheduler's pure core: place a batch of pending tasks on nodes, or say why not.

``schedule(cluster, pending)`` reads nodes, tasks and services (a :class:`Cluster`, or any view
with ``find(kind)`` such as the component template's ``StoreView``) and returns decisions, not
store writes: ``assignments`` (task ID -> node ID) and ``still_pending`` (task ID -> the
Status.Message and Status.Err to show). A reconcile turns them into one batch of updates
(:func:`manager.scheduler.ops.decision_ops`). No clock, no randomness, no I/O: the same input
gives the same placement on every manager and in every replay.

How a batch is placed, after swarmkit's ``scheduler.go``:

1. Tasks pre-assigned to a node (a global service's: ``NodeID`` set while pending) are checked
   against that node alone; they fit and are confirmed, or stay pending with the pipeline's
   explanation for that one node (no "no suitable node" around it, as swarmkit).
2. The other tasks are grouped by service and spec version: one group asks the same of every
   node, so the filters are set up once per group, not once per task.
3. Within a group, nodes that pass the static filters (ready, constraints, platform) go into a
   min-heap ordered by (tasks of this service, tasks in total, node ID): spread is "the node
   with the fewest tasks of the service, then the fewest tasks"; the ID makes ties
   deterministic. Each task takes the heap's top after checking the filters that change as
   tasks land (resources, host ports, max replicas); a node that fails them is dropped for the
   rest of the group, since placing more of the same tasks can only make it fail harder.
4. Placement preferences (``spread=node.labels.X``) build a tree: one level per preference, one
   branch per label value (nodes without the label form the "" branch), a node heap per leaf.
   A branch counts the service's tasks on *all* its nodes, eligible or not, as swarmkit's
   decision tree does. Each task goes down the branch with the fewest tasks (ties by value), so
   the branches even out first, then the nodes within them; a branch with no room left is
   dropped and the others take its share. That is swarmkit's "make branches even" loop taken
   one task at a time.
5. Every decision updates the node's accounting at once, so later tasks of the batch (and later
   groups) see it.
6. Tasks a group could not place fit on no node, by construction. Each node is charged to the
   first filter it fails in the final state and the counts make the Err:
   ``no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)``.

swarmkit differs in three corners, all on purpose: its explanation counts reset whenever a node
passes and follow Go's random map order (here: every node counted once, deterministically); it
keeps only as many nodes per leaf as there are tasks (here: all of them, so a task left pending
really fits nowhere); and it down-weights nodes where the service failed recently (a wall-clock
rule, left to the shell to pass in later if wanted).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from manager.scheduler.filters import (
    READY,
    Filter,
    enabled_filters,
    explanation,
    first_failure,
    no_suitable_node,
)
from manager.scheduler.nodeinfo import (
    NodeInfo,
    TaskNeeds,
    build_nodes,
    counts_as_active,
    spec_identity,
    spread_value,
    task_needs,
)
from manager.state.store.objects import StoredObject

__all__ = [
    "ASSIGNED_MESSAGE",
    "PENDING_MESSAGE",
    "PREASSIGNED_MESSAGE",
    "Cluster",
    "DecisionHook",
    "Decisions",
    "Pending",
    "ReadView",
    "schedulable",
    "schedule",
]

PENDING_MESSAGE = "pending task scheduling"
ASSIGNED_MESSAGE = "scheduler assigned task to node"
PREASSIGNED_MESSAGE = "scheduler confirmed task can run on preassigned node"

DecisionHook = Callable[[str, str | None], None]
"""Called after each task's decision with (task ID, node ID or None): for benchmarks and traces."""


class Pending(NamedTuple):
    """What a task left pending shows: Status.Message and Status.Err."""

    message: str
    err: str


class Decisions(NamedTuple):
    """The outcome of one batch; unpacks as ``assignments, still_pending``.

    A task in neither map is left as it is: a pre-assigned task whose node is gone, or a
    pending task whose desired state is already past complete (swarmkit skips both).
    """

    assignments: dict[str, str]
    still_pending: dict[str, Pending]


class ReadView(Protocol):
    """What :func:`schedule` needs of a store view (``StoreView`` and ``Store`` have it)."""

    def find(self, kind: str) -> Sequence[StoredObject]:
        """Every object of ``kind``, sorted by ID."""
        ...


@dataclass(frozen=True)
class Cluster:
    """The scheduler's inputs as plain collections: every node, every task, services by ID."""

    nodes: Sequence[StoredObject]
    tasks: Sequence[StoredObject] = ()
    services: Mapping[str, StoredObject] = field(default_factory=dict)

    @classmethod
    def from_view(cls, view: ReadView) -> Cluster:
        """Read nodes, tasks and services from a store view."""
        return cls(
            nodes=view.find("node"),
            tasks=view.find("task"),
            services={s.id: s for s in view.find("service")},
        )


def schedulable(task: StoredObject) -> bool:
    """Is this a task the scheduler should place: pending, and still meant to run or complete?"""
    if task.status.get("State") != "pending":
        return False
    return counts_as_active(task)


def _slot_order(task: StoredObject) -> tuple[int, str]:
    slot = task.extra.get("Slot")
    return (slot if isinstance(slot, int) else 0), task.id


class _Branch:
    """A node of the placement-preference tree; a leaf holds a heap of eligible nodes."""

    __slots__ = ("children", "heap", "nodes", "ordered", "tasks")

    def __init__(self) -> None:
        self.tasks = 0  # the service's active tasks on every node below, eligible or not
        self.children: dict[str, _Branch] = {}
        self.heap: list[tuple[int, str, _Branch]] | None = None
        self.nodes: list[tuple[int, int, str, NodeInfo]] = []  # (service tasks, tasks, ID, node)
        self.ordered = False  # a leaf's nodes are heapified on its first visit

    def child(self, value: str) -> _Branch:
        branch = self.children.get(value)
        if branch is None:
            branch = self.children[value] = _Branch()
        return branch


class _Batch:
    """One call of :func:`schedule`: node accounting shared by every group of the batch."""

    def __init__(
        self,
        nodes: dict[str, NodeInfo],
        services: Mapping[str, StoredObject],
        on_decision: DecisionHook | None,
    ) -> None:
        self.nodes = nodes
        self.services = services
        self.on_decision = on_decision
        self.decisions = Decisions({}, {})
        # Static filters (ready, constraints, platform) give the same answer all batch long, so
        # services that ask the same of a node share one pass over the nodes.
        self._eligible: dict[tuple[object, ...], tuple[list[NodeInfo], frozenset[str]]] = {}
        self._spread: dict[str, dict[str, str]] = {}  # descriptor -> node ID -> label value

    def _assign(self, task: StoredObject, needs: TaskNeeds, node: NodeInfo) -> None:
        node.add_task(
            task.id, needs.service_id, needs.nano_cpus, needs.memory_bytes, needs.host_ports,
            active=counts_as_active(task),
        )  # fmt: skip
        self.decisions.assignments[task.id] = node.id
        if self.on_decision is not None:
            self.on_decision(task.id, node.id)

    def _leave_pending(self, task: StoredObject, err: str) -> None:
        self.decisions.still_pending[task.id] = Pending(PENDING_MESSAGE, err)
        if self.on_decision is not None:
            self.on_decision(task.id, None)

    def confirm(self, task: StoredObject) -> None:
        """A pre-assigned task: does it fit the node it was given?"""
        node = self.nodes.get(str(task.extra["NodeID"]))
        if node is None:
            return  # the node is gone: swarmkit leaves the task for the orchestrator
        needs = task_needs(task, self.services.get(str(task.extra.get("ServiceID") or "")))
        failed = first_failure(enabled_filters(needs), needs, node)
        if failed is None:
            self._assign(task, needs, node)
        else:
            self._leave_pending(task, explanation({failed: 1}))

    def place_group(self, tasks: Sequence[StoredObject]) -> None:
        """Place tasks that ask the same of a node (one service, one spec), in slot order."""
        first = tasks[0]
        needs = task_needs(first, self.services.get(str(first.extra.get("ServiceID") or "")))
        filters = enabled_filters(needs)
        static = tuple(f for f in filters if f.static)
        dynamic = tuple(f for f in filters if not f.static)
        root = self._tree(needs, static)
        placed = 0
        for task in tasks:
            node = self._place(root, needs, dynamic)
            if node is None:
                break
            self._assign(task, needs, node)
            placed += 1
        if placed == len(tasks):
            return
        err = self._explain(filters, needs)
        for task in tasks[placed:]:
            self._leave_pending(task, err)

    def _passing(self, needs: TaskNeeds, static: tuple[Filter, ...]) -> tuple[list[NodeInfo], frozenset[str]]:
        """The nodes (in ID order, and as a set of IDs) that pass the static filters."""
        key = (needs.constraints, needs.platforms, tuple(f.name for f in static))
        found = self._eligible.get(key)
        if found is None:
            others = tuple(f.check for f in static if f is not READY)  # readiness is read inline
            nodes = [
                node
                for node in self.nodes.values()
                if node.ready and (not others or all(check(needs, node) for check in others))
            ]
            found = self._eligible[key] = (nodes, frozenset(n.id for n in nodes))
        return found

    def _spread_values(self, descriptor: str) -> dict[str, str]:
        values = self._spread.get(descriptor)
        if values is None:
            values = self._spread[descriptor] = {
                node.id: spread_value(node, descriptor) for node in self.nodes.values()
            }
        return values

    def _tree(self, needs: TaskNeeds, static: tuple[Filter, ...]) -> _Branch:
        root = _Branch()
        service_id = needs.service_id
        passing, eligible = self._passing(needs, static)
        if not needs.spread:  # the common case: one leaf, no branch counts to keep
            root.nodes = [(node.by_service.get(service_id, 0), node.total, node.id, node) for node in passing]
            return root
        levels = [self._spread_values(descriptor) for descriptor in needs.spread]
        for node in self.nodes.values():
            count = node.by_service.get(service_id, 0)
            branch = root
            for values in levels:
                branch.tasks += count
                branch = branch.child(values[node.id])
            branch.tasks += count
            if node.id in eligible:
                branch.nodes.append((count, node.total, node.id, node))
        return root

    def _place(self, branch: _Branch, needs: TaskNeeds, dynamic: tuple[Filter, ...]) -> NodeInfo | None:
        """The node for the next task below ``branch`` (its heaps updated), or None if full."""
        if not branch.children:
            heap = branch.nodes
            if not branch.ordered:
                heapq.heapify(heap)
                branch.ordered = True
            while heap:
                node = heap[0][3]
                if all(f.check(needs, node) for f in dynamic):
                    # The caller adds the task; the node's keys grow by one each.
                    heapq.heapreplace(
                        heap, (node.by_service.get(needs.service_id, 0) + 1, node.total + 1, node.id, node)
                    )
                    return node
                heapq.heappop(heap)  # full for this group: it can only get fuller
            return None
        if branch.heap is None:
            branch.heap = [(child.tasks, value, child) for value, child in branch.children.items()]
            heapq.heapify(branch.heap)
        while branch.heap:
            child = branch.heap[0][2]
            found = self._place(child, needs, dynamic)
            if found is None:
                heapq.heappop(branch.heap)  # no room left in this branch
                continue
            child.tasks += 1
            heapq.heapreplace(branch.heap, (child.tasks, branch.heap[0][1], child))
            return found
        return None

    def _explain(self, filters: tuple[Filter, ...], needs: TaskNeeds) -> str:
        failures: Counter[Filter] = Counter()
        for node in self.nodes.values():
            failed = first_failure(filters, needs, node)
            if failed is not None:
                failures[failed] += 1
        return no_suitable_node(explanation(failures))


def schedule(
    cluster: Cluster | ReadView,
    pending: Iterable[StoredObject],
    *,
    on_decision: DecisionHook | None = None,
) -> Decisions:
    """Decide where each pending task runs; see the module docstring for how.

    ``pending`` are the tasks to place (typically the dirty tasks for which :func:`schedulable`
    holds); ``cluster`` gives every node and the tasks already on them. Tasks in ``pending`` that
    are not schedulable are ignored. Pre-assigned tasks are confirmed first; then groups are
    placed in service ID order (a service's spec versions in slot order) and tasks in slot
    order, so the result depends on nothing but the input, whatever order it comes in.
    """
    if not isinstance(cluster, Cluster):
        cluster = Cluster.from_view(cluster)
    todo = sorted({t.id: t for t in pending if schedulable(t)}.values(), key=_slot_order)
    batch = _Batch(build_nodes(cluster.nodes, cluster.tasks, cluster.services), cluster.services, on_decision)
    # service ID -> [(spec identity, tasks)], specs in order of first appearance (slot order)
    groups: dict[str, list[tuple[object, list[StoredObject]]]] = {}
    for task in todo:
        if task.extra.get("NodeID"):
            batch.confirm(task)
            continue
        ident = spec_identity(task)
        versions = groups.setdefault(str(task.extra.get("ServiceID") or ""), [])
        for known, members in versions:
            if known == ident:
                members.append(task)
                break
        else:
            versions.append((ident, [task]))
    for service_id in sorted(groups):
        for _, members in groups[service_id]:
            batch.place_group(members)
    return batch.decisions
