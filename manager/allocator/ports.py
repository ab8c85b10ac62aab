"""Published ports: Swarm's checks at create/update, and the allocation of automatic ports.

Two halves, both pure. :func:`check_endpoint_spec` and :func:`check_port_conflicts` are what
swarmkit's control API checks before it stores a service (validateEndpointSpec and
checkPortConflicts), with its words; the Engine API routes call them. :func:`allocate_ports`
is the allocator's part: an ingress port given without a published port gets the lowest free
one of Swarm's dynamic range, 30000-32767, and keeps it across updates; host-mode ports are
never allocated (the scheduler places them; a task shows the port it bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from manager.allocator.ipam import AllocationState, IpamError, record_port

__all__ = [
    "DYNAMIC_PORT_END",
    "DYNAMIC_PORT_START",
    "allocate_ports",
    "check_endpoint_spec",
    "check_port_conflicts",
    "ingress_ports",
    "release_ports",
]

DYNAMIC_PORT_START = 30000  # swarmkit's portallocator: dynamicPortStart
DYNAMIC_PORT_END = 32767  # ...dynamicPortEnd (inclusive)


def _ports(endpoint_spec: Any) -> list[Mapping[str, Any]]:
    ports = endpoint_spec.get("Ports") if isinstance(endpoint_spec, Mapping) else None
    return [p for p in ports if isinstance(p, Mapping)] if isinstance(ports, list) else []


def _mode(port: Mapping[str, Any]) -> str:
    return str(port.get("PublishMode") or "ingress")


def _key(port: Mapping[str, Any]) -> tuple[str, int]:
    return str(port.get("Protocol") or "tcp"), int(port.get("PublishedPort") or 0)


def ingress_ports(endpoint_spec: Any) -> bool:
    """Whether a service publishes any port through the routing mesh (so it joins ingress)."""
    return any(_mode(p) == "ingress" for p in _ports(endpoint_spec))


def check_endpoint_spec(endpoint_spec: Any) -> None:
    """swarmkit's validateEndpointSpec: dnsrr with ingress ports, a published port given twice."""
    mode = endpoint_spec.get("Mode") if isinstance(endpoint_spec, Mapping) else None
    seen: set[tuple[str, int]] = set()
    for port in _ports(endpoint_spec):
        if mode == "dnsrr" and _mode(port) == "ingress":
            raise IpamError("EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
        key = _key(port)
        if key[1] == 0:
            continue
        if key in seen:
            raise IpamError("EndpointSpec: duplicate published ports provided")
        seen.add(key)


def check_port_conflicts(endpoint_spec: Any, service_id: str, services: Iterable[Any]) -> None:
    """swarmkit's checkPortConflicts: a published port another service holds is refused.

    An ingress port conflicts with another service's ingress or host-mode port on the same
    protocol and number; a host-mode port only with another's ingress port (several services may
    publish the same host port: the scheduler keeps their tasks on different nodes). Both the
    other services' specs and their allocated Endpoint ports count (an automatic 30000 is
    taken). ``service_id`` is the service being updated ("" on create): it never conflicts
    with itself. Words as Swarm's, InvalidArgument.
    """
    ingress: set[tuple[str, int]] = set()
    host: set[tuple[str, int]] = set()
    for port in _ports(endpoint_spec):
        key = _key(port)
        if key[1] == 0:
            continue
        (host if _mode(port) == "host" else ingress).add(key)
    if not ingress and not host:
        return
    for service in services:
        if service_id and service.id == service_id:
            continue
        endpoint = service.extra.get("Endpoint")
        theirs = _ports(service.spec.get("EndpointSpec")) + _ports(endpoint)
        for port in theirs:
            key = _key(port)
            if key[1] == 0:
                continue
            name = service.spec.get("Name", "")
            if _mode(port) == "host" and key in ingress:
                raise IpamError(f"port '{key[1]}' is already in use by service '{name}' ({service.id}) "
                                "as a host-published port")
            if _mode(port) != "host" and (key in ingress or key in host):
                raise IpamError(f"port '{key[1]}' is already in use by service '{name}' ({service.id}) "
                                "as an ingress port")


def allocate_ports(
    service_id: str, endpoint_spec: Any, previous: Any, state: AllocationState
) -> list[dict[str, Any]]:
    """The service's Endpoint.Ports: the spec's ports with automatic published ports filled in.

    ``previous`` is the service's current Endpoint (or None): an ingress port the spec leaves
    unpublished keeps the number it was given before (same protocol and target port), as
    swarmkit's port allocator does, so ``docker service update --image`` does not move it.
    The service's old ports are released first, so a port it drops is free again.
    """
    release_ports(service_id, state)
    before = {
        (str(p.get("Protocol") or "tcp"), p.get("TargetPort"), _mode(p)): int(p.get("PublishedPort") or 0)
        for p in _ports(previous)
    }
    out: list[dict[str, Any]] = []
    for port in _ports(endpoint_spec):
        allocated = {k: port[k] for k in ("Name", "Protocol", "TargetPort", "PublishedPort", "PublishMode")
                     if k in port}
        allocated["Protocol"] = str(port.get("Protocol") or "tcp")
        allocated["PublishMode"] = _mode(port)
        if _mode(port) == "ingress":
            protocol = allocated["Protocol"]
            number = int(port.get("PublishedPort") or 0)
            if number == 0:
                kept = before.get((protocol, port.get("TargetPort"), "ingress"), 0)
                number = kept if kept and (protocol, kept) not in state.ports else _free_port(protocol, state)
            else:
                holder = state.ports.get((protocol, number))
                if holder is not None and holder != service_id:
                    raise IpamError(
                        f"port '{number}' is already in use by service ({holder}) as an ingress port")
            allocated["PublishedPort"] = number
        out.append(allocated)
        record_port(state, service_id, allocated)
    return out


def _free_port(protocol: str, state: AllocationState) -> int:
    for number in range(DYNAMIC_PORT_START, DYNAMIC_PORT_END + 1):
        if (protocol, number) not in state.ports:
            return number
    raise IpamError(f"could not find an available port in the range {DYNAMIC_PORT_START}-"
                    f"{DYNAMIC_PORT_END}", status=500, code="ResourceExhausted")


def release_ports(service_id: str, state: AllocationState) -> None:
    """Free every published port ``service_id`` holds (its removal, or before re-allocating)."""
    for key in [k for k, holder in state.ports.items() if holder == service_id]:
        del state.ports[key]
    for key, holders in list(state.host_ports.items()):
        holders.discard(service_id)
        if not holders:
            del state.host_ports[key]
