"""What a task's JSON says about its overlays: pure parsing of NetworksAttachments and Endpoint.

The manager writes ``NetworksAttachments`` (the network in the swarm API's shape, with the VNI in
``DriverState.Options`` and the subnet in ``IPAMOptions.Configs``, and the task's ``Addresses``)
and, as swarmkit does, a copy of the service's ``Endpoint`` (``VirtualIPs``, ``Spec.Mode``) on the
task. Aliases come from the task spec's ``Networks[].Aliases``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.networkdb.core import Endpoint

__all__ = ["VNI_OPTION", "Attachment", "attachments", "endpoint_for", "ingress_ports"]

VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


@dataclass(frozen=True)
class Attachment:
    """One network a task is on."""

    network_id: str
    name: str
    vni: int
    addr: str  # the task's address, no prefix length
    subnet: ipaddress.IPv4Network | None
    ingress: bool


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def attachments(task: Mapping[str, Any]) -> list[Attachment]:
    """The task's overlay attachments with an address and a VNI, in the order the manager gave."""
    out: list[Attachment] = []
    for item in task.get("NetworksAttachments") or []:
        network = _map(_map(item).get("Network"))
        options = _map(_map(network.get("DriverState")).get("Options"))
        addresses = _map(item).get("Addresses") or []
        try:
            vni = int(str(options.get(VNI_OPTION, "")).split(",")[0])
            iface = ipaddress.IPv4Interface(str(addresses[0]))
        except (ValueError, IndexError):
            continue  # not an overlay (host, bridge) or not allocated yet
        configs = _map(network.get("IPAMOptions")).get("Configs") or []
        subnet = None
        for config in configs:
            try:
                subnet = ipaddress.IPv4Network(str(_map(config).get("Subnet")), strict=False)
                break
            except ValueError:
                continue
        spec = _map(network.get("Spec"))
        out.append(Attachment(str(network.get("ID") or ""), str(spec.get("Name") or ""), vni,
                              str(iface.ip), subnet or iface.network, bool(spec.get("Ingress"))))  # fmt: skip
    return out


def endpoint_for(task: Mapping[str, Any], attachment: Attachment, node: str,
                 listeners: tuple[tuple[int, str, int], ...]) -> Endpoint:
    """The endpoint-table entry of ``task`` on one of its networks."""
    endpoint = _map(task.get("Endpoint"))
    mode = str(_map(endpoint.get("Spec")).get("Mode") or "vip")
    vip = ""
    for entry in endpoint.get("VirtualIPs") or []:
        if _map(entry).get("NetworkID") == attachment.network_id and _map(entry).get("Addr"):
            vip = str(_map(entry)["Addr"]).split("/")[0]
    aliases: tuple[str, ...] = ()
    for net in _map(task.get("Spec")).get("Networks") or []:
        if _map(net).get("Target") in (attachment.network_id, attachment.name):
            aliases = tuple(str(a) for a in _map(net).get("Aliases") or ())
    service = str(_map(task.get("ServiceAnnotations")).get("Name") or "")
    ports = ingress_ports(task) if attachment.ingress else ()
    return Endpoint(attachment.network_id, str(task.get("ID") or ""), node, attachment.addr,
                    vip if mode == "vip" else "", service, str(task.get("ServiceID") or ""), aliases, mode,
                    listeners, ports)  # fmt: skip


def ingress_ports(task: Mapping[str, Any]) -> tuple[tuple[int, int, str], ...]:
    """The task's ingress-mode published ports as (published, target, protocol), for its endpoint
    on the ingress network (the routing mesh reads them there)."""
    out: list[tuple[int, int, str]] = []
    for port in _map(task.get("Endpoint")).get("Ports") or []:
        port = _map(port)
        if str(port.get("PublishMode") or "ingress") != "ingress":
            continue
        try:
            published, target = int(port.get("PublishedPort") or 0), int(port.get("TargetPort") or 0)
        except (TypeError, ValueError):
            continue
        if published > 0 and target > 0:
            out.append((published, target, str(port.get("Protocol") or "tcp")))
    return tuple(out)
