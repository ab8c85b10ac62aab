"""A manager's cluster routes (manager/engineapi/) against a real store and an in-memory manager.

The manager is :class:`FakeManager`: a real Store, writes applied at once (or refused as Raft
would refuse them), served through the node's real EngineApiServer with aiohttp's test client.
Shapes are compared with what a real Swarm answered (engineapi_ref/), IDs, times and versions
aside; where swarmlet answers differently on purpose, the test says why.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from manager.allocator.ipam import AllocationState
from manager.allocator.networks import allocate_network, ingress_network_spec
from manager.dispatcher.roles import demote_refusal, remove_refusal
from manager.engineapi import HostFacts, ManagerEngineApi
from manager.engineapi.base import control_error
from manager.engineapi.writes import LeaderWrites, write_handler
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError
from manager.state.store import (
    Create,
    Delete,
    Op,
    Store,
    StoredObject,
    Update,
    UpdateOutOfSequence,
    encode_batch,
    format_timestamp,
)
from nodeagent.engineapi import EngineApiServer, NodeFacts, SwarmInfo

REF = pathlib.Path(__file__).parent / "engineapi_ref"
LEADER, FOLLOWER, WORKER, DOWN = "a" * 25, "b" * 25, "w" * 25, "x" * 25
CLUSTER = "c" * 25
INGRESS = "i" * 25
HOST = HostFacts(architecture="x86_64", nano_cpus=2_000_000_000, memory_bytes=1 << 30)


def ref(name: str) -> Any:
    return json.loads((REF / name).read_text())


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class FakeManager:
    """A ManagerView: a real store, writes applied at once unless ``refuse`` says otherwise."""

    def __init__(self) -> None:
        self.store = Store()
        self.node_id = FOLLOWER
        self.host = HOST
        self.leader = LEADER
        self.gone: set[str] = set()  # managers this manager's Raft sees gone
        self.refuse: BaseException | None = None
        self.writes: list[list[Op]] = []
        self._index = itertools.count(1)

    def leader_id(self) -> str:
        return self.leader

    def unreachable(self) -> frozenset[str]:
        return frozenset(self.gone)

    def cluster(self) -> StoredObject | None:
        found = self.store.find("cluster")
        return found[0] if found else None

    async def write(self, ops: Sequence[Op]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.writes.append(list(ops))
        result = self.store.apply(
            next(self._index), encode_batch(list(ops), now=format_timestamp(time.time()))
        )
        if not result.ok:
            assert result.error is not None
            raise result.error

    async def change_role(self, node_id: str, role: str) -> None:
        """As the control API's leader decides it (manager/dispatcher/roles.py), every manager a voter."""
        managers = [n.id for n in self.store.find("node", filters=lambda n: n.spec.get("Role") == "manager")]
        if role == "worker":
            refusal = demote_refusal(node_id, managers=managers, voters=managers, learners=[],
                                     self_id=self.leader, active=managers)  # fmt: skip
            if refusal is not None:
                raise control_error(refusal.code, refusal.message)
        node = self.store.get("node", node_id)
        await self.write([Update("node", node_id, node.version, spec={**node.spec, "Role": role})])

    async def remove_node(self, node_id: str, force: bool) -> None:
        """As the control API's leader decides it, every manager a Raft member."""
        node = self.store.get("node", node_id)
        managers = [n.id for n in self.store.find("node", filters=lambda n: n.spec.get("Role") == "manager")]
        refusal = remove_refusal(node_id, role=str(node.spec.get("Role")), members=managers,
                                 state=str(node.status.get("State")), force=force)  # fmt: skip
        if refusal is not None:
            raise control_error(refusal.code, refusal.message)
        await self.write([Delete("node", node_id)])

    def seed(self) -> None:
        tokens = {"JoinTokens": {"Worker": "SWMTKN-1-w", "Manager": "SWMTKN-1-m"}}
        ops: list[Op] = [Create("cluster", CLUSTER, {"Name": "default"}, {}, tokens)]
        # The ingress network, as the cluster's bootstrap makes it (manager/runtime.py).
        ingress = ingress_network_spec()
        allocated = allocate_network(INGRESS, ingress, AllocationState())
        ops.append(Create("network", INGRESS, ingress, {}, allocated))
        for nid, host, role, state in (
            (LEADER, "manager1", "manager", "ready"),
            (FOLLOWER, "manager2", "manager", "ready"),
            (WORKER, "worker1", "worker", "ready"),
            (DOWN, "worker2", "worker", "down"),
        ):
            extra: dict[str, Any] = {"Description": {"Hostname": host, "Engine": {"EngineVersion": "0.1.0"}}}
            if role == "manager":
                extra["ManagerStatus"] = {
                    "Leader": nid == FOLLOWER,  # stale on purpose: Raft decides
                    "Reachability": "reachable",
                    "Addr": f"127.0.1.{host[-1]}:2377",
                }
            labels = {"zone": "a"} if nid == WORKER else {}
            spec = {"Name": "", "Role": role, "Availability": "active", "Labels": labels}
            ops.append(Create("node", nid, spec, {"State": state, "Addr": "127.0.0.1"}, extra))
        asyncio.run(self.write(ops))
        self.writes.clear()


