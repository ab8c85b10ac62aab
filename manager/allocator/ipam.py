"""IPAM for overlay networks: VNIs, subnets and addresses, as Swarm's managers hand them out.

Everything here is pure and deterministic: no clock, no randomness, no I/O. The allocation
state is never stored on its own; :func:`state_from_store` rebuilds it from the store's
networks, services, tasks and nodes (what each already holds), so a new leader that reads the
same store knows exactly what the old one had handed out. Freeing is implicit in that rule: a
removed network's VNI and subnet, a removed service's VIPs and a dead task's addresses are
free as soon as the store no longer holds them as alive.

Swarm's numbers (swarmkit's cnmallocator with libnetwork's overlay driver and default IPAM):

* VNIs (VXLAN IDs) from 4096 up to 2^24 - 1: the ingress network is made first and gets 4096,
  user networks 4097, 4098... A network given a subnet by the user still takes the next VNI.
* Subnets from the cluster's default address pool, 10.0.0.0/8, in /24s: ingress 10.0.0.0/24,
  then the next /24 no network already has. A subnet the user names (``--subnet``) is taken as
  given: Swarm (Docker 20.10, asked here) refuses no overlap between swarm networks, and
  automatic allocation skips only the /24s some network has exactly.
* The gateway is the subnet's first address unless the user names one inside the subnet.
* Addresses (VIPs, task and node attachments) are handed out serially as libnetwork's IPAM
  does in swarm mode: the next one after the highest in use, wrapping round to the lowest free
  one, never the network's own address, its gateway or its broadcast address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_ADDR_POOL",
    "DEFAULT_SUBNET_SIZE",
    "FIRST_VNI",
    "LAST_VNI",
    "VXLAN_OPTION",
    "AllocationState",
    "IpamError",
    "NetworkAddresses",
    "check_ipam_config",
    "next_subnet",
    "next_vni",
    "record_port",
    "state_from_store",
    "task_alive",
]

DEFAULT_ADDR_POOL = "10.0.0.0/8"  # Swarm's DefaultAddrPool (docker swarm init --default-addr-pool)
DEFAULT_SUBNET_SIZE = 24  # Swarm's SubnetSize: each network without --subnet gets a /24
FIRST_VNI = 4096  # the overlay driver's first VXLAN ID (ingress takes it)
LAST_VNI = (1 << 24) - 1  # a VNI is 24 bits
VXLAN_OPTION = "com.docker.network.driver.overlay.vxlanid_list"  # where Docker shows the VNI

_RUNNING = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


class IpamError(Exception):
    """An allocation refused, in Swarm's words.

    ``status`` is the HTTP status Docker answers with; ``code`` the gRPC code swarmkit gives
    (Docker shows ``rpc error: code = CODE desc = MESSAGE``), None for the daemon's own plain
    errors (``Invalid subnet ...``).
    """

    def __init__(self, message: str, status: int = 400, code: str | None = "InvalidArgument") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class NetworkAddresses:
    """One network's subnet and the addresses of it in use (gateway included)."""

    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    used: set[ipaddress.IPv4Address] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.used.add(self.gateway)

    def allocate(self) -> str:
        """The next free address in CIDR form ("10.0.1.2/24"); IpamError when the subnet is full."""
        hosts_first = int(self.subnet.network_address) + 1
        hosts_last = int(self.subnet.broadcast_address) - 1
        if self.subnet.prefixlen >= 31:  # no network or broadcast address to skip
            hosts_first, hosts_last = int(self.subnet.network_address), int(self.subnet.broadcast_address)
        start = max((int(a) for a in self.used), default=hosts_first - 1) + 1
        size = hosts_last - hosts_first + 1
        for step in range(size):
            candidate = hosts_first + (start - hosts_first + step) % size
            address = ipaddress.IPv4Address(candidate)
            if address not in self.used:
                self.used.add(address)
                return f"{address}/{self.subnet.prefixlen}"
        raise IpamError("no available IPv4 addresses on this network's address pools",
                        status=500, code="ResourceExhausted")

    def reserve(self, cidr: str) -> None:
        """Mark an address (``10.0.1.3/24`` or bare) as in use, as read back from the store."""
        address = _address(cidr)
        if address is not None and address in self.subnet:
            self.used.add(address)

    def release(self, cidr: str) -> None:
        """Free an address; the gateway stays reserved."""
        address = _address(cidr)
        if address is not None and address != self.gateway:
            self.used.discard(address)


