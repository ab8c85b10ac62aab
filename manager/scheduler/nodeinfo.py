"""What the scheduler knows about a node, and what a task asks of one.

:class:`NodeInfo` is swarmkit's ``NodeInfo``: the node's facts plus the accounting the filters
need, kept up to date as the scheduler places tasks so that a batch sees its own decisions:

* resources: the node's ``Description.Resources`` minus the reservations of every task that
  sits on it (``NodeID`` set and ``Status.State`` from assigned to running). A task that has
  finished, failed or was shut down holds nothing; a task still pending on a node (a global
  service's pre-assigned task) holds nothing until the scheduler confirms it;
* tasks per service and in total: the same tasks, counted only while their ``DesiredState`` is
  at most complete, as swarmkit's ``ActiveTasksCountByService``. Spread and max replicas per node
  count these: a task being shut down still holds its reservation but no longer counts;
* host-mode published ports in use, as ``(protocol, port)`` -> the task holding it.

:class:`TaskNeeds` is read once per group of identical tasks, so a thousand replicas cost one
parse of their constraints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from manager.scheduler.constraint import (
    ENGINE_LABEL_PREFIX,
    NODE_LABEL_PREFIX,
    Constraint,
    ConstraintError,
    NodeFacts,
    parse_constraints,
)
from manager.state.store.objects import TASK_STATES, StoredObject

__all__ = [
    "NodeInfo",
    "TaskNeeds",
    "build_nodes",
    "holds_node",
    "host_ports",
    "normalise_arch",
    "spec_identity",
    "spread_value",
    "task_needs",
]

_STATE = {name: i for i, name in enumerate(TASK_STATES)}
_ASSIGNED = _STATE["assigned"]
_RUNNING = _STATE["running"]
_COMPLETE = _STATE["complete"]


def holds_node(task: StoredObject) -> bool:
    """Does this task occupy its node (resources, ports)? NodeID set, state assigned..running."""
    if not task.extra.get("NodeID"):
        return False
    state = _STATE.get(str(task.status.get("State") or ""), -1)
    return _ASSIGNED <= state <= _RUNNING


def counts_as_active(task: StoredObject) -> bool:
    """Does a task on a node count for spread and max replicas? Desired state at most complete."""
    return _STATE.get(str(task.extra.get("DesiredState") or ""), 99) <= _COMPLETE


def normalise_arch(arch: str) -> str:
    """swarmkit's platform filter treats x86_64 as amd64 and aarch64 as arm64."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)


def host_ports(task: StoredObject, service: StoredObject | None) -> frozenset[tuple[str, int]]:
    """The host-mode published ports a task binds on its node: ``(protocol, port)`` pairs.

    A task's own ``Endpoint`` wins when it has one (swarmkit copies the allocated endpoint into
    the task); otherwise the service's ``EndpointSpec.Ports``. Port 0 asks Docker for any port
    and never conflicts.
    """
    endpoint = task.extra.get("Endpoint")
    if not isinstance(endpoint, dict) and service is not None:  # stored JSON objects are dicts
        endpoint = service.spec.get("EndpointSpec")
    ports = endpoint.get("Ports") if isinstance(endpoint, dict) else None
    found: set[tuple[str, int]] = set()
    for port in ports or ():
        if port.get("PublishMode") == "host" and int(port.get("PublishedPort") or 0):
            found.add((str(port.get("Protocol") or "tcp"), int(port["PublishedPort"])))
    return frozenset(found)


def _reservations(spec: Mapping[str, Any]) -> tuple[int, int]:
    res = (spec.get("Resources") or {}).get("Reservations") or {}
    return int(res.get("NanoCPUs") or 0), int(res.get("MemoryBytes") or 0)


@dataclass(frozen=True, slots=True)
class TaskNeeds:
    """What a task asks of a node; identical tasks of one service share one."""

    service_id: str
    nano_cpus: int
    memory_bytes: int
    constraints: tuple[Constraint, ...]
    constraints_invalid: str  # swarmkit's parse error when the stored constraints do not parse
    platforms: tuple[tuple[str, str], ...]  # (OS, normalised architecture); "" means any
    max_replicas: int  # 0: no limit
    host_ports: frozenset[tuple[str, int]]
    spread: tuple[str, ...]  # SpreadDescriptors Swarm understands, outermost first


def task_needs(task: StoredObject, service: StoredObject | None = None) -> TaskNeeds:
    """Read a task's requirements from its Spec (the service's TaskTemplate) and the service.

    Constraints that do not parse disable the constraint filter, as swarmkit's scheduler does
    (the control API refuses them at create, so only an old or hand-written task has them).
    """
    spec = task.spec
    placement = spec.get("Placement") or {}
    try:
        constraints = tuple(parse_constraints(placement.get("Constraints") or ()))
        invalid = ""
    except ConstraintError as err:
        constraints, invalid = (), str(err)
    platforms = tuple(
        (str(p.get("OS") or ""), normalise_arch(str(p.get("Architecture") or "")))
        for p in placement.get("Platforms") or ()
    )
    spread: list[str] = []
    for pref in placement.get("Preferences") or ():
        descriptor = str((pref.get("Spread") or {}).get("SpreadDescriptor") or "")
        lowered = descriptor.lower()
        for prefix in (NODE_LABEL_PREFIX, ENGINE_LABEL_PREFIX):
            if len(lowered) > len(prefix) and lowered.startswith(prefix):
                spread.append(descriptor)  # anything else is skipped, as swarmkit does
    cpus, memory = _reservations(spec)
    return TaskNeeds(
        service_id=str(task.extra.get("ServiceID") or ""),
        nano_cpus=cpus,
        memory_bytes=memory,
        constraints=constraints,
        constraints_invalid=invalid,
        platforms=platforms,
        max_replicas=int(placement.get("MaxReplicas") or 0),
        host_ports=host_ports(task, service),
        spread=tuple(spread),
    )


