"""The routing mesh's rules, pure: which ports a node listens on and where each connection goes.

Swarm publishes a service's port two ways (``Endpoint.Ports[].PublishMode``):

* ``ingress`` (the default): every node of the swarm listens on the published port and sends each
  connection through the ``ingress`` overlay to one of the service's running, healthy tasks, on
  whichever node it runs. What a node knows of those tasks is the ingress network's endpoint
  table (the network database): each task's ingress endpoint carries its ingress ports
  (published, target, protocol), as libnetwork's EndpointRecord carries ``IngressPorts``, so the
  table alone says which ports to open and which tasks serve each. A task is in the table only
  while it runs (and, with a healthcheck, is healthy), and leaves it first when it is stopped.
* ``host``: only a node running a task listens, on the published port, and sends the connection
  to that task (no balancing across nodes).

Connections are balanced round robin per published port over the backends in a stable order
(:class:`MeshBalancer`); the shell tries the next backend in turn when one refuses before any
byte was relayed (a task stopped since this node last heard), so the client never sees it.
UDP ingress ports are served too: each datagram goes to the backend its flow (the client's
address and port) was first given, as one VXLAN frame on the ingress network.

The shell is :mod:`nodeagent.overlay.mesh_shell`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nodeagent.networkdb.core import Endpoint
from nodeagent.overlay.attach import VNI_OPTION, Attachment

__all__ = [
    "Backend",
    "MeshBalancer",
    "PublishedPort",
    "host_port_status",
    "host_routes",
    "ingress_attachment",
    "ingress_routes",
    "listener_changes",
    "published_ports",
]

T = TypeVar("T")


@dataclass(frozen=True)
class PublishedPort:
    """One entry of a task's ``Endpoint.Ports``."""

    protocol: str  # "tcp", "udp" or "sctp"
    target: int  # the container's port
    published: int  # the port on every node (ingress) or on the task's node (host)
    mode: str  # "ingress" or "host"


@dataclass(frozen=True)
class Backend:
    """Where one connection to a published port may go: a task's endpoint and its container port.

    For a host-mode port the endpoint is the local task's (its ``addr`` is ``""`` when the task
    is on no overlay)."""

    endpoint: Endpoint
    target: int


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def published_ports(task: Mapping[str, Any]) -> list[PublishedPort]:
    """The task's published ports (the copy of its service's ``Endpoint`` it carries), in order.

    Ports without a published port (a host-mode port left to the engine) and malformed entries
    are skipped."""
    out: list[PublishedPort] = []
    for port in _map(task.get("Endpoint")).get("Ports") or []:
        port = _map(port)
        try:
            target, published = int(port.get("TargetPort") or 0), int(port.get("PublishedPort") or 0)
        except (TypeError, ValueError):
            continue
        if not (0 < target < 65536 and 0 < published < 65536):
            continue
        mode = str(port.get("PublishMode") or "ingress")
        out.append(PublishedPort(str(port.get("Protocol") or "tcp"), target, published, mode))
    return out


def host_port_status(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task's ``Status.PortStatus`` while it runs: its host-mode published ports, as Swarm's
    executor reports the container's port bindings (``docker service ps`` shows them in its
    PORTS column, ``*:8080->80/tcp``). Ingress ports are not there: Swarm shows none for them."""
    ports = []
    for port in published_ports(task):
        if port.mode == "host":
            ports.append({"Protocol": port.protocol, "TargetPort": port.target,
                          "PublishedPort": port.published, "PublishMode": "host"})  # fmt: skip
    return {"Ports": ports} if ports else {}


def ingress_attachment(network: Mapping[str, Any]) -> Attachment | None:
    """The ingress network (the swarm API's shape, as the dispatcher sends it) as this node's
    attachment: ID, name, VNI and subnet; no address of the node's own. None when it is not an
    allocated overlay."""
    options = _map(_map(network.get("DriverState")).get("Options"))
    try:
        vni = int(str(options.get(VNI_OPTION, "")).split(",")[0])
    except ValueError:
        return None
    subnet = None
    for config in _map(network.get("IPAMOptions")).get("Configs") or []:
        try:
            subnet = ipaddress.IPv4Network(str(_map(config).get("Subnet")), strict=False)
            break
        except ValueError:
            continue
    network_id = str(network.get("ID") or "")
    if not network_id:
        return None
    name = str(_map(network.get("Spec")).get("Name") or "ingress")
    return Attachment(network_id, name, vni, "", subnet, True)


def _order(backends: Iterable[Backend]) -> list[Backend]:
    def key(b: Backend) -> tuple[int, str, str]:
        try:
            addr = int(ipaddress.IPv4Address(b.endpoint.addr))
        except ValueError:
            addr = 0
        return addr, b.endpoint.task_id, b.endpoint.node

    return sorted(backends, key=key)


def ingress_routes(network_id: str, endpoints: Iterable[Endpoint],
                   protocol: str = "tcp") -> dict[int, list[Backend]]:
    """Published port of ``protocol`` -> its backends on the ingress network ``network_id``, in a
    stable order.

    Every live endpoint of the network that lists the port serves it (during a rolling update
    the old and the new tasks both do)."""
    out: dict[int, list[Backend]] = {}
    for endpoint in endpoints:
        if endpoint.network_id != network_id:
            continue
        for published, target, proto in endpoint.ports:
            if proto == protocol:
                out.setdefault(published, []).append(Backend(endpoint, target))
    return {port: _order(backends) for port, backends in out.items()}


def host_routes(tasks: Mapping[str, tuple[Endpoint, Sequence[PublishedPort]]]) -> dict[int, list[Backend]]:
    """TCP published port -> the local tasks publishing it in host mode (task ID -> its endpoint
    and published ports)."""
    out: dict[int, list[Backend]] = {}
    for _task_id, (endpoint, ports) in sorted(tasks.items()):
        for port in ports:
            if port.mode == "host" and port.protocol == "tcp":
                out.setdefault(port.published, []).append(Backend(endpoint, port.target))
    return out


def listener_changes(bound: Iterable[int], wanted: Iterable[int]) -> tuple[list[int], list[int]]:
    """(ports to open, ports to close), each sorted."""
    have, want = set(bound), set(wanted)
    return sorted(want - have), sorted(have - want)


@dataclass
class MeshBalancer(Generic[T]):
    """Round robin per published port; :meth:`rotation` also gives the fall-backs, in turn."""

    _next: dict[int, int] = field(default_factory=dict)

    def rotation(self, port: int, choices: Sequence[T]) -> list[T]:
        """Every choice, starting with the one after the last picked for ``port``; advances by one."""
        if not choices:
            return []
        index = self._next.get(port, 0) % len(choices)
        self._next[port] = index + 1
        return [*choices[index:], *choices[:index]]
