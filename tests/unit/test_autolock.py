"""Autolock through the Engine API: the key in the Cluster object, a locked manager's answers, re-wrapping.

``swarm update --autolock`` and ``unlock-key --rotate`` as the CLI sends them (the recorded
requests in docker-cli-v28-requests.txt), against test_engineapi_nodes' fake manager; a locked
manager's Engine API (manager/engineapi/locked.py) with a fake runtime around a real key file;
and KeySync re-wrapping a real key file as the Cluster object changes. Words and codes are
Swarm's (five-nodes/x-multi.txt, single-node/13-autolock.txt).
"""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_engineapi_nodes import CLUSTER, FakeManager
from test_engineapi_swarm import INIT, FakeMembership, message, node_server, serve

from manager.engineapi.clusterspec import merge_init_spec
from manager.engineapi.locked import LockedManagerApi
from manager.keysync import UNLOCK_KEY_FIELD, KeySync
from manager.runtime import running_cluster_spec
from manager.state.raft.config import RaftConfig
from manager.state.raft.encryption import format_unlock_key, new_key, parse_unlock_key
from manager.state.raft.keyfile import RaftKeys
from manager.state.store import Store, Update
from manager.state.store.objects import thaw
from nodeagent.engineapi import EngineApiServer, NodeFacts, NodeSwarmRoutes, SwarmInfo
from nodeagent.engineapi.errors import SWARM_LOCKED

Client = TestClient[web.Request, web.Application]
LOCKED_WORDS = ('Swarm is encrypted and needs to be unlocked before it can be used. Please use '
                '"docker swarm unlock" to unlock it.')


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    cluster = m.store.get("cluster", CLUSTER)
    spec = running_cluster_spec(RaftConfig.default(), 5.0)
    asyncio.run(m.write([Update("cluster", CLUSTER, cluster.version, spec=spec,
                                extra=dict(thaw(cluster.extra)))]))
    return m


async def _update(client: Client, manager: FakeManager, autolock: bool, rotate: bool = False) -> int:
    cluster = manager.store.get("cluster", CLUSTER)
    spec = thaw(cluster.spec)
    spec["EncryptionConfig"] = {"AutoLockManagers": autolock}
    resp = await client.post(f"/v1.47/swarm/update?rotateManagerToken=false&rotateManagerUnlockKey="
                             f"{str(rotate).lower()}&rotateWorkerToken=false&version={cluster.version}",
                             json=spec)
    return resp.status


async def _key(client: Client) -> str:
    resp = await client.get("/v1.47/swarm/unlockkey")
    assert resp.status == 200
    return str((await resp.json())["UnlockKey"])