Client = TestClient[web.Request, web.Application]


def serve(manager: FakeManager, check: Callable[[Client], Awaitable[None]]) -> None:
    server = EngineApiServer(
        NodeFacts(node_id=FOLLOWER, hostname="manager2", engine_version="0.1.0"),
        lambda: SwarmInfo("active", FOLLOWER, "127.0.1.2"),
        "127.0.0.1",
        0,
    )
    server.attach(ManagerEngineApi(manager))

    async def main() -> None:
        async with TestClient(TestServer(server.app)) as client:
            await check(client)

    asyncio.run(main())


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    return m


async def ids(client: Client, query: str = "") -> list[str]:
    resp = await client.get("/v1.47/nodes" + query)
    assert resp.status == 200, await resp.text()
    return sorted(n["ID"] for n in await resp.json())


def test_node_rendering_is_the_engine_apis(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        node = await (await client.get(f"/nodes/{LEADER}")).json()
        want = shape(ref("node.json"))
        want["Spec"]["Labels"] = {}  # the recorded node had a label; this one has none
        assert shape(node) == want
        assert node["ManagerStatus"] == {
            "Leader": True,
            "Reachability": "reachable",
            "Addr": "127.0.1.1:2377",
        }
        assert node["Description"]["Resources"] == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 1 << 30}
        # The stored flag said manager2 leads; Raft says manager1, and Raft wins. Leader is
        # omitted when false, as Docker's omitempty does.
        follower = await (await client.get("/nodes/manager2")).json()
        assert follower["ManagerStatus"] == {"Reachability": "reachable", "Addr": "127.0.1.2:2377"}
        worker = await (await client.get(f"/nodes/{WORKER[:6]}")).json()
        assert "ManagerStatus" not in worker
        assert worker["Spec"] == {"Labels": {"zone": "a"}, "Role": "worker", "Availability": "active"}

    serve(manager, check)