def spec_identity(task: StoredObject) -> object:
    """What makes two tasks of one service ask the same of a node: the spec version, else the spec.

    swarmkit groups by (ServiceID, SpecVersion). A task without SpecVersion is grouped by its
    Spec compared for equality (a C-level dict comparison, far cheaper than serialising it).
    """
    version = task.extra.get("SpecVersion")
    if isinstance(version, Mapping) and "Index" in version:
        return ("version", version["Index"])
    return task.spec


class NodeInfo:
    """One node as the filters see it, with the accounting a batch updates as it places tasks."""

    __slots__ = (
        "api", "arch", "availability", "by_service", "cpu_free", "cpu_total", "facts", "hostname", "id",
        "mem_free", "mem_total", "os", "ports", "ready", "state", "total",
    )  # fmt: skip

    def __init__(self, node: StoredObject) -> None:
        desc = node.extra.get("Description") or {}
        platform = desc.get("Platform") or {}
        resources = desc.get("Resources") or {}
        self.id = node.id
        # The Engine API shape the constraint matcher reads (references, not copies).
        self.api: dict[str, Any] = {
            "ID": node.id, "Spec": node.spec, "Description": desc, "Status": node.status,
        }  # fmt: skip
        self.facts = NodeFacts(self.api)
        self.hostname = str(desc.get("Hostname") or "")
        self.state = str(node.status.get("State") or "unknown")
        self.availability = str(node.spec.get("Availability") or "active")
        self.ready = self.state == "ready" and self.availability == "active"
        self.os = str(platform.get("OS") or "")
        self.arch = normalise_arch(str(platform.get("Architecture") or ""))
        self.cpu_total = self.cpu_free = int(resources.get("NanoCPUs") or 0)
        self.mem_total = self.mem_free = int(resources.get("MemoryBytes") or 0)
        self.by_service: dict[str, int] = {}
        self.total = 0
        self.ports: dict[tuple[str, int], str] = {}

    def service_tasks(self, service_id: str) -> int:
        """Active tasks of this service on the node (what spread and max replicas count)."""
        return self.by_service.get(service_id, 0)

    def add_task(
        self,
        task_id: str,
        service_id: str,
        cpus: int,
        memory: int,
        ports: Iterable[tuple[str, int]],
        *,
        active: bool = True,
    ) -> None:
        """Account for a task placed here: its reservations, ports and (if active) its count."""
        self.cpu_free -= cpus
        self.mem_free -= memory
        for port in ports:
            self.ports[port] = task_id
        if active:
            self.by_service[service_id] = self.by_service.get(service_id, 0) + 1
            self.total += 1


def spread_value(node: NodeInfo, descriptor: str) -> str:
    """The node's value for a spread descriptor; a node without the label gets "" (its own group)."""
    if descriptor.lower().startswith(NODE_LABEL_PREFIX):
        labels = node.api["Spec"].get("Labels") or {}
        return str(labels.get(descriptor[len(NODE_LABEL_PREFIX) :]) or "")
    engine = node.api["Description"].get("Engine") or {}
    return str((engine.get("Labels") or {}).get(descriptor[len(ENGINE_LABEL_PREFIX) :]) or "")


def build_nodes(
    nodes: Iterable[StoredObject],
    tasks: Iterable[StoredObject],
    services: Mapping[str, StoredObject],
    *,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, NodeInfo]:
    """NodeInfo for every node, in node ID order, charged with the tasks that sit on them.

    ``exclude`` names tasks to leave out (explain leaves out the task it explains, to ask
    "would it fit if it were placed again").
    """
    infos = {n.id: NodeInfo(n) for n in sorted(nodes, key=lambda n: n.id)}
    # This loop reads every task of the cluster on every call, so it avoids repeated work: the
    # holds_node and counts_as_active rules are inlined, and the ports of a service's tasks come
    # from its EndpointSpec (read once) unless a task has its own Endpoint.
    service_ports: dict[str, frozenset[tuple[str, int]]] = {}
    state_index: dict[Any, int] = _STATE  # read with raw JSON values: a non-string is just absent
    assigned, running, complete = _ASSIGNED, _RUNNING, _COMPLETE
    for task in tasks:
        extra = task.extra
        node_id = extra.get("NodeID")
        if not node_id or not assigned <= state_index.get(task.status.get("State"), -1) <= running:
            continue
        info = infos.get(node_id)
        if info is None or task.id in exclude:
            continue
        service_id = str(extra.get("ServiceID") or "")
        ports = None if "Endpoint" in extra else service_ports.get(service_id)
        if ports is None:
            ports = host_ports(task, services.get(service_id))
            if "Endpoint" not in extra:
                service_ports[service_id] = ports
        cpus, memory = _reservations(task.spec)
        active = state_index.get(extra.get("DesiredState"), 99) <= complete
        info.add_task(task.id, service_id, cpus, memory, ports, active=active)
    return infos
