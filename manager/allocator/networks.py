"""Network allocation: what a network, a service and a task get before anything runs.

The pure functions the allocator component calls (and the Engine API, where Swarm answers with
the allocation already made), each reading and updating an :class:`AllocationState` rebuilt
from the store (:func:`state_from_view`):

* :func:`allocate_network` gives an overlay network its VNI and subnet (module ipam's rules);
  what it returns is the network's ``extra``: ``DriverOptions`` (the VNI, under Docker's
  ``com.docker.network.driver.overlay.vxlanid_list``) and ``IPAM`` (Docker's shape).
* :func:`allocate_service_endpoint` makes a service's Endpoint: the EndpointSpec, the published
  ports with automatic ones filled in, and a VIP on each of its networks in ``vip`` mode (on
  ``ingress`` first when a port is published through the routing mesh).
* :func:`allocate_task` makes a task's NetworksAttachments: one address per network (ingress
  first, as Swarm lists them), each with the network in the swarm API's shape.
* ``release_*`` free what a removed network, service or a dead task held. The store is the
  truth: rebuilding the state from it frees the same things, so a release is only needed to
  reuse a resource within one pass.

The data plane reads these objects: the VNI and subnet from the network, the VIP per network
from the service's Endpoint, a task's address from its attachment (docs/networking.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from manager.allocator.ipam import (
    VXLAN_OPTION,
    AllocationState,
    IpamError,
    check_ipam_config,
    next_subnet,
    next_vni,
    state_from_store,
)
from manager.allocator.ports import allocate_ports, ingress_ports, release_ports

__all__ = [
    "INGRESS_NAME",
    "PREDEFINED_LABEL",
    "allocate_network",
    "allocate_node",
    "allocate_service_endpoint",
    "allocate_task",
    "allocate_task_in_view",
    "find_ingress",
    "ingress_network_spec",
    "is_predefined",
    "network_to_swarm",
    "predefined_network_specs",
    "release_network",
    "release_service_endpoint",
    "release_task",
    "service_network_ids",
    "state_from_view",
    "unallocated_networks",
]

INGRESS_NAME = "ingress"  # the routing mesh's network, made with the cluster
PREDEFINED_LABEL = "com.docker.swarm.predefined"  # swarmkit's label on the host and bridge networks


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def ingress_network_spec() -> dict[str, Any]:
    """The Spec of the ``ingress`` network Swarm makes with the cluster.

    As swarmkit's default: an overlay with Ingress true and no driver or IPAM named by anyone
    (so its swarm-API Spec shows ``DriverConfiguration: {}``; ``docker network inspect`` says
    ``overlay``), VNI 4096 and 10.0.0.0/24 once allocated first.
    """
    return {
        "Name": INGRESS_NAME,
        "Labels": {},
        "Driver": "",
        "Scope": "swarm",
        "EnableIPv6": False,
        "IPAM": {"Driver": "", "Options": None, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": True,
        "Options": {},
    }


def predefined_network_specs() -> list[dict[str, Any]]:
    """The swarm's ``host`` and ``bridge`` networks, made with the cluster as swarmkit makes them.

    They let a service say ``--network host`` (its tasks then use the node's own network) and
    are never allocated nor listed: Docker hides them and shows the node's own networks of the
    same names (``GET /networks/bridge?scope=swarm`` finds the swarm one).
    """
    return [
        {"Name": name, "Labels": {PREDEFINED_LABEL: "true"}, "Driver": driver, "Scope": "swarm",
         "EnableIPv6": False, "IPAM": {"Driver": "", "Options": None, "Config": []}, "Internal": False,
         "Attachable": False, "Ingress": False, "Options": None}
        for name, driver in (("host", "host"), ("bridge", "bridge"))
    ]


def is_predefined(network: Any) -> bool:
    """Whether a network is one of the swarm's predefined ones (host, bridge)."""
    labels = network.spec.get("Labels")
    return isinstance(labels, Mapping) and labels.get(PREDEFINED_LABEL) == "true"


def state_from_view(view: Any) -> AllocationState:
    """The allocation state of a store (or a component's StoreView): networks, services, tasks, nodes."""
    return state_from_store(view.find("network"), view.find("service"), view.find("task"), view.find("node"))


def unallocated_networks(networks: Iterable[Any]) -> list[Any]:
    """Overlay networks that have no subnet yet (made by someone who did not allocate them)."""
    out = []
    for network in networks:
        ipam = network.extra.get("IPAM")
        driver = network.spec.get("Driver") or "overlay"
        if driver == "overlay" and not (isinstance(ipam, Mapping) and ipam.get("Config")):
            out.append(network)
    return out


def allocate_network(network_id: str, spec: Mapping[str, Any], state: AllocationState) -> dict[str, Any]:
    """The ``extra`` of a new overlay network: its VNI and its subnet with a gateway.

    The first IPAM Config entry is honoured (Subnet, Gateway, IPRange, checked with Swarm's
    words, IpamError); without one the next free /24 of the default pool is taken.
    """
    ipam = _dict(spec.get("IPAM"))
    configs = [c for c in _list(ipam.get("Config")) if isinstance(c, Mapping)]
    if configs:
        subnet, gateway = check_ipam_config(configs[0])
        entry: dict[str, Any] = {"Subnet": subnet}
        if configs[0].get("IPRange"):
            entry["IPRange"] = str(configs[0]["IPRange"])
        entry["Gateway"] = gateway
    else:
        net = next_subnet(state)
        subnet, gateway = str(net), str(net.network_address + 1)
        entry = {"Subnet": subnet, "Gateway": gateway}
    vni = next_vni(state)
    state.add_network(network_id, vni, subnet, gateway)
    options = ipam.get("Options")
    return {
        "DriverOptions": {VXLAN_OPTION: str(vni)},
        "IPAM": {
            "Driver": ipam.get("Driver") or "default",
            "Options": dict(options) if isinstance(options, Mapping) and options else None,
            "Config": [entry],
        },
    }


def release_network(network: Any, state: AllocationState) -> None:
    """Free a removed network's VNI, subnet and addresses."""
    raw = _dict(network.extra.get("DriverOptions")).get(VXLAN_OPTION)
    vni = int(str(raw).split(",", 1)[0]) if raw is not None and str(raw).split(",", 1)[0].isdigit() else None
    state.release_network(network.id, vni)


def network_to_swarm(network: Any) -> dict[str, Any]:
    """A network in the swarm API's shape (``swarm.Network``), as a task's attachment embeds it.

    Spec has Name, Labels, DriverConfiguration, the flags that are set, IPAMOptions as the user
    gave them and Scope; DriverState and IPAMOptions say what was allocated.
    """
    spec = network.spec
    extra = network.extra
    driver = str(spec.get("Driver") or "")
    ipam_spec = _dict(spec.get("IPAM"))
    out_spec: dict[str, Any] = {"Name": spec.get("Name", ""), "Labels": _dict(spec.get("Labels"))}
    out_spec["DriverConfiguration"] = {"Name": driver} if driver else {}
    for key in ("Internal", "Attachable", "Ingress"):
        if spec.get(key):
            out_spec[key] = True
    ipam_driver = str(ipam_spec.get("Driver") or "")
    out_spec["IPAMOptions"] = {"Driver": {"Name": ipam_driver} if ipam_driver else {}}
    given = [{k: c[k] for k in ("Subnet", "IPRange", "Gateway") if c.get(k)}
             for c in _list(ipam_spec.get("Config")) if isinstance(c, Mapping)]
    given = [{("Range" if k == "IPRange" else k): v for k, v in c.items()} for c in given if c]
    if given:
        out_spec["IPAMOptions"]["Configs"] = given
    out_spec["Scope"] = "swarm"
    ipam = _dict(extra.get("IPAM"))
    configs = [{("Range" if k == "IPRange" else k): v for k, v in _dict(c).items() if v}
               for c in _list(ipam.get("Config"))]
    return {
        "ID": network.id,
        "Version": {"Index": network.version},
        "CreatedAt": network.created_at,
        "UpdatedAt": network.updated_at,
        "Spec": out_spec,
        "DriverState": {"Name": driver or "overlay", "Options": _dict(extra.get("DriverOptions"))},
        "IPAMOptions": {"Driver": {"Name": str(ipam.get("Driver") or "default")}, "Configs": configs},
    }


def find_ingress(networks: Iterable[Any]) -> Any | None:
    """The cluster's ingress network (Spec.Ingress), if there is one."""
    for network in networks:
        if network.spec.get("Ingress"):
            return network
    return None


def service_network_ids(spec: Mapping[str, Any]) -> list[str]:
    """The network IDs a service's tasks join, in the spec's order (TaskTemplate.Networks, else Networks)."""
    template = _dict(spec.get("TaskTemplate"))
    attachments = _list(template.get("Networks")) or _list(spec.get("Networks"))
    out: list[str] = []
    for attachment in attachments:
        target = _dict(attachment).get("Target")
        if isinstance(target, str) and target and target not in out:
            out.append(target)
    return out


def allocate_service_endpoint(
    service_id: str,
    spec: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    networks: Mapping[str, Any],
    state: AllocationState,
) -> dict[str, Any]:
    """A service's Endpoint (``extra["Endpoint"]``) for ``spec``, keeping what ``previous`` had.

    ``networks`` maps network ID to the stored network. As Swarm shows it: a service with
    nothing to allocate (no published port and, in vip mode, no network; or dnsrr without
    ports) has ``{"Spec": {}}``; otherwise Spec, Ports (when any) and, in vip mode, VirtualIPs
    ``[{"NetworkID", "Addr": "10.0.1.2/24"}]``, ingress first. A VIP a network already gave
    the service is kept; VIPs on networks the spec left are released.
    """
    endpoint_spec = _dict(spec.get("EndpointSpec"))
    mode = endpoint_spec.get("Mode") or "vip"
    ports = _list(endpoint_spec.get("Ports"))
    wanted = service_network_ids(spec)
    if ports and ingress_ports(endpoint_spec):
        ingress = find_ingress(networks.values())
        if ingress is None:
            raise IpamError("service needs ingress network, but no ingress network is present",
                            code="FailedPrecondition")
        wanted = [ingress.id, *[n for n in wanted if n != ingress.id]]
    if mode == "dnsrr":
        wanted = []
    before = {str(v.get("NetworkID")): v.get("Addr") for v in _list(_dict(previous).get("VirtualIPs"))
              if isinstance(v, Mapping)}
    for network_id, addr in before.items():
        if network_id not in wanted and isinstance(addr, str) and network_id in state.networks:
            state.networks[network_id].release(addr)
    if not ports and not wanted:
        release_ports(service_id, state)
        return {"Spec": {}}
    out: dict[str, Any] = {"Spec": endpoint_spec}
    allocated = allocate_ports(service_id, endpoint_spec, previous, state)
    if allocated:
        out["Ports"] = allocated
    vips: list[dict[str, Any]] = []
    for network_id in wanted:
        pool = state.networks.get(network_id)
        addr = before.get(network_id)
        if pool is None:
            vips.append({"NetworkID": network_id})  # a network without IPAM: no address
            continue
        if not isinstance(addr, str):
            addr = pool.allocate()
        else:
            pool.reserve(addr)
        vips.append({"NetworkID": network_id, "Addr": addr})
    if vips:
        out["VirtualIPs"] = vips
    return out


def release_service_endpoint(service: Any, state: AllocationState) -> None:
    """Free a removed service's VIPs and published ports."""
    endpoint = _dict(service.extra.get("Endpoint"))
    for vip in _list(endpoint.get("VirtualIPs")):
        vip = _dict(vip)
        pool = state.networks.get(str(vip.get("NetworkID")))
        if pool is not None and isinstance(vip.get("Addr"), str):
            pool.release(vip["Addr"])
    release_ports(service.id, state)


def allocate_task(
    task: Any, service: Any | None, networks: Mapping[str, Any], state: AllocationState
) -> list[dict[str, Any]]:
    """A task's NetworksAttachments: an address on each network it joins, ingress first.

    The task joins the networks of its Spec (a copy of the service's TaskTemplate) and, when its
    service publishes a port in ingress mode, the ingress network. An attachment the task
    already has keeps its address (allocation is idempotent). A network that is gone is skipped.
    """
    wanted = service_network_ids({"TaskTemplate": task.spec})
    if service is not None and ingress_ports(service.spec.get("EndpointSpec")):
        ingress = find_ingress(networks.values())
        if ingress is not None:
            wanted = [ingress.id, *[n for n in wanted if n != ingress.id]]
    current: dict[str, list[str]] = {}
    for attachment in _list(task.extra.get("NetworksAttachments")):
        network_id = _dict(_dict(attachment).get("Network")).get("ID")
        if isinstance(network_id, str):
            current[network_id] = [a for a in _list(_dict(attachment).get("Addresses")) if isinstance(a, str)]
    out: list[dict[str, Any]] = []
    for network_id in wanted:
        network = networks.get(network_id)
        if network is None:
            continue
        pool = state.networks.get(network_id)
        addresses = current.get(network_id) or []
        if pool is not None:
            if addresses:
                for address in addresses:
                    pool.reserve(address)
            else:
                addresses = [pool.allocate()]
        out.append({"Network": network_to_swarm(network), "Addresses": addresses})
    return out


def allocate_task_in_view(view: Any, task: Any, state: AllocationState) -> list[dict[str, Any]]:
    """:func:`allocate_task` for the allocator component: service and networks read from ``view``."""
    service_id = task.extra.get("ServiceID")
    service = view.maybe("service", service_id) if isinstance(service_id, str) and service_id else None
    networks = {n.id: n for n in view.find("network")}
    return allocate_task(task, service, networks, state)


def release_task(task: Any, state: AllocationState) -> None:
    """Free a task's addresses (it has ended or was removed)."""
    for attachment in _list(task.extra.get("NetworksAttachments")):
        network_id = str(_dict(_dict(attachment).get("Network")).get("ID"))
        pool = state.networks.get(network_id)
        if pool is None:
            continue
        for address in _list(_dict(attachment).get("Addresses")):
            if isinstance(address, str):
                pool.release(address)


def allocate_node(
    node: Any, network_ids: Iterable[str], networks: Mapping[str, Any], state: AllocationState
) -> list[dict[str, Any]]:
    """A node's Attachments: its own (load-balancer) address on each network it carries.

    Swarm gives every node an address on ingress (the ``ingress-sbox`` endpoint, 10.0.0.2 on
    a one-node Swarm) and one on each other network where a task of the node runs (the
    ``lb-NETWORK`` endpoint); the data plane sends VIP traffic from it. Kept once given;
    addresses on networks the node no longer carries are released.
    """
    wanted = [n for n in network_ids if n in networks]
    current: dict[str, list[str]] = {}
    for attachment in _list(node.extra.get("Attachments")):
        network_id = _dict(_dict(attachment).get("Network")).get("ID")
        if isinstance(network_id, str):
            current[network_id] = [a for a in _list(_dict(attachment).get("Addresses")) if isinstance(a, str)]
    for network_id, addresses in current.items():
        pool = state.networks.get(network_id)
        if network_id not in wanted and pool is not None:
            for address in addresses:
                pool.release(address)
    out: list[dict[str, Any]] = []
    for network_id in wanted:
        pool = state.networks.get(network_id)
        addresses = current.get(network_id) or []
        if pool is not None and not addresses:
            addresses = [pool.allocate()]
        out.append({"Network": network_to_swarm(networks[network_id]), "Addresses": addresses})
    return out