def test_inspect_unknown_node(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        resp = await client.get("/nodes/nosuch")
        assert (resp.status, await resp.json()) == (404, ref("err-node-unknown.json"))
        resp = await client.get("/nodes/")  # no id: not a route, as in Docker's router
        assert (resp.status, await resp.json()) == (404, {"message": "page not found"})

    serve(manager, check)


def test_list_filters(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        assert await ids(client) == sorted([LEADER, FOLLOWER, WORKER, DOWN])
        assert await ids(client, '?filters={"role":{"manager":true}}') == [LEADER, FOLLOWER]
        assert await ids(client, '?filters={"role":["worker"]}') == [WORKER, DOWN]
        assert await ids(client, '?filters={"name":{"worker":true}}') == [WORKER, DOWN]
        assert await ids(client, '?filters={"name":["manager1","worker2"]}') == [LEADER, DOWN]
        assert await ids(client, '?filters={"id":["aaa"]}') == [LEADER]
        assert await ids(client, '?filters={"node.label":["zone=a"]}') == [WORKER]
        assert await ids(client, '?filters={"node.label":["zone=b"]}') == []
        assert await ids(client, '?filters={"node.label":["zone"],"role":["worker"]}') == [WORKER]
        assert await ids(client, '?filters={"label":["zone"]}') == []  # engine labels, not node labels
        assert await ids(client, '?filters={"membership":["accepted"]}') == sorted(
            [LEADER, FOLLOWER, WORKER, DOWN]
        )
        for query, message in (
            ('{"bogus":["x"]}', "Invalid filter 'bogus'"),
            ('{"role":["boss"]}', "Invalid role filter: 'boss'"),
            ('{"membership":["x"]}', "Invalid membership filter: 'x'"),
            ("notjson", "invalid character 'o' in literal null (expecting 'u')"),
        ):
            resp = await client.get("/nodes", params={"filters": query})
            # Docker 20.10 answered the value errors 500; later Docker (errdefs.InvalidParameter) 400.
            assert (resp.status, (await resp.json())["message"]) == (400, message)

    serve(manager, check)


def test_update_labels_and_availability_with_the_version_read(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        node = await (await client.get("/nodes/worker1")).json()
        spec = node["Spec"] | {"Labels": {"zone": "a", "db": "true"}, "Availability": "drain"}
        resp = await client.post(
            f"/v1.47/nodes/{WORKER}/update?version={node['Version']['Index']}", json=spec
        )
        assert resp.status == 200, await resp.text()
        after = await (await client.get("/nodes/worker1")).json()
        assert after["Spec"] == {
            "Labels": {"zone": "a", "db": "true"},
            "Role": "worker",
            "Availability": "drain",
        }
        assert after["Version"]["Index"] > node["Version"]["Index"]
        # The same stale version again: Swarm's words and code, and nothing changes.
        spec["Labels"] = {}
        resp = await client.post(f"/nodes/{WORKER}/update?version={node['Version']['Index']}", json=spec)
        assert (resp.status, await resp.json()) == (500, ref("err-node-update-out-of-sequence.json"))
        assert (await (await client.get("/nodes/worker1")).json())["Spec"]["Labels"] == {
            "zone": "a",
            "db": "true",
        }

    serve(manager, check)


def test_update_refusals(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        url = f"/nodes/{WORKER}/update?version=1"
        cases: list[tuple[str, Any, int, str]] = [
            (
                url,
                '{"labels":"x"}',
                400,
                "json: cannot unmarshal string into Go struct field NodeSpec.Labels "
                "of type map[string]string",
            ),
            (url, '{"Role":"boss","Availability":"active"}', 400, 'invalid Role: "boss"'),
            (url, '{"Role":"worker","Availability":"sleepy"}', 400, 'invalid Availability: "sleepy"'),
            (url, "{}", 400, 'invalid Role: ""'),
            (
                f"/nodes/{WORKER}/update",
                '{"Role":"worker"}',
                400,
                "invalid node version '': strconv.ParseUint: parsing \"\": invalid syntax",
            ),
            (
                f"/nodes/{WORKER}/update?version=abc",
                '{"Role":"worker"}',
                400,
                "invalid node version 'abc': strconv.ParseUint: parsing \"abc\": invalid syntax",
            ),
            (
                "/nodes/nosuch/update?version=1",
                '{"Role":"worker","Availability":"active"}',
                404,
                "node nosuch not found",
            ),
        ]
        for path, body, status, message in cases:
            resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
            assert (resp.status, (await resp.json())["message"]) == (status, message), body

    serve(manager, check)
    assert manager.writes == []


def test_promote_and_demote_take_the_control_apis_role_path(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        node = await (await client.get(f"/nodes/{WORKER}")).json()
        spec = node["Spec"]
        resp = await client.post(f"/nodes/{WORKER}/update?version={node['Version']['Index']}",
                                 json=spec | {"Role": "manager"})  # fmt: skip
        assert resp.status == 200
        promoted = manager.store.get("node", WORKER)
        assert promoted.spec["Role"] == "manager" and promoted.spec["Labels"] == {"zone": "a"}
        resp = await client.post(f"/nodes/{WORKER}/update?version={promoted.version}",
                                 json=spec | {"Role": "worker"})  # fmt: skip
        assert resp.status == 200
        assert manager.store.get("node", WORKER).spec["Role"] == "worker"

    serve(manager, check)
    # Only the role writes: the spec sent was otherwise unchanged.
    assert [[op.spec["Role"] for op in batch] for batch in manager.writes] == [["manager"], ["worker"]]


def test_demoting_the_last_manager_is_swarms_refusal() -> None:
    m = FakeManager()
    m.seed()
    asyncio.run(m.write([Delete("node", FOLLOWER)]))

    async def check(client: Client) -> None:
        node = await (await client.get(f"/nodes/{LEADER}")).json()
        resp = await client.post(
            f"/nodes/{LEADER}/update?version={node['Version']['Index']}",
            json=node["Spec"] | {"Role": "worker"},
        )
        assert (resp.status, await resp.json()) == (400, ref("err-node-demote-last-manager.json"))

    serve(m, check)


def test_remove_follows_swarms_rules(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        for query in ("", "?force=1"):
            resp = await client.delete(f"/nodes/{LEADER}{query}")
            want = ref("err-node-rm-manager.json")["message"].replace("mtf9fxg3e8rd2d0hazmk6yj01", LEADER)
            assert (resp.status, (await resp.json())["message"]) == (400, want)
        resp = await client.delete("/nodes/worker1")
        assert resp.status == 400
        assert (await resp.json())["message"] == (
            f"rpc error: code = FailedPrecondition desc = node {WORKER} is not down and can't be removed"
        )
        assert (await client.delete("/nodes/worker2")).status == 200  # down: no force needed
        assert (await client.delete("/v1.47/nodes/worker1?force=true")).status == 200
        resp = await client.delete("/nodes/worker1")
        assert (resp.status, await resp.json()) == (404, {"message": "node worker1 not found"})
        assert await ids(client) == [LEADER, FOLLOWER]

    serve(manager, check)


def test_swarm_and_info(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        swarm = await (await client.get("/v1.47/swarm")).json()
        want = shape(ref("swarm.json"))
        # The reference cluster's spec has every section; swarmlet's seed here only a name.
        assert shape(swarm).keys() == want.keys()
        assert swarm["JoinTokens"] == {"Worker": "SWMTKN-1-w", "Manager": "SWMTKN-1-m"}
        assert swarm["ID"] == CLUSTER and swarm["DataPathPort"] == 4789
        info = (await (await client.get("/info")).json())["Swarm"]
        assert info.keys() == ref("info-swarm-part.json").keys()
        assert info["Cluster"].keys() == ref("info-swarm-part.json")["Cluster"].keys()
        assert (info["NodeID"], info["LocalNodeState"], info["ControlAvailable"]) == (
            FOLLOWER,
            "active",
            True,
        )
        assert (info["Nodes"], info["Managers"]) == (4, 2)
        assert info["RemoteManagers"] == [
            {"NodeID": LEADER, "Addr": "127.0.1.1:2377"},
            {"NodeID": FOLLOWER, "Addr": "127.0.1.2:2377"},
        ]

    serve(manager, check)


def test_writes_without_a_leader_get_swarms_message(manager: FakeManager) -> None:
    manager.refuse = NoLeaderError()

    async def check(client: Client) -> None:
        node = await (await client.get("/nodes/worker1")).json()
        resp = await client.post(
            f"/nodes/{WORKER}/update?version={node['Version']['Index']}", json=node["Spec"]
        )
        # swarmkit's errLostQuorum reaches the daemon as gRPC Unknown: Docker's 500 (moby#35109).
        want = f"rpc error: code = Unknown desc = {NO_LEADER_MESSAGE}"
        assert (resp.status, await resp.json()) == (500, {"message": want})
        # Reads are local: still served.
        assert len(await ids(client)) == 4

    serve(manager, check)


# ---------------------------------------------------------------------- forwarding to the leader


def test_a_follower_forwards_writes_to_the_leader_over_grpc() -> None:
    """One mechanism for every write: the follower's LeaderWrites hands the ops to the leader."""
    leader_store = Store()
    follower_store = Store()
    index = itertools.count(1)

    async def leader_propose(ops: Sequence[Op]) -> None:
        data = encode_batch(list(ops), now=format_timestamp(time.time()))
        i = next(index)
        result = leader_store.apply(i, data)
        follower_store.apply(i, data)  # replication, instantly
        if not result.ok:
            assert result.error is not None
            raise result.error

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((write_handler(leader_propose, leader_store),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:

            async def follower_propose(ops: Sequence[Op]) -> None:
                raise NotLeaderError(LEADER, f"127.0.0.1:{port}")

            writes = LeaderWrites(follower_propose, follower_store, timeout=5.0)
            await writes.write(
                [
                    Create(
                        "node",
                        WORKER,
                        {"Name": "", "Role": "worker", "Availability": "active", "Labels": {}},
                        {"State": "ready"},
                        {},
                    )
                ]
            )
            assert follower_store.get("node", WORKER).spec["Role"] == "worker"
            version = leader_store.get("node", WORKER).version
            with pytest.raises(UpdateOutOfSequence):
                await writes.write(
                    [
                        Update(
                            "node",
                            WORKER,
                            version + 7,
                            spec={"Name": "", "Role": "worker", "Availability": "drain", "Labels": {}},
                        )
                    ]
                )
            no_leader = LeaderWrites(_no_leader_known, follower_store)
            with pytest.raises(NoLeaderError):
                await no_leader.write([])
        finally:
            await server.stop(0)

    asyncio.run(main())


async def _no_leader_known(ops: Sequence[Op]) -> None:
    raise NotLeaderError("", "")


def test_the_list_encodes_a_node_again_when_it_or_the_leader_changes(manager: FakeManager) -> None:
    """``GET /nodes`` keeps each node's JSON between calls (bench/engine_api.py): a write to the
    node, a new leader or a removal must show at once, byte for byte what inspect renders."""

    async def listed(client: Client) -> tuple[bytes, dict[str, Any]]:
        resp = await client.get("/v1.41/nodes")
        assert resp.status == 200 and resp.content_type == "application/json"
        body = await resp.read()
        return body, {n["Description"]["Hostname"]: n for n in json.loads(body)}

    async def check(client: Client) -> None:
        body, _ = await listed(client)
        again, nodes = await listed(client)
        assert again == body
        inspected = [await (await client.get(f"/nodes/{nid}")).json() for nid in sorted(
            n["ID"] for n in nodes.values())]
        assert body == (json.dumps(inspected, separators=(",", ":")) + "\n").encode()
        assert nodes["manager1"]["ManagerStatus"].get("Leader") is True

        version = nodes["worker1"]["Version"]["Index"]
        spec = nodes["worker1"]["Spec"] | {"Labels": {"zone": "b"}}
        assert (await client.post(f"/nodes/worker1/update?version={version}", json=spec)).status == 200
        _, nodes = await listed(client)
        assert nodes["worker1"]["Spec"]["Labels"] == {"zone": "b"}
        assert nodes["worker1"]["Version"]["Index"] > version

        manager.leader = FOLLOWER  # a failover: Raft's leader decides the flag
        _, nodes = await listed(client)
        assert "Leader" not in nodes["manager1"]["ManagerStatus"]
        assert nodes["manager2"]["ManagerStatus"]["Leader"] is True

        assert (await client.delete("/nodes/worker2")).status == 200
        _, nodes = await listed(client)
        assert sorted(nodes) == ["manager1", "manager2", "worker1"]

    serve(manager, check)


def test_a_manager_raft_sees_gone_is_unreachable_though_its_node_object_says_reachable(
    manager: FakeManager,
) -> None:
    """Without quorum no write commits, so a stopped manager's Node object keeps "reachable";
    the answering manager's Raft view decides the column, as a real Swarm's does (its transcript:
    the surviving leader lists the two stopped managers Unreachable at once)."""

    async def check(client: Client) -> None:
        before = {n["Description"]["Hostname"]: n for n in await (await client.get("/nodes")).json()}
        assert before["manager1"]["ManagerStatus"]["Reachability"] == "reachable"
        manager.leader, manager.node_id = FOLLOWER, FOLLOWER  # manager2 leads, manager1 is gone
        manager.gone = {LEADER}
        after = {n["Description"]["Hostname"]: n for n in await (await client.get("/nodes")).json()}
        assert after["manager1"]["ManagerStatus"] == {"Reachability": "unreachable", "Addr": "127.0.1.1:2377"}
        assert after["manager1"]["Status"]["State"] == "ready"  # Swarm too keeps the last status
        assert after["manager2"]["ManagerStatus"]["Leader"] is True
        inspected = await (await client.get("/nodes/manager1")).json()
        assert inspected["ManagerStatus"]["Reachability"] == "unreachable"
        manager.gone = set()  # heard from again
        again = {n["Description"]["Hostname"]: n for n in await (await client.get("/nodes")).json()}
        assert again["manager1"]["ManagerStatus"]["Reachability"] == "reachable"

    serve(manager, check)
