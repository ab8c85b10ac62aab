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

Nodes get addresses too (:func:`manager.allocator.networks.allocate_node`), as swarmkit's
allocator gives each node its network attachments: one on ingress for every node (its
``ingress-sbox`` endpoint) and one on each other network a task placed on it uses (its
``lb-NETWORK`` endpoint), released when its last such task has ended. ``docker network
inspect`` shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from manager.allocator.ipam import AllocationState
from manager.allocator.networks import allocate_node, allocate_task_in_view, find_ingress, state_from_view
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
_RUNNING = TASK_STATES.index("running")
_ALIVE = {name for name in TASK_STATES if TASK_STATES.index(name) <= _RUNNING}


class Allocator(Component):
    """Moves new tasks to pending."""

    name = "allocator"
    kinds = frozenset({"task", "node", "network"})

    def __init__(self, *, max_ops: int = MAX_OPS_PER_PASS) -> None:
        """``max_ops``: the most tasks one pass moves."""
        super().__init__()
        self.max_ops = max_ops
        self.carry: set[DirtyKey] = set()

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """A task that is new; the node of a task placed, changing state or gone (its node's
        networks may change); a node; every node when a network changes (ingress made)."""
        obj = change.object
        if change.kind == "node":
            return (("node", obj.id),)
        if change.kind == "network":
            return (("nodes", ""),)
        keys: list[DirtyKey] = []
        if obj.status.get("State") == "new":
            keys.append(("task", obj.id))
        node_id = obj.extra.get("NodeID")
        if isinstance(node_id, str) and node_id:
            keys.append(("node", node_id))
        return keys

    def start(self, view: StoreView, now: float) -> None:
        """A new leader: the harness marks every task dirty; nothing is carried over."""
        self.carry.clear()

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Each dirty task still new and wanted: to pending, in ID order."""
        timestamp = format_timestamp(now)
        ops: list[Op] = []
        leftover: set[DirtyKey] = set()
        addresses: AllocationState | None = None  # read from the store once, if a task needs it
        nodes = {key[1] for key in dirty if key[0] == "node"}
        if ("nodes", "") in dirty:
            nodes |= {n.id for n in view.find("node")}
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
        if nodes:
            networks = {n.id: n for n in view.find("network")}
            ingress = find_ingress(networks.values())
            for node_id in sorted(nodes):
                node = view.maybe("node", node_id)
                if node is None:
                    continue
                wanted = self._node_networks(view, node_id, ingress.id if ingress is not None else "")
                have = [_network_of(a) for a in node.extra.get("Attachments") or []]
                if have == wanted:
                    continue
                if addresses is None:
                    addresses = state_from_view(view)
                attachments = allocate_node(node, wanted, networks, addresses)
                ops.append(Update("node", node.id, node.version,
                                  extra={**node.extra, "Attachments": attachments}))  # fmt: skip
        self.carry = leftover
        return Reconciled(ops, now if leftover else None)

    @staticmethod
    def _node_networks(view: StoreView, node_id: str, ingress_id: str) -> list[str]:
        """The networks a node carries: ingress, then those of its tasks not ended, in ID order."""
        used: set[str] = set()
        for task in view.find("task", node_id=node_id):
            desired = task.extra.get("DesiredState", "running")
            if task.status.get("State") not in _ALIVE or desired not in _ALIVE:
                continue
            for attachment in task.extra.get("NetworksAttachments") or []:
                network_id = _network_of(attachment)
                if network_id and network_id != ingress_id:
                    used.add(network_id)
        return ([ingress_id] if ingress_id else []) + sorted(used)


def _network_of(attachment: object) -> str:
    """The network ID of one attachment (a task's or a node's), "" when malformed."""
    network = attachment.get("Network") if isinstance(attachment, Mapping) else None
    network_id = network.get("ID") if isinstance(network, Mapping) else None
    return network_id if isinstance(network_id, str) else ""
