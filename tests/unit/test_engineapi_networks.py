"""``/networks`` and services on networks against a real store and an in-memory manager.

Shapes are a real Swarm's (api/network-labnet.json, networks-swarm.json, networks.json); every
refusal is checked for Docker 20.10's status and words (asked of a real Swarm on this machine)
and for nothing written. A node with no manager attached answers with its own networks.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_engineapi_nodes import FOLLOWER, INGRESS, LEADER, WORKER, Client, FakeManager, serve

from manager.allocator.networks import predefined_network_specs
from manager.state.store import Create, Update
from nodeagent.engineapi import EngineApiServer, NodeFacts, SwarmInfo

VXLAN = "com.docker.network.driver.overlay.vxlanid_list"
FAILED = "rpc error: code = FailedPrecondition desc ="
REAL = pathlib.Path(__file__).parent / "engineapi_ref"


def create_body(name: str, **fields: Any) -> dict[str, Any]:
    """What the docker CLI v28 sends for ``docker network create -d overlay NAME``."""
    body: dict[str, Any] = {
        "Driver": "overlay", "Scope": "", "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
        "Options": {}, "Labels": {}, "Name": name,
    }  # fmt: skip
    body.update(fields)
    return body


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    return m


async def make(client: Client, name: str, **fields: Any) -> str:
    resp = await client.post("/v1.47/networks/create", json=create_body(name, **fields))
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert answer["Warning"] == "" and len(answer["Id"]) == 25
    return str(answer["Id"])


async def refused(client: Client, method: str, path: str, status: int, message: str, **kwargs: Any) -> None:
    resp = await client.request(method, path, **kwargs)
    assert (resp.status, await resp.json()) == (status, {"message": message})


def test_create_and_inspect_as_a_real_swarm_shows_them(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        labnet = await make(client, "labnet")
        resp = await client.get("/v1.47/networks/labnet")
        got = await resp.json()
        # api/networks-swarm.json's labnet, IDs and times aside.
        want = {
            "Name": "labnet", "Id": labnet, "Created": got["Created"], "Scope": "swarm", "Driver": "overlay",
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": None, "Options": {VXLAN: "4097"}, "Labels": None,
        }  # fmt: skip
        assert got == want and list(got) == list(want)
        by_prefix = await (await client.get(f"/v1.47/networks/{labnet[:5]}?scope=swarm")).json()
        by_id = await (await client.get(f"/networks/{labnet}")).json()
        assert by_prefix == by_id == got
        lab2 = await make(client, "labnet2", Attachable=True, Labels={"a": "b"}, Internal=True,
                          IPAM={"Config": [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.9"}]})
        got2 = await (await client.get(f"/v1.47/networks/{lab2}")).json()
        assert got2["IPAM"]["Config"] == [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.9"}]
        assert (got2["Attachable"], got2["Internal"], got2["Labels"]) == (True, True, {"a": "b"})
        assert got2["Options"] == {VXLAN: "4098"}
        ingress = await (await client.get("/v1.47/networks/ingress")).json()
        assert (ingress["Id"], ingress["Ingress"], ingress["Driver"], ingress["Options"]) == (
            INGRESS, True, "overlay", {VXLAN: "4096"})
        assert ingress["IPAM"]["Config"] == [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]

    serve(manager, check)


def test_list_has_the_swarms_and_the_nodes_networks_and_filters(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        await make(client, "labnet")
        await make(client, "front", Labels={"com.docker.stack.namespace": "demo"})

        async def names(query: str = "") -> list[str]:
            resp = await client.get("/v1.47/networks" + query)
            assert resp.status == 200, await resp.text()
            return sorted(n["Name"] for n in await resp.json())

        everything = ["bridge", "docker_gwbridge", "front", "host", "ingress", "labnet", "none"]
        assert await names() == everything
        assert await names('?filters={"driver":{"overlay":true}}') == ["front", "ingress", "labnet"]
        local_names = ["bridge", "docker_gwbridge", "host", "none"]
        assert await names('?filters={"scope":{"local":true}}') == local_names
        assert await names('?filters={"name":{"ingr":true}}') == ["ingress"]
        assert await names('?filters={"label":{"com.docker.stack.namespace=demo":true}}') == ["front"]
        assert await names('?filters={"type":{"builtin":true}}') == ["bridge", "host", "none"]
        assert await names('?filters={"type":{"custom":true}}') == ["docker_gwbridge", "front", "ingress",
                                                                     "labnet"]
        assert await names(f'?filters={{"id":{{"{INGRESS[:6]}":true}}}}') == ["ingress"]
        await refused(client, "GET", '/v1.47/networks?filters={"type":{"bogus":true}}', 500,
                      "invalid filter: 'type'='bogus'")
        await refused(client, "GET", '/v1.47/networks?filters={"bogus":{"x":true}}', 400,
                      "Invalid filter 'bogus'")
        local = [n for n in await (await client.get("/v1.47/networks")).json() if n["Scope"] == "local"]
        # api/networks.json's shapes for the node's own networks.
        recorded = json.loads((REAL / "networks.json").read_text())
        real = {n["Name"]: n for n in recorded if n["Scope"] == "local"}
        for network in local:
            assert list(network) == list(real[network["Name"]])
            assert network["Driver"] == real[network["Name"]]["Driver"] and len(network["Id"]) == 64
        again = [n for n in await (await client.get("/v1.47/networks")).json() if n["Scope"] == "local"]
        assert again == local  # stable IDs

    serve(manager, check)


@pytest.mark.parametrize(("body", "status", "message"), [
    (create_body("ingress"), 409, "network with name ingress already exists"),
    (create_body("bridge"), 409, "network with name bridge already exists"),
    (create_body("default"), 403, "operation is not permitted on predefined default network "),
    (create_body(""), 500, "invalid name: "),
    (create_body("d1", Scope="local"), 403, "cannot downgrade network scope for overlay networks"),
    (create_body("bad name!"), 400,
     "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component"),
    (create_body("i2", Ingress=True, Attachable=True), 400,
     "rpc error: code = InvalidArgument desc = ingress network cannot be attachable"),
    (create_body("i3", Ingress=True), 409,
     f"rpc error: code = AlreadyExists desc = ingress network ({INGRESS}) is already present"),
    (create_body("d2", IPAM={"Config": [{"Subnet": "300.0.0.0/24"}]}), 500,
     "Invalid subnet 300.0.0.0/24 : invalid CIDR address: 300.0.0.0/24"),
    (create_body("d3", IPAM={"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.8.0.1"}]}), 400,
     "rpc error: code = InvalidArgument desc = ipam configuration: subnet 10.9.0.0/24 does not contain "
     "gateway 10.8.0.1"),
    (create_body("d4", IPAM={"Config": [{"Gateway": "10.8.0.1"}]}), 500,
     "Invalid subnet  : invalid CIDR address: "),
    (create_body("br", Driver="bridge"), 501, "swarmlet makes overlay networks scoped to the swarm only, not "
                                              "'bridge' networks"),
    ({"Name": 3}, 400, "json: cannot unmarshal number into Go struct field NetworkCreateRequest.Name of type "
                       "string"),
])  # fmt: skip
def test_create_refusals_write_nothing(manager: FakeManager, body: dict[str, Any], status: int,
                                       message: str) -> None:
    async def check(client: Client) -> None:
        await refused(client, "POST", "/v1.47/networks/create", status, message, json=body)
        assert manager.writes == []

    serve(manager, check)


def test_remove_and_its_refusals(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        labnet = await make(client, "labnet")
        resp = await client.post("/v1.47/services/create", json={
            "Name": "netsvc", "TaskTemplate": {"ContainerSpec": {"Image": "lab/web:1"},
                                               "Networks": [{"Target": "labnet"}]}})
        sid = (await resp.json())["ID"]
        resp = await client.post("/v1.47/services/create", json={
            "Name": "pp", "TaskTemplate": {"ContainerSpec": {"Image": "lab/web:1"}},
            "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}})
        pp = (await resp.json())["ID"]
        manager.writes.clear()
        await refused(client, "DELETE", "/v1.47/networks/labnet", 400,
                      f"{FAILED} network {labnet} is in use by service {sid}")
        await refused(client, "DELETE", "/v1.47/networks/ingress", 400,
                      f"{FAILED} ingress network cannot be removed because service {pp} depends on it")
        await refused(client, "DELETE", "/v1.47/networks/bridge", 403,
                      "bridge is a pre-defined network and cannot be removed")
        gw = next(n for n in await (await client.get("/networks")).json() if n["Name"] == "docker_gwbridge")
        await refused(client, "DELETE", "/v1.47/networks/docker_gwbridge", 403,
                      f"error while removing network: network docker_gwbridge id {gw['Id']} has active "
                      "endpoints")
        await refused(client, "DELETE", "/v1.47/networks/nosuch", 404, "network nosuch not found")
        await refused(client, "GET", "/v1.47/networks/nosuch", 404, "network nosuch not found")
        await refused(client, "GET", "/v1.47/networks/labnet?scope=local", 404, "network labnet not found")
        # The in-use refusal is the store's, when the removal applies (a race with a new service
        # cannot slip through): the attempt was proposed and refused; nothing changed.
        assert [n.id for n in manager.store.find("network")] == sorted([labnet, INGRESS])
        for service in (sid, pp):
            assert (await client.delete(f"/v1.47/services/{service}")).status == 200
        assert (await client.delete("/v1.47/networks/labnet")).status == 204
        assert (await client.delete(f"/v1.47/networks/{INGRESS}")).status == 204
        assert manager.store.find("network") == []
        # The ingress network may be made again, as `docker network create --ingress` does.
        again = await make(client, "ingress", Ingress=True)
        got = await (await client.get(f"/v1.47/networks/{again}")).json()
        assert got["Options"] == {VXLAN: "4096"} and got["IPAM"]["Config"][0]["Subnet"] == "10.0.0.0/24"

    serve(manager, check)


def test_services_name_networks_and_get_vips(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        labnet = await make(client, "labnet")
        other = await make(client, "other")

        async def create(spec: dict[str, Any]) -> dict[str, Any]:
            resp = await client.post("/v1.47/services/create", json=spec)
            assert resp.status == 201, await resp.text()
            found = await client.get(f"/v1.47/services/{(await resp.json())['ID']}")
            got: dict[str, Any] = await found.json()
            return got

        base = {"TaskTemplate": {"ContainerSpec": {"Image": "lab/web:1"}}}
        web = await create({**base, "Name": "web", "TaskTemplate": {
            "ContainerSpec": {"Image": "lab/web:1"},
            "Networks": [{"Target": "labnet", "Aliases": ["db"]}, {"Target": other[:4]}]},
            "EndpointSpec": {"Ports": [{"TargetPort": 80}]}})
        resolved = [{"Target": labnet, "Aliases": ["db"]}, {"Target": other}]
        assert web["Spec"]["TaskTemplate"]["Networks"] == resolved
        assert web["Endpoint"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30000,
                                             "PublishMode": "ingress"}]
        assert web["Endpoint"]["VirtualIPs"] == [{"NetworkID": INGRESS, "Addr": "10.0.0.2/24"},
                                                 {"NetworkID": labnet, "Addr": "10.0.1.2/24"},
                                                 {"NetworkID": other, "Addr": "10.0.2.2/24"}]
        # An update keeps the VIPs and the automatic port, and drops the network it leaves.
        spec = web["Spec"]
        spec["TaskTemplate"]["Networks"] = [{"Target": "labnet"}]
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = "lab/web:2"
        version = web["Version"]["Index"]
        resp = await client.post(f"/v1.47/services/{web['ID']}/update?version={version}", json=spec)
        assert resp.status == 200, await resp.text()
        updated = await (await client.get(f"/v1.47/services/{web['ID']}")).json()
        assert updated["Endpoint"]["VirtualIPs"] == web["Endpoint"]["VirtualIPs"][:2]
        assert updated["Endpoint"]["Ports"] == web["Endpoint"]["Ports"]
        manager.writes.clear()
        for spec, status, message in (
            ({**base, "Name": "n2", "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Networks": [
                {"Target": "nosuch"}]}}, 500, "network nosuch not found"),
            ({**base, "Name": "n6", "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Networks": [
                {"Target": "ingress"}]}}, 400,
             'rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress '
             'network "ingress"'),
            ({**base, "Name": "n7", "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Networks": [
                {"Target": "docker_gwbridge"}]}}, 403,
             "The network docker_gwbridge cannot be used with services. Only networks scoped to the swarm "
             "can be used, such as those created with the overlay driver."),
            ({**base, "Name": "p2", "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 30000}]}},
             400,
             f"rpc error: code = InvalidArgument desc = port '30000' is already in use by service 'web' "
             f"({web['ID']}) as an ingress port"),
            ({**base, "Name": "p3", "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"TargetPort": 80}]}}, 400,
             "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode "
             "can't be used with dnsrr mode"),
        ):
            await refused(client, "POST", "/v1.47/services/create", status, message, json=spec)
        assert manager.writes == []

    serve(manager, check)


def test_a_service_with_ports_needs_the_ingress_network() -> None:
    manager = FakeManager()
    asyncio.run(manager.write([Create("cluster", "c" * 25, {"Name": "default"}, {}, {})]))
    manager.writes.clear()

    async def check(client: Client) -> None:
        await refused(client, "POST", "/v1.47/services/create", 400,
                      f"{FAILED} service needs ingress network, but no ingress network is present",
                      json={"Name": "q1", "TaskTemplate": {"ContainerSpec": {"Image": "x"}},
                            "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8081}]}})
        assert manager.writes == []

    serve(manager, check)


@pytest.mark.parametrize(("state", "create_status", "create_message"), [
    ("inactive", 500, 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
                      "connect this node to swarm and try again."),
    ("active", 403, "Cannot create a multi-host network from a worker node. Please create the network from a "
                    "manager node."),
])
def test_a_node_without_a_manager_has_its_own_networks(state: str, create_status: int,
                                                        create_message: str) -> None:
    server = EngineApiServer(NodeFacts(node_id=FOLLOWER, hostname="worker1", engine_version="0.1.0"),
                             lambda: SwarmInfo(state, FOLLOWER, "127.0.1.4"), "127.0.0.1", 0)

    async def main() -> None:
        async with TestClient(TestServer(server.app)) as client:
            listed = await (await client.get("/v1.47/networks")).json()
            assert sorted(n["Name"] for n in listed) == ["bridge", "docker_gwbridge", "host", "none"]
            bridge = await (await client.get("/v1.47/networks/bridge")).json()
            assert bridge["Driver"] == "bridge" and bridge["Scope"] == "local"
            await refused(client, "POST", "/v1.47/networks/create", create_status, create_message,
                          json=create_body("x"))
            await refused(client, "DELETE", "/v1.47/networks/none", 403,
                          "none is a pre-defined network and cannot be removed")
            await refused(client, "GET", "/v1.47/networks/nosuch", 404, "network nosuch not found")

    asyncio.run(main())


def test_the_swarms_predefined_host_and_bridge_networks(manager: FakeManager) -> None:
    """Made with the cluster (as swarmkit does): hidden from lists, found with scope=swarm, usable."""
    specs = predefined_network_specs()
    assert [s["Name"] for s in specs] == ["host", "bridge"]
    asyncio.run(manager.write([Create("network", s["Name"][0] * 25, s, {}, {}) for s in specs]))

    async def check(client: Client) -> None:
        listed = await (await client.get("/v1.47/networks")).json()
        assert sorted((n["Name"], n["Scope"]) for n in listed if n["Name"] in ("host", "bridge")) == [
            ("bridge", "local"), ("host", "local")]
        swarm = await (await client.get("/v1.47/networks/bridge?scope=swarm")).json()
        # As Docker 20.10 answered for its predefined swarm bridge.
        assert {k: swarm[k] for k in ("Id", "Scope", "Driver", "IPAM", "Options", "Labels")} == {
            "Id": "b" * 25, "Scope": "swarm", "Driver": "bridge",
            "IPAM": {"Driver": "", "Options": None, "Config": []}, "Options": None,
            "Labels": {"com.docker.swarm.predefined": "true"}}
        resp = await client.post("/v1.47/services/create", json={
            "Name": "h", "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Networks": [{"Target": "host"}]}})
        assert resp.status == 201, await resp.text()
        found = await (await client.get("/v1.47/services/h")).json()
        # As Swarm showed n4 (--network host): a VIP entry with no address.
        assert found["Endpoint"] == {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": "h" * 25}]}
        assert found["Spec"]["TaskTemplate"]["Networks"] == [{"Target": "h" * 25}]
        await refused(client, "POST", "/v1.47/services/create", 404,
                      "could not find the corresponding predefined swarm network: network none not found",
                      json={"Name": "n", "TaskTemplate": {"ContainerSpec": {"Image": "x"},
                                                          "Networks": [{"Target": "none"}]}})
        await refused(client, "DELETE", "/v1.47/networks/host", 403,
                      "host is a pre-defined network and cannot be removed")

    serve(manager, check)


def test_inspect_on_a_node_with_a_task_shows_its_containers_and_the_peers(manager: FakeManager) -> None:
    """As api/network-labnet.json: the node's own tasks and its lb-NETWORK endpoint under Containers,
    every node carrying the network under Peers; a node that carries none shows neither."""

    async def check(client: Client) -> None:
        labnet = await make(client, "labnet")
        got = await (await client.get("/v1.47/networks/labnet")).json()
        assert got["Containers"] is None and "Peers" not in got  # no task on it yet
        network = {"ID": labnet}

        def task(tid: str, node: str, slot: int, address: str, state: str = "running") -> Create:
            return Create("task", tid, {"ContainerSpec": {"Image": "nginx"}},
                          {"State": state, "ContainerStatus": {"ContainerID": tid[0] * 64}},
                          {"ServiceID": "s" * 25, "Slot": slot, "NodeID": node,
                           "DesiredState": "running", "ServiceAnnotations": {"Name": "netsvc"},
                           "NetworksAttachments": [{"Network": network, "Addresses": [address]}]})

        follower = manager.store.get("node", FOLLOWER)
        await manager.write([
            task("t" * 25, FOLLOWER, 1, "10.0.1.3/24"), task("u" * 25, WORKER, 2, "10.0.1.4/24"),
            task("v" * 25, LEADER, 3, "10.0.1.6/24", state="shutdown"),
            Update("node", FOLLOWER, follower.version, extra={
                **follower.extra, "Attachments": [{"Network": network, "Addresses": ["10.0.1.5/24"]}]}),
        ])  # fmt: skip
        got = await (await client.get("/v1.47/networks/labnet")).json()
        ids = {k: v["EndpointID"] for k, v in got["Containers"].items()}
        assert got["Containers"] == {
            "t" * 64: {"Name": f"netsvc.1.{'t' * 25}", "EndpointID": ids.get("t" * 64),
                       "MacAddress": "02:42:0a:00:01:03", "IPv4Address": "10.0.1.3/24", "IPv6Address": ""},
            "lb-labnet": {"Name": "labnet-endpoint", "EndpointID": ids.get("lb-labnet"),
                          "MacAddress": "02:42:0a:00:01:05", "IPv4Address": "10.0.1.5/24", "IPv6Address": ""},
        }  # fmt: skip
        assert all(len(c["EndpointID"]) == 64 for c in got["Containers"].values())
        assert got["Peers"] == [{"Name": "manager2", "IP": "127.0.0.1"},
                                {"Name": "worker1", "IP": "127.0.0.1"}]
        assert list(got)[-2:] == ["Labels", "Peers"]
        query = json.dumps({"name": ["labnet"]})
        listed = await (await client.get(f"/v1.47/networks?filters={query}")).json()
        assert listed[0]["Containers"] is None  # the list shows what the cluster knows, as Swarm's

    serve(manager, check)


def test_every_node_shows_its_ingress_sbox_on_ingress_as_a_real_swarm() -> None:
    """As api/network-ingress.json: ingress-sbox (ingress-endpoint) with the node's own ingress
    address, on a node that runs no task on ingress too; every node with one under Peers."""
    from types import SimpleNamespace

    from manager.engineapi.render_networks import with_node_view

    network = {"ID": "ingressid"}

    def node(node_id: str, host: str, addr: str) -> Any:
        attachments = [{"Network": network, "Addresses": [addr]}]
        return SimpleNamespace(id=node_id, status={"Addr": "10.9.0.1"},
                               extra={"Description": {"Hostname": host}, "Attachments": attachments})

    rendered = {"Name": "ingress", "Id": "ingressid", "Ingress": True, "Containers": None}
    got = with_node_view(rendered, "n1", [], [node("n1", "manager1", "10.0.0.2/24"),
                                              node("n2", "worker1", "10.0.0.3/24")], {})  # fmt: skip
    assert got["Containers"] == {"ingress-sbox": {
        "Name": "ingress-endpoint", "EndpointID": got["Containers"]["ingress-sbox"]["EndpointID"],
        "MacAddress": "02:42:0a:00:00:02", "IPv4Address": "10.0.0.2/24", "IPv6Address": ""}}
    assert [p["Name"] for p in got["Peers"]] == ["manager1", "worker1"]