@dataclass
class AllocationState:
    """What the managers have handed out: VNIs, subnets, addresses per network, published ports.

    ``ports`` maps (protocol, published port) to the service ID that holds it in ingress mode;
    ``host_ports`` the same for host mode (several services may share one: the scheduler keeps
    them apart). Build it with :func:`state_from_store`; allocation functions update it in place.
    """

    vnis: set[int] = field(default_factory=set)
    subnets: dict[str, ipaddress.IPv4Network] = field(default_factory=dict)
    networks: dict[str, NetworkAddresses] = field(default_factory=dict)
    ports: dict[tuple[str, int], str] = field(default_factory=dict)
    host_ports: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    pool: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network(DEFAULT_ADDR_POOL))
    subnet_size: int = DEFAULT_SUBNET_SIZE

    def add_network(self, network_id: str, vni: int | None, subnet: str, gateway: str) -> None:
        """Record an allocated network (as read from the store or just allocated)."""
        if vni is not None:
            self.vnis.add(vni)
        net = ipaddress.IPv4Network(subnet, strict=False)
        self.subnets[network_id] = net
        self.networks[network_id] = NetworkAddresses(net, ipaddress.IPv4Address(gateway))

    def release_network(self, network_id: str, vni: int | None) -> None:
        """Free a removed network's VNI, subnet and every address in it."""
        if vni is not None:
            self.vnis.discard(vni)
        self.subnets.pop(network_id, None)
        self.networks.pop(network_id, None)


