"""The swarm routes: init, join, leave and unlock on the node; update and unlock key on managers.

The node's routes are served with a fake membership (what nodeagent/membership.py does is tested
in test_membership.py); the manager's with the real store behind test_engineapi_nodes' fake
manager. Words and codes are Docker's (engineapi_ref/, five-nodes/x-multi.txt for joins).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_engineapi_nodes import CLUSTER, FOLLOWER, FakeManager

from manager.ca.tokens import ClusterCredentials, parse_token, rotate_token
from manager.engineapi import ManagerEngineApi
from manager.engineapi.clusterspec import SpecRefused, merge_init_spec, updated_spec
from manager.engineapi.swarm import manager_stats
from manager.runtime import running_cluster_spec
from manager.state.raft.config import RaftConfig
from manager.state.store import Update
from manager.state.store.objects import default_cluster_spec, thaw
from nodeagent.engineapi import EngineApiServer, JoinFailed, NodeFacts, NodeSwarmRoutes, SwarmInfo
from nodeagent.engineapi.swarmnode import ALREADY_IN_SWARM, JOIN_TIMEOUT, leave_refusal, resolve_address

REF = pathlib.Path(__file__).parent / "engineapi_ref"
Client = TestClient[web.Request, web.Application]
CREDS = ClusterCredentials.create()


def ref(name: str) -> Any:
    return json.loads((REF / name).read_text())


class FakeMembership:
    """A node's membership that records what it was asked; ``join_outcome`` decides joins."""

    def __init__(self, role: str = "") -> None:
        self._role = role
        self.calls: list[tuple[Any, ...]] = []
        self.join_outcome: BaseException | str = "worker"

    @property
    def role(self) -> str:
        return self._role

    def in_swarm(self) -> bool:
        return bool(self._role)

    async def init(self, advertise_addr: str, spec: dict[str, Any], *, timeout: float) -> str:
        self.calls.append(("init", advertise_addr, spec))
        self._role = "manager"
        return "n" * 25

    async def join(self, remote_addrs: list[str], token: str, advertise_addr: str, *, timeout: float) -> str:
        self.calls.append(("join", remote_addrs, token, advertise_addr))
        if isinstance(self.join_outcome, BaseException):
            raise self.join_outcome
        self._role = self.join_outcome
        return self.join_outcome

    async def leave(self) -> None:
        self.calls.append(("leave",))
        self._role = ""


def node_server(membership: FakeMembership, manager: FakeManager | None = None) -> EngineApiServer:
    def info() -> SwarmInfo:
        if not membership.in_swarm():
            return SwarmInfo(node_addr="127.0.0.1")
        return SwarmInfo("active", FOLLOWER, "127.0.0.1")

    server = EngineApiServer(NodeFacts(node_id=FOLLOWER, hostname="manager2", engine_version="0.1.0"),
                             info, "127.0.0.1", 0)
    server.serve_swarm(NodeSwarmRoutes(membership, server))
    if manager is not None:
        server.attach(ManagerEngineApi(manager))
    return server


def serve(server: EngineApiServer, check: Any) -> None:
    async def main() -> None:
        async with TestClient(TestServer(server.app)) as client:
            await check(client)

    asyncio.run(main())


async def message(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["message"]


INIT = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "127.0.0.5", "Spec": {}}
JOIN = {"ListenAddr": "0.0.0.0:2377", "RemoteAddrs": ["manager1"], "JoinToken": "SWMTKN-1-x"}


# ---------------------------------------------------------------------- the node's routes


