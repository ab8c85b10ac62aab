"""Networks in the Engine API's JSON (``types.NetworkResource``): one place for every route.

Two kinds are shown. Swarm networks come from the store and render as a manager's daemon shows
them from the cluster (moby's BasicNetworkFromGRPC): Scope ``swarm``, the allocated IPAM
config, the VNI among the Options, ``Containers: null``, ``Labels: null`` when there are none.
Node-local networks (``bridge``, ``host``, ``none``, ``docker_gwbridge``) are emulated by
every node (nodeagent/engineapi/localnets.py) and listed after them. Pure: no store, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from manager.allocator.ipam import VXLAN_OPTION
from manager.allocator.networks import is_predefined
from manager.state.store import StoredObject
from manager.state.store.objects import thaw
from nodeagent.engineapi.localnets import LOCAL_NETWORKS, PREDEFINED, local_networks

__all__ = ["LOCAL_NETWORKS", "PREDEFINED", "local_networks", "network_to_api", "vni", "with_node_view"]

def _ipam_config(configs: Any) -> list[dict[str, Any]]:
    out = []
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, Mapping):
            out.append({k: config[k] for k in ("Subnet", "IPRange", "Gateway", "AuxiliaryAddresses")
                        if config.get(k)})
    return out


def network_to_api(network: StoredObject) -> dict[str, Any]:
    """A swarm network as ``GET /networks/{id}`` returns it on a manager (api/networks-swarm.json)."""
    spec = network.spec
    ipam: Mapping[str, Any] = {}
    for source in (network.extra.get("IPAM"), spec.get("IPAM")):  # allocated, else as asked
        if isinstance(source, Mapping):
            ipam = source
            break
    ipam_options = ipam.get("Options")
    options = dict(spec.get("Options") or {})
    driver_options = network.extra.get("DriverOptions")
    if isinstance(driver_options, Mapping):
        options.update(driver_options)
    labels = spec.get("Labels")
    predefined = is_predefined(network)  # shown as Docker 20.10 showed them: no IPAM driver, no options
    return {
        "Name": spec.get("Name", ""),
        "Id": network.id,
        "Created": network.created_at,
        "Scope": "swarm",
        "Driver": spec.get("Driver") or "overlay",
        "EnableIPv6": bool(spec.get("EnableIPv6", False)),
        "IPAM": {
            "Driver": "" if predefined else ipam.get("Driver") or "default",
            "Options": thaw(ipam_options) if isinstance(ipam_options, Mapping) and ipam_options else None,
            "Config": _ipam_config(ipam.get("Config")),
        },
        "Internal": bool(spec.get("Internal", False)),
        "Attachable": bool(spec.get("Attachable", False)),
        "Ingress": bool(spec.get("Ingress", False)),
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": None,
        "Options": None if predefined else thaw(options),
        "Labels": thaw(labels) if isinstance(labels, Mapping) and labels else None,
    }


def _address_on(attachments: Any, network_id: str) -> str:
    """The first address (``10.0.1.3/24``) held on ``network_id`` among NetworksAttachments."""
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, Mapping) or not isinstance(attachment.get("Network"), Mapping):
            continue
        addresses = attachment.get("Addresses")
        if attachment["Network"].get("ID") == network_id and isinstance(addresses, list) and addresses:
            return str(addresses[0])
    return ""


def _mac(cidr: str) -> str:
    """Docker's MAC for an IPv4 endpoint: 02:42 and the address's four bytes."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in cidr.split("/")[0].split("."))


def _endpoint_id(*parts: str) -> str:
    return hashlib.sha256(":".join(("swarmlet-endpoint", *parts)).encode()).hexdigest()


def with_node_view(rendered: dict[str, Any], node_id: str, tasks: Iterable[StoredObject],
                   nodes: Iterable[StoredObject], task_names: Mapping[str, str]) -> dict[str, Any]:
    """``rendered`` as the daemon of ``node_id`` shows a swarm network it carries.

    A node carries a network while one of its tasks runs attached to it (its agent has joined
    the network's gossip). Its daemon then fills ``Containers`` with its own tasks' endpoints
    (key: the container ID; Name, EndpointID, MacAddress 02:42 + the IPv4 address, IPv4Address
    with the prefix length) and its load balancer ``lb-NETWORK`` (Name ``NETWORK-endpoint``, the
    node's own address there; on ingress, which every node carries, ``ingress-sbox`` named
    ``ingress-endpoint``, as api/network-ingress.json), and ``Peers`` with every node carrying it
    (Name: the node's hostname, IP: its address), as the real Swarm shows it
    (api/network-labnet.json). A node that carries it not shows ``Containers: null`` and no
    Peers. ``task_names``: task ID -> its name.
    """
    network_id = str(rendered["Id"])
    carriers: dict[str, list[tuple[StoredObject, str]]] = {}
    for task in tasks:
        if task.status.get("State") != "running" or task.extra.get("DesiredState", "running") != "running":
            continue
        address = _address_on(task.extra.get("NetworksAttachments"), network_id)
        if address:
            carriers.setdefault(str(task.extra.get("NodeID") or ""), []).append((task, address))
    nodes = list(nodes)
    for node in nodes:  # a node with its own address there carries it (ingress: every node)
        if _address_on(node.extra.get("Attachments"), network_id):
            carriers.setdefault(node.id, [])
    if node_id not in carriers:
        return rendered
    containers: dict[str, Any] = {}
    for task, address in sorted(carriers[node_id], key=lambda pair: task_names.get(pair[0].id, "")):
        container_status = task.status.get("ContainerStatus")
        container = container_status.get("ContainerID") if isinstance(container_status, Mapping) else ""
        containers[str(container or task.id)] = {
            "Name": task_names.get(task.id, task.id), "EndpointID": _endpoint_id(network_id, task.id),
            "MacAddress": _mac(address), "IPv4Address": address, "IPv6Address": "",
        }
    peers = []
    for node in sorted(nodes, key=lambda n: n.id):
        if node.id not in carriers:
            continue
        if node.id == node_id:
            address = _address_on(node.extra.get("Attachments"), network_id)
            if address:
                name, endpoint = f"lb-{rendered['Name']}", f"{rendered['Name']}-endpoint"
                if rendered.get("Ingress"):
                    name, endpoint = "ingress-sbox", "ingress-endpoint"
                containers[name] = {
                    "Name": endpoint, "EndpointID": _endpoint_id(network_id, node.id),
                    "MacAddress": _mac(address), "IPv4Address": address, "IPv6Address": "",
                }
        desc = node.extra.get("Description")
        hostname = str(desc.get("Hostname") or node.id) if isinstance(desc, Mapping) else node.id
        peers.append({"Name": hostname, "IP": str(node.status.get("Addr") or "")})
    return {**rendered, "Containers": containers, "Peers": peers}


def vni(network: StoredObject) -> int | None:
    """The network's VXLAN ID, once allocated."""
    options = network.extra.get("DriverOptions")
    raw = options.get(VXLAN_OPTION) if isinstance(options, Mapping) else None
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None
