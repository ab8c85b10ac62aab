"""The allocator's pure core: IPAM (VNIs, subnets, addresses), published ports, endpoints, tasks.

Expected numbers are a real Swarm's (Docker 20.10 asked on this machine, and the recordings in
../shared/ref/real-swarm): ingress 4096 and 10.0.0.0/24, user networks from 4097 and 10.0.1.0/24,
a VIP before the tasks' addresses, automatic published ports from 30000, Swarm's words.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from manager.allocator.ipam import (
    AllocationState,
    IpamError,
    NetworkAddresses,
    check_ipam_config,
    next_vni,
    state_from_store,
)
from manager.allocator.networks import (
    allocate_network,
    allocate_node,
    allocate_service_endpoint,
    allocate_task,
    allocate_task_in_view,
    ingress_network_spec,
    network_to_swarm,
    release_network,
    release_service_endpoint,
    release_task,
    state_from_view,
    unallocated_networks,
)
from manager.allocator.ports import allocate_ports, check_endpoint_spec, check_port_conflicts
from manager.component.base import StoreView
from manager.state.store import Create, Store, encode_batch

VXLAN = "com.docker.network.driver.overlay.vxlanid_list"


@dataclass
class Obj:
    """Just what the allocator reads of a stored object."""

    kind: str
    id: str
    spec: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    created_at: str = "2026-11-29T00:00:00Z"
    updated_at: str = "2026-11-29T00:00:00Z"


def overlay(name: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"Name": name, "Driver": "overlay", "Labels": {},
                            "IPAM": {"Driver": "default", "Config": []}}
    spec.update(fields)
    return spec


class Cluster:
    """Networks made one after another, as the Engine API makes them."""

    def __init__(self) -> None:
        self.networks: dict[str, Obj] = {}
        self.services: list[Obj] = []
        self.tasks: list[Obj] = []
        self.add("ingress", ingress_network_spec())

    def state(self) -> AllocationState:
        return state_from_store(self.networks.values(), self.services, self.tasks)

    def add(self, network_id: str, spec: dict[str, Any]) -> Obj:
        extra = allocate_network(network_id, spec, self.state())
        self.networks[network_id] = Obj("network", network_id, spec, extra)
        return self.networks[network_id]

    def service(self, service_id: str, spec: dict[str, Any]) -> Obj:
        endpoint = allocate_service_endpoint(service_id, spec, None, self.networks, self.state())
        obj = Obj("service", service_id, spec, {"Endpoint": endpoint})
        self.services.append(obj)
        return obj

    def task(self, task_id: str, service: Obj, state: str = "new") -> Obj:
        task = Obj("task", task_id, copy.deepcopy(service.spec["TaskTemplate"]),
                   {"ServiceID": service.id, "DesiredState": "running"}, {"State": state})
        task.extra["NetworksAttachments"] = allocate_task(task, service, self.networks, self.state())
        self.tasks.append(task)
        return task


def subnet(network: Obj) -> tuple[str, str, str]:
    config = network.extra["IPAM"]["Config"][0]
    return config["Subnet"], config["Gateway"], network.extra["DriverOptions"][VXLAN]


def svc(name: str, networks: list[str] = (), ports: list[dict[str, Any]] = (),  # type: ignore[assignment]
        mode: str = "vip") -> dict[str, Any]:
    spec: dict[str, Any] = {"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
                            "EndpointSpec": {"Mode": mode}}
    if networks:
        spec["TaskTemplate"]["Networks"] = [{"Target": n} for n in networks]
    if ports:
        spec["EndpointSpec"]["Ports"] = list(ports)
    return spec


def port(published: int = 0, target: int = 80, mode: str = "ingress",
         protocol: str = "tcp") -> dict[str, Any]:
    out: dict[str, Any] = {"Protocol": protocol, "TargetPort": target, "PublishMode": mode}
    if published:
        out["PublishedPort"] = published
    return out


# ---------------------------------------------------------------------- networks


def test_ingress_then_user_networks_take_swarms_vnis_and_subnets() -> None:
    c = Cluster()
    assert subnet(c.networks["ingress"]) == ("10.0.0.0/24", "10.0.0.1", "4096")
    labnet = c.add("labnet", overlay("labnet"))
    labnet2 = c.add("labnet2", overlay("labnet2", IPAM={"Config": [{"Subnet": "10.99.0.0/24"}]}))
    appnet = c.add("appnet", overlay("appnet"))
    # 09-networks.txt and networks-swarm.json: 10.0.1.0/24 (4097), 10.99.0.0/24 (4098), 10.0.2.0/24 (4099).
    assert subnet(labnet) == ("10.0.1.0/24", "10.0.1.1", "4097")
    assert subnet(labnet2) == ("10.99.0.0/24", "10.99.0.1", "4098")
    assert subnet(appnet) == ("10.0.2.0/24", "10.0.2.1", "4099")
    assert labnet.extra["IPAM"] == {"Driver": "default", "Options": None,
                                    "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]}


def test_a_given_subnet_and_gateway_are_honoured_and_skipped_by_automatic_ones() -> None:
    c = Cluster()
    gw = c.add("gw1", overlay("gw1", IPAM={"Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.7"}]}))
    assert subnet(gw) == ("10.0.1.0/24", "10.0.1.7", "4097")
    # The next automatic /24 skips 10.0.1.0/24, which gw1 holds exactly.
    assert subnet(c.add("auto", overlay("auto"))) == ("10.0.2.0/24", "10.0.2.1", "4098")


def test_overlapping_subnets_are_accepted_as_swarm_accepts_them() -> None:
    # Docker 20.10's Swarm refused none of these (asked on this machine): a /16 over ingress's
    # /24, the same /24 twice, a /25 inside another network's /24.
    c = Cluster()
    for name, given in (("ov2", "10.0.0.0/16"), ("dup1", "10.0.5.0/24"), ("dup2", "10.0.5.0/24"),
                        ("dup3", "10.0.5.128/25")):
        assert subnet(c.add(name, overlay(name, IPAM={"Config": [{"Subnet": given}]})))[0] == given
    # A larger subnet given by hand does not stop automatic /24s inside it (Swarm gave 10.0.1.0/24).
    assert subnet(c.add("auto", overlay("auto")))[0] == "10.0.1.0/24"


@pytest.mark.parametrize(("config", "status", "code", "message"), [
    ({"Subnet": "300.0.0.0/24"}, 500, None,
     "Invalid subnet 300.0.0.0/24 : invalid CIDR address: 300.0.0.0/24"),
    ({"Gateway": "10.8.0.1"}, 500, None, "Invalid subnet  : invalid CIDR address: "),
    ({"Subnet": "10.9.0.0/24", "Gateway": "10.8.0.1"}, 400, "InvalidArgument",
     "ipam configuration: subnet 10.9.0.0/24 does not contain gateway 10.8.0.1"),
    ({"Subnet": "10.9.0.0/24", "IPRange": "10.8.0.0/25"}, 400, "InvalidArgument",
     "ipam configuration: subnet 10.9.0.0/24 does not contain range 10.8.0.0/25"),
])
def test_ipam_config_refusals_are_dockers(config: dict[str, str], status: int, code: str | None,
                                          message: str) -> None:
    with pytest.raises(IpamError) as caught:
        check_ipam_config(config)
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, message)


def test_pool_exhaustion_and_vni_reuse() -> None:
    state = AllocationState()
    state.subnet_size = 9  # ten-bit pool of /9s: two subnets only
    allocate_network("a", overlay("a"), state)
    allocate_network("b", overlay("b"), state)
    with pytest.raises(IpamError, match="non-overlapping IPv4 address pool"):
        allocate_network("c", overlay("c"), state)
    assert next_vni(state) == 4098
    state.release_network("a", 4096)
    assert next_vni(state) == 4096
    assert allocate_network("c", overlay("c"), state)["IPAM"]["Config"][0]["Subnet"] == "10.0.0.0/9"


def test_addresses_are_serial_skip_the_gateway_and_run_out() -> None:
    pool = NetworkAddresses(ipaddress.IPv4Network("10.0.9.0/29"), ipaddress.IPv4Address("10.0.9.1"))
    got = [pool.allocate() for _ in range(5)]
    assert got == ["10.0.9.2/29", "10.0.9.3/29", "10.0.9.4/29", "10.0.9.5/29", "10.0.9.6/29"]
    with pytest.raises(IpamError, match="no available IPv4 addresses"):
        pool.allocate()
    pool.release("10.0.9.3/29")
    pool.release("10.0.9.1/29")  # the gateway stays reserved
    assert pool.allocate() == "10.0.9.3/29"
    pool.release("10.0.9.4/29")
    pool.release("10.0.9.6/29")
    # Serial: after the highest in use (5), so 6 before the lower 4.
    assert [pool.allocate(), pool.allocate()] == ["10.0.9.6/29", "10.0.9.4/29"]


def test_a_network_made_without_allocation_is_found_and_released() -> None:
    c = Cluster()
    bare = Obj("network", "bare", overlay("bare"))
    assert unallocated_networks([*c.networks.values(), bare]) == [bare]
    state = c.state()
    labnet = c.add("labnet", overlay("labnet"))
    state = c.state()
    release_network(labnet, state)
    assert "labnet" not in state.networks and 4097 not in state.vnis


# ---------------------------------------------------------------------- endpoints and tasks


def test_vips_then_task_addresses_as_the_recording_has_them() -> None:
    c = Cluster()
    c.add("labnet", overlay("labnet"))
    netsvc = c.service("netsvc", svc("netsvc", ["labnet"]))
    # network-labnet.json: VIP 10.0.1.2, tasks 10.0.1.3 and 10.0.1.4.
    assert netsvc.extra["Endpoint"] == {"Spec": {"Mode": "vip"},
                                        "VirtualIPs": [{"NetworkID": "labnet", "Addr": "10.0.1.2/24"}]}
    t1, t2 = c.task("t1", netsvc), c.task("t2", netsvc)
    assert [a["Addresses"] for a in t1.extra["NetworksAttachments"]] == [["10.0.1.3/24"]]
    assert [a["Addresses"] for a in t2.extra["NetworksAttachments"]] == [["10.0.1.4/24"]]
    attached = t1.extra["NetworksAttachments"][0]["Network"]
    assert attached["Spec"] == {"Name": "labnet", "Labels": {}, "DriverConfiguration": {"Name": "overlay"},
                                "IPAMOptions": {"Driver": {"Name": "default"}}, "Scope": "swarm"}
    assert attached["DriverState"] == {"Name": "overlay", "Options": {VXLAN: "4097"}}
    assert attached["IPAMOptions"] == {"Driver": {"Name": "default"},
                                       "Configs": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]}
    # Allocation is idempotent: a task that has its address keeps it.
    assert allocate_task(t1, netsvc, c.networks, c.state()) == t1.extra["NetworksAttachments"]


def test_published_ports_join_ingress_first_and_get_automatic_ports() -> None:
    c = Cluster()
    c.add("a1", overlay("a1"))
    web = c.service("web", svc("web", ["a1"], [port(9000)]))
    auto = c.service("auto", svc("auto", [], [port(), port(target=81)]))
    # As Swarm showed n7 and p4: ingress first; 30000 and 30001 for ports given no number.
    assert web.extra["Endpoint"]["VirtualIPs"] == [{"NetworkID": "ingress", "Addr": "10.0.0.2/24"},
                                                   {"NetworkID": "a1", "Addr": "10.0.1.2/24"}]
    assert [p["PublishedPort"] for p in auto.extra["Endpoint"]["Ports"]] == [30000, 30001]
    assert auto.extra["Endpoint"]["Spec"]["Ports"][0] == port()  # the spec is kept as given
    task = c.task("t", web)
    assert [a["Network"]["ID"] for a in task.extra["NetworksAttachments"]] == ["ingress", "a1"]
    assert task.extra["NetworksAttachments"][0]["Network"]["Spec"]["Ingress"] is True
    assert task.extra["NetworksAttachments"][0]["Network"]["Spec"]["DriverConfiguration"] == {}


def test_host_mode_dnsrr_and_nothing_to_allocate_as_swarm_shows_them() -> None:
    c = Cluster()
    c.add("a1", overlay("a1"))
    host = c.service("p6", svc("p6", [], [port(mode="host")]))
    assert host.extra["Endpoint"] == {"Spec": {"Mode": "vip", "Ports": [port(mode="host")]},
                                      "Ports": [port(mode="host")]}
    assert c.service("n5", svc("n5", ["a1"], mode="dnsrr")).extra["Endpoint"] == {"Spec": {}}
    assert c.service("plain", svc("plain")).extra["Endpoint"] == {"Spec": {}}
    assert c.task("t", host).extra["NetworksAttachments"] == []


def test_an_update_keeps_vips_and_ports_and_releases_what_it_drops() -> None:
    c = Cluster()
    c.add("a1", overlay("a1"))
    c.add("a2", overlay("a2"))
    web = c.service("web", svc("web", ["a1"], [port()]))
    before = web.extra["Endpoint"]
    state = c.state()
    after = allocate_service_endpoint("web", svc("web", ["a2", "a1"], [port()]), before, c.networks, state)
    ingress_vip, a1_vip = before["VirtualIPs"]
    # Ingress first, then the spec's order; the VIPs it had are kept, a2's is new.
    assert after["VirtualIPs"] == [ingress_vip, {"NetworkID": "a2", "Addr": "10.0.2.2/24"}, a1_vip]
    assert after["Ports"] == before["Ports"]
    dropped = allocate_service_endpoint("web", svc("web", ["a2"]), after, c.networks, state)
    assert dropped["VirtualIPs"] == [{"NetworkID": "a2", "Addr": "10.0.2.2/24"}]
    assert "10.0.1.2" not in {str(a) for a in state.networks["a1"].used}
    assert ("tcp", 30000) not in state.ports


def test_state_rebuilt_from_the_store_frees_removed_services_and_dead_tasks() -> None:
    c = Cluster()
    c.add("labnet", overlay("labnet"))
    one = c.service("one", svc("one", ["labnet"], [port()]))
    task = c.task("t", one)
    state = c.state()
    assert {str(a) for a in state.networks["labnet"].used} == {"10.0.1.1", "10.0.1.2", "10.0.1.3"}
    assert state.ports == {("tcp", 30000): "one"}
    task.status["State"] = "failed"  # a dead task holds nothing
    assert {str(a) for a in c.state().networks["labnet"].used} == {"10.0.1.1", "10.0.1.2"}
    c.services.remove(one)  # a removed service neither
    rebuilt = c.state()
    assert {str(a) for a in rebuilt.networks["labnet"].used} == {"10.0.1.1"}
    assert rebuilt.ports == {}
    # Releasing in place gives what a rebuild gives.
    c.services.append(one)
    task.status["State"] = "running"
    state = c.state()
    release_task(task, state)
    release_service_endpoint(one, state)
    assert state.networks["labnet"].used == rebuilt.networks["labnet"].used and state.ports == {}


def test_node_attachments_take_their_own_address_and_count_in_the_rebuild() -> None:
    c = Cluster()
    node = Obj("node", "n1", {})
    node.extra["Attachments"] = allocate_node(node, ["ingress"], c.networks, c.state())
    assert node.extra["Attachments"][0]["Addresses"] == ["10.0.0.2/24"]
    state = state_from_store(c.networks.values(), nodes=[node])
    web = allocate_service_endpoint("web", svc("web", [], [port(8080)]), None, c.networks, state)
    assert web["VirtualIPs"] == [{"NetworkID": "ingress", "Addr": "10.0.0.3/24"}]  # as the recording
    assert allocate_node(node, [], c.networks, state) == []


def test_network_to_swarm_for_the_ingress_network() -> None:
    c = Cluster()
    ingress = network_to_swarm(c.networks["ingress"])
    assert ingress["Spec"] == {"Name": "ingress", "Labels": {}, "DriverConfiguration": {}, "Ingress": True,
                               "IPAMOptions": {"Driver": {}}, "Scope": "swarm"}
    assert ingress["DriverState"] == {"Name": "overlay", "Options": {VXLAN: "4096"}}


# ---------------------------------------------------------------------- port checks


def test_port_conflicts_in_swarms_words() -> None:
    c = Cluster()
    p1 = c.service("4zw652afh5oefpjp60hkx4qql", svc("p1", [], [port(8080)]))
    c.service("l12l8xrq4wvohsvrfvxuldu00", svc("p3", [], [port()]))
    c.service("h1", svc("h1", [], [port(9090, mode="host")]))
    ingress = "port '8080' is already in use by service 'p1' (4zw652afh5oefpjp60hkx4qql) as an ingress port"
    for spec_ports, message in (
        ([port(8080)], ingress),
        ([port(8080, mode="host")], ingress),
        ([port(30000)], "port '30000' is already in use by service 'p3' (l12l8xrq4wvohsvrfvxuldu00) as an "
                        "ingress port"),
        ([port(9090)], "port '9090' is already in use by service 'h1' (h1) as a host-published port"),
    ):
        with pytest.raises(IpamError) as caught:
            check_port_conflicts({"Ports": spec_ports}, "", c.services)
        got = (caught.value.message, caught.value.code, caught.value.status)
        assert got == (message, "InvalidArgument", 400)
    # Not conflicts: another protocol, host mode beside host mode, the service itself, an unpublished port.
    check_port_conflicts({"Ports": [port(8080, protocol="udp")]}, "", c.services)
    check_port_conflicts({"Ports": [port(9090, mode="host")]}, "", c.services)
    check_port_conflicts({"Ports": [port(8080)]}, p1.id, c.services)
    check_port_conflicts({"Ports": [port()]}, "", c.services)


def test_endpoint_spec_checks() -> None:
    for spec, message in (
        ({"Mode": "dnsrr", "Ports": [port(80)]},
         "EndpointSpec: port published with ingress mode can't be used with dnsrr mode"),
        ({"Ports": [port(80), port(80, target=81)]}, "EndpointSpec: duplicate published ports provided"),
    ):
        with pytest.raises(IpamError) as caught:
            check_endpoint_spec(spec)
        assert caught.value.message == message
    check_endpoint_spec({"Mode": "dnsrr", "Ports": [port(80, mode="host")]})


def test_automatic_ports_fill_the_lowest_free_and_run_out() -> None:
    state = AllocationState()
    state.ports = {("tcp", n): "x" for n in range(30000, 32767)}
    assert allocate_ports("s", {"Ports": [port()]}, None, state)[0]["PublishedPort"] == 32767
    with pytest.raises(IpamError, match="30000-32767"):
        allocate_ports("t", {"Ports": [port()]}, None, state)
    # A port named by hand outside the range is taken as given; udp has its own numbers.
    assert allocate_ports("u", {"Ports": [port(40000), port(protocol="udp")]}, None, state)[1][
        "PublishedPort"] == 30000


def test_the_allocator_components_calls_on_a_real_store() -> None:
    """What the allocator component does for a new task, on a StoreView over a real store."""
    store = Store()
    ingress = ingress_network_spec()
    spec = svc("web", ["lab"], [port(8080)])
    ops: list[Any] = [Create("network", "ingress", ingress, {}, allocate_network("ingress", ingress,
                                                                                 AllocationState()))]
    store.apply(1, encode_batch(ops, now="2026-11-29T00:00:00Z"))
    lab = overlay("lab")
    view = StoreView(store)
    ops = [Create("network", "lab", lab, {}, allocate_network("lab", lab, state_from_view(view)))]
    store.apply(2, encode_batch(ops, now="2026-11-29T00:00:01Z"))
    networks = {n.id: n for n in view.find("network")}
    endpoint = allocate_service_endpoint("web", spec, None, networks, state_from_view(view))
    task = {"ServiceID": "web", "DesiredState": "running"}
    ops = [Create("service", "web", spec, {}, {"Endpoint": endpoint}),
           Create("task", "t1", spec["TaskTemplate"], {"State": "new"}, task)]
    store.apply(3, encode_batch(ops, now="2026-11-29T00:00:02Z"))
    state = state_from_view(view)
    attachments = allocate_task_in_view(view, view.get("task", "t1"), state)
    assert [(a["Network"]["ID"], a["Addresses"]) for a in attachments] == [
        ("ingress", ["10.0.0.3/24"]), ("lab", ["10.0.1.3/24"])]  # after the VIPs .2
    second = state_from_view(view)  # the component writes; until then a rebuild does not know it
    assert allocate_task_in_view(view, view.get("task", "t1"), second) == attachments