def test_init_answers_the_node_id_as_a_json_string() -> None:
    blank = FakeMembership()

    async def check(client: Client) -> None:
        spec = {"Orchestration": {"TaskHistoryRetentionLimit": 7}}
        body = {**INIT, "AdvertiseAddr": "127.0.0.5:2377", "Spec": spec}
        resp = await client.post("/v1.47/swarm/init", json=body)
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == "n" * 25
        assert blank.calls == [("init", "127.0.0.5", spec)]
        again = await client.post("/swarm/init", json=INIT)
        assert await message(again) == (503, ALREADY_IN_SWARM)
        assert ref("err-swarm-init-again.json")["message"] == ALREADY_IN_SWARM

    serve(node_server(blank), check)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({**INIT, "ListenAddr": ""}, 400, 'invalid ListenAddr "": invalid empty address'),
    ({**INIT, "Spec": {"Name": "mine"}}, 400, 'swarm spec must be named "default"'),
    ({**INIT, "Spec": {"Raft": {"SnapshotInterval": -1}}}, 400,
     "json: cannot unmarshal number -1 into Go struct field RaftConfig.Spec.Raft.SnapshotInterval "
     "of type uint64"),
    ({**INIT, "ListenAddr": "somewhere:2377"}, 400,
     "listen address must be an IP address or network interface (with optional port number)"),
    ({**INIT, "AdvertiseAddr": "0.0.0.0"}, 400,
     "advertise address must be a non-zero IP address or network interface (with optional port number)"),
    ({**INIT, "AdvertiseAddr": "manager1"}, 400,
     "advertise address must be a non-zero IP address or network interface (with optional port number)"),
])
def test_init_refusals_change_nothing(body: dict[str, Any], status: int, words: str) -> None:
    blank = FakeMembership()

    async def check(client: Client) -> None:
        resp = await client.post("/swarm/init", json=body)
        got = await message(resp)
        assert got[0] == status and words in got[1]
        assert blank.calls == []

    serve(node_server(blank), check)


def test_an_interface_name_advertises_its_address() -> None:
    blank = FakeMembership()
    server = node_server(blank)
    server.serve_swarm(NodeSwarmRoutes(blank, server, interfaces={"eth0": "10.0.9.4"}.get))

    async def check(client: Client) -> None:
        body = {**INIT, "ListenAddr": "eth0:2377", "AdvertiseAddr": "eth0"}
        assert (await client.post("/swarm/init", json=body)).status == 200
        assert blank.calls == [("init", "10.0.9.4", {})]

    serve(server, check)
    assert resolve_address("0.0.0.0", unspecified_ok=True, interfaces=lambda _: None) == "0.0.0.0"
    assert resolve_address("::1", unspecified_ok=False, interfaces=lambda _: None) == "::1"


def test_join_adds_swarms_port_and_maps_refusals_to_dockers_words() -> None:
    blank = FakeMembership()

    async def check(client: Client) -> None:
        assert (await client.post("/swarm/join", json=JOIN)).status == 200
        assert blank.calls == [("join", ["manager1:2377"], "SWMTKN-1-x", "")]
        assert await message(await client.post("/swarm/join", json=JOIN)) == (503, ALREADY_IN_SWARM)
        assert ref("err-swarm-join-again.json")["message"] == ALREADY_IN_SWARM

        cases = [
            (JoinFailed("invalid join token"), (500, "invalid join token")),
            (JoinFailed("A valid join token is necessary to join this cluster"),
             (400, "rpc error: code = InvalidArgument desc = A valid join token is necessary to join "
                   "this cluster")),
            (JoinFailed("timeout", timed_out=True), (503, JOIN_TIMEOUT)),
        ]
        for outcome, expected in cases:
            await client.post("/swarm/leave?force=1")
            blank.join_outcome = outcome
            assert await message(await client.post("/swarm/join", json=JOIN)) == expected
        blank.calls.clear()
        blank._role = ""
        for body, words in (({**JOIN, "RemoteAddrs": []}, "at least 1 RemoteAddr is required to join"),
                            ({**JOIN, "ListenAddr": ""}, 'invalid ListenAddr "": invalid empty address'),
                            ({**JOIN, "RemoteAddrs": "m1"}, "json: cannot unmarshal string into Go "
                             "struct field JoinRequest.RemoteAddrs of type []string")):
            assert await message(await client.post("/swarm/join", json=body)) == (400, words)
        assert blank.calls == []

    serve(node_server(blank), check)


