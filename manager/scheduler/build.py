"""Store objects for scheduler tests, benchmarks and demos, in the store's own shapes.

Package code (not test code) so the benchmark and the unit tests build clusters the same way,
and so a future ``swarmlet explain`` demo can too. Every builder returns a frozen
:class:`StoredObject`, exactly what a store read hands the scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from manager.state.store.objects import StoredObject, freeze

__all__ = ["GIB", "make_node", "make_service", "make_task", "task_template"]

GIB = 1024**3
_WHEN = "2026-11-28T00:00:00Z"


def make_node(
    node_id: str,
    *,
    hostname: str | None = None,
    role: str = "worker",
    availability: str = "active",
    state: str = "ready",
    labels: Mapping[str, str] | None = None,
    engine_labels: Mapping[str, str] | None = None,
    cpus: float = 2,
    memory: int = 4 * GIB,
    os: str = "linux",
    arch: str = "x86_64",
    addr: str = "10.0.0.1",
) -> StoredObject:
    """A node as the store keeps it: Spec, Status and Description (``cpus`` in whole CPUs)."""
    spec = {"Labels": dict(labels or {}), "Role": role, "Availability": availability}
    description = {
        "Hostname": hostname if hostname is not None else node_id,
        "Platform": {"Architecture": arch, "OS": os},
        "Resources": {"NanoCPUs": int(cpus * 1e9), "MemoryBytes": memory},
        "Engine": {"EngineVersion": "0.1.0", "Labels": dict(engine_labels or {})},
    }
    return StoredObject(
        "node", node_id, 1, _WHEN, _WHEN, freeze(spec), freeze({"State": state, "Addr": addr}),
        freeze({"Description": description}),
    )  # fmt: skip


def task_template(
    *,
    cpus: float = 0,
    memory: int = 0,
    constraints: Sequence[str] = (),
    preferences: Sequence[str] = (),
    max_replicas: int = 0,
    platforms: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A TaskTemplate: ``preferences`` as descriptors (``node.labels.zone``), platforms (OS, arch)."""
    placement: dict[str, Any] = {}
    if constraints:
        placement["Constraints"] = list(constraints)
    if preferences:
        placement["Preferences"] = [{"Spread": {"SpreadDescriptor": d}} for d in preferences]
    if max_replicas:
        placement["MaxReplicas"] = max_replicas
    if platforms:
        placement["Platforms"] = [{"OS": o, "Architecture": a} for o, a in platforms]
    reservations: dict[str, int] = {}
    if cpus:
        reservations["NanoCPUs"] = int(cpus * 1e9)
    if memory:
        reservations["MemoryBytes"] = memory
    return {
        "ContainerSpec": {"Image": "lab/busybox:latest", "Args": ["sleep", "3600"]},
        "Resources": {"Limits": {}, "Reservations": reservations},
        "Placement": placement,
        "ForceUpdate": 0,
    }


def make_service(
    service_id: str,
    template: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    replicas: int = 1,
    host_ports: Sequence[int | tuple[int, str]] = (),
) -> StoredObject:
    """A replicated service; ``host_ports`` are published in host mode (port or (port, protocol))."""
    ports = []
    for p in host_ports:
        port, proto = p if isinstance(p, tuple) else (p, "tcp")
        ports.append({"Protocol": proto, "TargetPort": 80, "PublishedPort": port, "PublishMode": "host"})
    spec = {
        "Name": name or service_id,
        "TaskTemplate": dict(template or task_template()),
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Mode": "vip", "Ports": ports},
    }
    return StoredObject("service", service_id, 1, _WHEN, _WHEN, freeze(spec), freeze({}), freeze({}))


def make_task(
    task_id: str,
    service: StoredObject,
    *,
    slot: int = 1,
    node_id: str = "",
    state: str = "pending",
    desired: str = "running",
    spec_version: int | None = None,
) -> StoredObject:
    """A task of ``service``: Spec is the service's TaskTemplate; pending and unassigned by default."""
    message = "pending task scheduling" if state == "pending" else state
    status = {"Timestamp": _WHEN, "State": state, "Message": message}
    extra: dict[str, Any] = {
        "Name": f"{service.spec.get('Name')}.{slot}",
        "ServiceID": service.id,
        "Slot": slot,
        "NodeID": node_id,
        "DesiredState": desired,
    }
    if spec_version is not None:
        extra["SpecVersion"] = {"Index": spec_version}
    return StoredObject(
        "task", task_id, 1, _WHEN, _WHEN, service.spec["TaskTemplate"], freeze(status), freeze(extra)
    )