def _address(cidr: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(cidr.split("/", 1)[0])
    except ValueError:
        return None


def next_vni(state: AllocationState) -> int:
    """The lowest VNI from 4096 not in use; IpamError when all 2^24 - 4096 are taken."""
    vni = FIRST_VNI
    while vni in state.vnis:
        vni += 1
    if vni > LAST_VNI:
        raise IpamError("could not obtain vxlan id for pool: no available vxlan ids",
                        status=500, code="ResourceExhausted")
    return vni


def next_subnet(state: AllocationState) -> ipaddress.IPv4Network:
    """The first /24 of the default pool that no network holds exactly (see the module's rules)."""
    taken = set(state.subnets.values())
    for candidate in state.pool.subnets(new_prefix=state.subnet_size):
        if candidate not in taken:
            return candidate
    raise IpamError("could not find an available, non-overlapping IPv4 address pool among the "
                    "defaults to assign to the network", status=500, code="ResourceExhausted")


def check_ipam_config(config: Mapping[str, Any]) -> tuple[str, str]:
    """Check one IPAM Config entry {Subnet, Gateway, IPRange}; return (subnet, gateway).

    Words and statuses as Docker 20.10 answered: a subnet that does not parse (or none, with a
    gateway) is the daemon's plain 500 ``Invalid subnet X : invalid CIDR address: X``; the
    gateway and the range are swarmkit's InvalidArgument (400) ``ipam configuration: subnet X
    does not contain gateway Y``.
    """
    subnet_text = str(config.get("Subnet") or "")
    try:
        subnet = ipaddress.IPv4Network(subnet_text, strict=False)
    except ValueError:
        raise IpamError(f"Invalid subnet {subnet_text} : invalid CIDR address: {subnet_text}",
                        status=500, code=None) from None
    ip_range = str(config.get("IPRange") or "")
    if ip_range:
        try:
            start = ipaddress.IPv4Network(ip_range, strict=False).network_address
        except ValueError:
            raise IpamError(f"ipam configuration: invalid range {ip_range}") from None
        if start not in subnet:
            raise IpamError(f"ipam configuration: subnet {subnet_text} does not contain range {ip_range}")
    gateway_text = str(config.get("Gateway") or "")
    if gateway_text:
        try:
            gateway = ipaddress.IPv4Address(gateway_text)
        except ValueError:
            raise IpamError(f"ipam configuration: invalid gateway {gateway_text}") from None
        if gateway not in subnet:
            raise IpamError(
                f"ipam configuration: subnet {subnet_text} does not contain gateway {gateway_text}")
    else:
        gateway = subnet.network_address + 1 if subnet.prefixlen < 31 else subnet.network_address
    return str(subnet), str(gateway)


def task_alive(task: Any) -> bool:
    """A task holds its addresses while it is, and is meant to be, at most running (swarmkit's rule)."""
    state = task.status.get("State") or "new"
    desired = task.extra.get("DesiredState") or "running"
    return state in _RUNNING and desired in _RUNNING


def _vni_of(extra: Mapping[str, Any]) -> int | None:
    options = extra.get("DriverOptions")
    raw = options.get(VXLAN_OPTION) if isinstance(options, Mapping) else None
    try:
        return int(str(raw).split(",", 1)[0]) if raw is not None else None
    except ValueError:
        return None


def _ipam_config(extra: Mapping[str, Any]) -> Mapping[str, Any] | None:
    ipam = extra.get("IPAM")
    configs = ipam.get("Config") if isinstance(ipam, Mapping) else None
    if isinstance(configs, list) and configs and isinstance(configs[0], Mapping):
        return configs[0]
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def state_from_store(
    networks: Iterable[Any],
    services: Iterable[Any] = (),
    tasks: Iterable[Any] = (),
    nodes: Iterable[Any] = (),
) -> AllocationState:
    """The allocation state the store implies: a pure function of its objects.

    Networks give VNIs and subnets (extra DriverOptions and IPAM, as :mod:`.networks` writes
    them); services give VIPs (extra Endpoint.VirtualIPs) and published ports (Endpoint.Ports,
    else their EndpointSpec); tasks that are alive give their NetworksAttachments' addresses;
    nodes give their Attachments' addresses (a node's load-balancer endpoint on a network).
    """
    state = AllocationState()
    for network in networks:
        config = _ipam_config(network.extra)
        if config is None:
            vni = _vni_of(network.extra)
            if vni is not None:
                state.vnis.add(vni)
            continue
        state.add_network(network.id, _vni_of(network.extra), str(config.get("Subnet")),
                          str(config.get("Gateway") or ""))

    def reserve(network_id: Any, cidr: Any) -> None:
        pool = state.networks.get(str(network_id))
        if pool is not None and isinstance(cidr, str):
            pool.reserve(cidr)

    for service in services:
        endpoint = service.extra.get("Endpoint")
        endpoint = endpoint if isinstance(endpoint, Mapping) else {}
        for vip in _list(endpoint.get("VirtualIPs")):
            if isinstance(vip, Mapping):
                reserve(vip.get("NetworkID"), vip.get("Addr"))
        ports = endpoint.get("Ports")
        if not isinstance(ports, list):
            spec_endpoint = service.spec.get("EndpointSpec")
            ports = spec_endpoint.get("Ports") if isinstance(spec_endpoint, Mapping) else []
        for port in _list(ports):
            record_port(state, service.id, port)
    for task in tasks:
        if not task_alive(task):
            continue
        for attachment in _list(task.extra.get("NetworksAttachments")):
            if not isinstance(attachment, Mapping) or not isinstance(attachment.get("Network"), Mapping):
                continue
            for cidr in _list(attachment.get("Addresses")):
                reserve(attachment["Network"].get("ID"), cidr)
    for node in nodes:
        for attachment in _list(node.extra.get("Attachments")):
            if isinstance(attachment, Mapping) and isinstance(attachment.get("Network"), Mapping):
                for cidr in _list(attachment.get("Addresses")):
                    reserve(attachment["Network"].get("ID"), cidr)
    return state


def record_port(state: AllocationState, service_id: str, port: Any) -> None:
    """Mark one published port of ``service_id`` (a PortConfig) as taken."""
    if not isinstance(port, Mapping):
        return
    published = port.get("PublishedPort")
    if not isinstance(published, int) or isinstance(published, bool) or published <= 0:
        return
    key = (str(port.get("Protocol") or "tcp"), published)
    if (port.get("PublishMode") or "ingress") == "host":
        state.host_ports.setdefault(key, set()).add(service_id)
    else:
        state.ports[key] = service_id