@pytest.mark.parametrize(("stats", "expected"), [
    ((True, 1, 0), "Removing the last manager erases all current state of the swarm. Use `--force` to ignore "
                   "this message. "),
    ((True, 2, 0), "Removing this node leaves 1 managers out of 2. Without a Raft quorum your swarm will be "
                   "inaccessible. The only way"),
    ((True, 3, 1), "Removing this node leaves 2 managers out of 4. Without a Raft quorum"),
    ((True, 3, 0), "participating as a manager. The only way to restore a swarm that has lost consensus "
                   "is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this "
                   "message."),
    ((False, 1, 1), "participating as a manager. The only way"),
    (None, "participating as a manager. The only way"),
])
def test_leave_refusal_is_mobys_table(stats: tuple[bool, int, int] | None, expected: str) -> None:
    refusal = leave_refusal(True, stats)
    opening = "You are attempting to leave the swarm on a node that is participating as a manager. "
    assert refusal is not None and refusal.startswith(opening)
    assert expected in refusal
    assert leave_refusal(False, stats) is None


def test_leave_words_for_the_last_manager_and_a_node_in_no_swarm(manager: FakeManager) -> None:
    # The fake manager's store has two reachable managers; make it the last one.
    follower = manager.store.get("node", FOLLOWER)
    asyncio.run(manager.write([Update("node", "a" * 25, manager.store.get("node", "a" * 25).version,
                                      spec={**manager.store.get("node", "a" * 25).spec, "Role": "worker"})]))
    assert manager_stats(manager) == (True, 1, 0) and follower.spec["Role"] == "manager"
    member = FakeMembership("manager")

    async def check(client: Client) -> None:
        assert await message(await client.post("/swarm/leave")) == (
            503, ref("err-swarm-leave-last-manager.json")["message"])
        assert member.calls == []
        assert (await client.post("/swarm/leave?force=1")).status == 200
        assert member.calls == [("leave",)]
        assert await message(await client.post("/swarm/leave")) == (503, "This node is not part of a swarm")

    serve(node_server(member, manager), check)


def test_a_worker_leaves_without_force() -> None:
    member = FakeMembership("worker")

    async def check(client: Client) -> None:
        assert (await client.post("/swarm/leave")).status == 200
        assert member.calls == [("leave",)]

    serve(node_server(member), check)


def test_unlock_says_not_locked_on_a_manager_and_swarms_503_elsewhere(manager: FakeManager) -> None:
    async def on_manager(client: Client) -> None:
        assert await message(await client.post("/swarm/unlock", json={"UnlockKey": "x"})) == (
            409, ref("err-swarm-unlock-not-locked.json")["message"])
        resp = await client.get("/swarm/unlockkey")
        assert (resp.status, await resp.json()) == (200, ref("swarm-unlockkey.json"))

    async def blank(client: Client) -> None:
        status, words = await message(await client.post("/swarm/unlock", json={}))
        assert status == 503 and "docker swarm init" in words

    serve(node_server(FakeMembership("manager"), manager), on_manager)
    serve(node_server(FakeMembership()), blank)


# ---------------------------------------------------------------------- POST /swarm/update


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    cluster = m.store.get("cluster", CLUSTER)
    spec = running_cluster_spec(RaftConfig.default(), 5.0)
    tokens = {"Worker": CREDS.worker_token, "Manager": CREDS.manager_token}
    update = Update("cluster", CLUSTER, cluster.version, spec=spec, extra={"JoinTokens": tokens})
    asyncio.run(m.write([update]))
    return m