def test_autolock_on_rotate_off_through_swarm_update(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        assert await _key(client) == ""
        assert await _update(client, manager, True) == 200
        first = await _key(client)
        assert first.startswith("SWMKEY-1-") and len(parse_unlock_key(first)) == 32
        # The spec says so, as docker info shows it; the key itself is never in /swarm or /info.
        swarm = await (await client.get("/swarm")).json()
        assert swarm["Spec"]["EncryptionConfig"] == {"AutoLockManagers": True}
        assert first[9:] not in json.dumps(swarm)
        info = await (await client.get("/info")).json()
        assert first[9:] not in json.dumps(info)
        # An unrelated update keeps the key; a rotation replaces it.
        assert await _update(client, manager, True) == 200
        assert await _key(client) == first
        assert await _update(client, manager, True, rotate=True) == 200
        second = await _key(client)
        assert second.startswith("SWMKEY-1-") and second != first
        # Off: no key (the CLI then says "no unlock key is set"); on again: a fresh one.
        assert await _update(client, manager, False) == 200
        assert await _key(client) == ""
        assert UNLOCK_KEY_FIELD not in manager.store.get("cluster", CLUSTER).extra
        assert await _update(client, manager, True) == 200
        assert await _key(client) not in ("", first, second)

    serve(node_server(FakeMembership("manager"), manager), check)


def test_init_with_autolock_asks_for_it_in_the_spec() -> None:
    blank = FakeMembership()

    async def check(client: Client) -> None:
        resp = await client.post("/swarm/init", json={**INIT, "AutoLockManagers": True})
        assert resp.status == 200
        assert blank.calls[0][2]["EncryptionConfig"] == {"AutoLockManagers": True}

    serve(node_server(blank), check)
    spec = merge_init_spec(running_cluster_spec(RaftConfig.default(), 5.0),
                           {"EncryptionConfig": {"AutoLockManagers": True}})
    assert spec["EncryptionConfig"] == {"AutoLockManagers": True}


class FakeRuntime:
    """The manager runtime as the locked API sees it: a real key file, unlock starts nothing."""

    def __init__(self, keys: RaftKeys) -> None:
        self.keys = keys
        self.started = 0

    @property
    def locked(self) -> bool:
        return self.keys.locked

    async def unlock(self, key: bytes) -> None:
        self.keys.unlock(key)
        self.started += 1


def _locked_server(tmp_path: pathlib.Path) -> tuple[EngineApiServer, FakeRuntime, str]:
    keys = RaftKeys(tmp_path / "keys.json")
    keys.load()
    key = new_key()
    keys.rewrap(key)
    locked = RaftKeys(tmp_path / "keys.json")
    locked.load()
    runtime = FakeRuntime(locked)
    server = EngineApiServer(NodeFacts(node_id="m" * 25, hostname="manager2", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", "m" * 25, "127.0.0.2"), "127.0.0.1", 0)
    server.serve_swarm(NodeSwarmRoutes(FakeMembership("manager"), server))
    server.attach(LockedManagerApi(runtime))
    return server, runtime, format_unlock_key(key)


def test_a_locked_manager_answers_as_swarm_until_the_right_key(tmp_path: pathlib.Path) -> None:
    server, runtime, key = _locked_server(tmp_path)
    assert SWARM_LOCKED == LOCKED_WORDS

    async def check(client: Client) -> None:
        for path in ("/v1.47/nodes", "/v1.47/services", "/swarm", "/swarm/unlockkey", "/secrets"):
            assert await message(await client.get(path)) == (503, LOCKED_WORDS)
        swarm = (await (await client.get("/info")).json())["Swarm"]
        assert (swarm["LocalNodeState"], swarm["NodeID"], swarm["ControlAvailable"]) == ("locked", "", False)
        ping = await client.get("/_ping")
        assert ping.headers["Swarm"] == "locked"
        # A malformed key: swarmkit's 400; a well-formed wrong one: Docker's 401; nothing unlocks.
        assert await message(await client.post("/swarm/unlock", json={"UnlockKey": "SWMKEY-1-bogus"})) == (
            400, "invalid key string")
        for wrong in ("SWMKEY-1-wrongwrongwrong", format_unlock_key(new_key())):
            assert await message(await client.post("/swarm/unlock", json={"UnlockKey": wrong})) == (
                401, "swarm could not be unlocked: invalid key provided")
        assert runtime.locked and runtime.started == 0
        resp = await client.post("/swarm/unlock", json={"UnlockKey": key})
        assert resp.status == 200 and runtime.started == 1 and not runtime.locked
        # The runtime attaches its real routes once serving; until then a second unlock is refused.
        assert await message(await client.post("/swarm/unlock", json={"UnlockKey": key})) == (
            409, "swarm is not locked")

    serve(server, check)


def test_keysync_rewraps_as_the_cluster_object_says(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    manager = FakeManager()
    manager.seed()

    async def set_autolock(key: str | None) -> None:
        cluster = manager.store.get("cluster", CLUSTER)
        extra = dict(thaw(cluster.extra))
        extra.pop(UNLOCK_KEY_FIELD, None)
        if key is not None:
            extra[UNLOCK_KEY_FIELD] = key
        spec = {**thaw(cluster.spec), "EncryptionConfig": {"AutoLockManagers": key is not None}}
        await manager.write([Update("cluster", CLUSTER, cluster.version, spec=spec, extra=extra)])

    async def follow(store: Store, key: str | None, unlock_with: str | None = None) -> RaftKeys:
        keys = RaftKeys(path)
        keys.load()
        if unlock_with is not None:  # a locked manager follows the store only once unlocked
            keys.unlock(parse_unlock_key(unlock_with))
        sync = KeySync(keys, store)
        await set_autolock(key)
        store.notify_watches()
        await asyncio.sleep(0)
        await sync.idle()
        await sync.close()
        return keys

    key = format_unlock_key(new_key())
    keys = asyncio.run(follow(manager.store, key))
    assert keys.unlock_key == parse_unlock_key(key)
    assert json.loads(path.read_text()).get("autolock") is True
    reread = RaftKeys(path)
    reread.load()
    assert reread.locked
    reread.unlock(parse_unlock_key(key))
    assert reread.dek == keys.dek
    asyncio.run(follow(manager.store, None, unlock_with=key))
    plain = RaftKeys(path)
    plain.load()
    assert not plain.locked and plain.dek == keys.dek