def test_update_writes_the_spec_and_rotates_tokens(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        before = manager.store.get("cluster", CLUSTER)
        spec = thaw(before.spec)
        spec["Orchestration"]["TaskHistoryRetentionLimit"] = 9
        spec["Dispatcher"]["HeartbeatPeriod"] = 3_000_000_000
        spec["Raft"]["ElectionTick"] = 99  # fixed at creation: kept
        resp = await client.post(f"/swarm/update?version={before.version}&rotateWorkerToken=true"
                                 "&rotateManagerToken=false&rotateManagerUnlockKey=false", json=spec)
        assert resp.status == 200, await resp.text()
        after = manager.store.get("cluster", CLUSTER)
        assert after.spec["Orchestration"]["TaskHistoryRetentionLimit"] == 9
        assert after.spec["Dispatcher"]["HeartbeatPeriod"] == 3_000_000_000
        assert after.spec["Raft"]["ElectionTick"] == before.spec["Raft"]["ElectionTick"]
        tokens = after.extra["JoinTokens"]
        assert tokens["Manager"] == CREDS.manager_token
        assert tokens["Worker"] != CREDS.worker_token
        assert parse_token(tokens["Worker"]).ca_digest == parse_token(CREDS.worker_token).ca_digest
        swarm = await (await client.get("/swarm")).json()
        assert swarm["JoinTokens"]["Worker"] == tokens["Worker"]

        # The version the client read is now stale: Swarm's words, nothing written.
        stale = await client.post(f"/swarm/update?version={before.version}&rotateManagerToken=true",
                                  json=spec)
        assert await message(stale) == (500, "rpc error: code = Unknown desc = update out of sequence")
        assert manager.store.get("cluster", CLUSTER).version == after.version

    serve(node_server(FakeMembership("manager"), manager), check)


@pytest.mark.parametrize(("change", "query", "status", "words"), [
    ({"CAConfig": {"NodeCertExpiry": 60_000_000_000}}, "", 400,
     "rpc error: code = InvalidArgument desc = minimum certificate expiry time is: 1h0m0s"),
    ({"Dispatcher": {"HeartbeatPeriod": -1}}, "", 400,
     "rpc error: code = InvalidArgument desc = heartbeat time period cannot be a negative duration"),
    ({"Name": "other"}, "", 400,
     "rpc error: code = InvalidArgument desc = modification of cluster name is not allowed"),
    ({"Labels": "x"}, "", 400,
     "json: cannot unmarshal string into Go struct field Spec.Labels of type map[string]string"),
    ({}, "&rotateWorkerToken=maybe", 400,
     'invalid value for rotateWorkerToken: strconv.ParseBool: parsing "maybe": invalid syntax'),
])
def test_update_refusals_change_nothing(manager: FakeManager, change: dict[str, Any], query: str, status: int,
                                        words: str) -> None:
    async def check(client: Client) -> None:
        before = manager.store.get("cluster", CLUSTER)
        spec = {**thaw(before.spec), **change}
        resp = await client.post(f"/swarm/update?version={before.version}{query}", json=spec)
        assert await message(resp) == (status, words)
        assert manager.store.get("cluster", CLUSTER).version == before.version

    serve(node_server(FakeMembership("manager"), manager), check)


def test_update_needs_a_version(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        resp = await client.post("/swarm/update?version=abc", json={})
        assert await message(resp) == (
            400, "invalid swarm version 'abc': strconv.ParseUint: parsing \"abc\": invalid syntax")

    serve(node_server(FakeMembership("manager"), manager), check)


# ---------------------------------------------------------------------- the pure parts


def test_init_spec_merges_what_was_set_and_never_the_ticks() -> None:
    base = running_cluster_spec(RaftConfig.default(), 5.0)
    given = {"Orchestration": {"TaskHistoryRetentionLimit": 0}, "Dispatcher": {"HeartbeatPeriod": 0},
             "Raft": {"SnapshotInterval": 500, "ElectionTick": 50},
             "CAConfig": {"NodeCertExpiry": 7_200_000_000_000}}
    merged = merge_init_spec(base, given)
    assert merged["Orchestration"]["TaskHistoryRetentionLimit"] == 0  # given (Go's pointer): taken
    assert merged["Dispatcher"] == base["Dispatcher"]  # zero: the default stays
    assert merged["Raft"]["SnapshotInterval"] == 500
    assert merged["Raft"]["ElectionTick"] == base["Raft"]["ElectionTick"]
    assert merged["CAConfig"]["NodeCertExpiry"] == 7_200_000_000_000
    assert merge_init_spec(base, {}) == base


def test_updated_spec_is_the_given_one_in_swarms_shape() -> None:
    current = default_cluster_spec()
    assert updated_spec(current, default_cluster_spec()) == current
    with pytest.raises(SpecRefused) as refused:
        updated_spec(current, {})  # a spec without a name: swarmkit's refusal
    assert refused.value.code == "InvalidArgument"


def test_rotate_token_keeps_the_ca_digest() -> None:
    new = rotate_token(CREDS.worker_token, secret="z" * 25)
    assert new == CREDS.worker_token.rsplit("-", 1)[0] + "-" + "z" * 25
    assert rotate_token(CREDS.worker_token) != CREDS.worker_token
    with pytest.raises(ValueError):
        rotate_token(CREDS.worker_token, secret="short")
