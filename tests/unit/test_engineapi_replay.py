"""Replay what the real docker CLI sent a real Swarm, and compare swarmlet's answers with Swarm's.

The recordings (engineapi_ref/*.http.txt, from ../shared/ref/real-swarm/single-node) list, for
each command, the requests the CLI made and the status (and error body) the single-node Swarm
answered. Each request is sent again to swarmlet's Engine API: a node in no swarm for
00-no-swarm, and a one-manager swarm holding the recorded node (same ID, hostname ``vm``) for the
node commands. Normalised: ``?version=`` is the node's current version (the recording's are
another cluster's), and an update's body is the node's spec (the CLI sends what it read), with
the role the command asks for. Requests to routes swarmlet does not serve yet are listed in
NOT_YET and skipped, each with its reason.

The service recordings (04 to 07) are replayed in order against one manager: a create's body is
made from its command line (the recording keeps no request bodies) and the new service takes
the ID the real Swarm gave it (read from the transcript), so the later requests that name it
find it; an update posts the service as stored, with its current version, as the CLI does.
Requests that need running tasks (the orchestrator is not part of this test) and answers that
differ on purpose are listed in NEEDS_TASKS and ON_PURPOSE.

The secrets and configs recording (08) is replayed the same way: a create's body is made from
its command line (the data is not recorded, so a placeholder), ``--secret`` / ``--config`` are
resolved to IDs as the CLI resolves them, and secrets, configs and services take the real
Swarm's IDs, so the in-use refusals name the services in the recorded order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_engineapi_nodes import HOST, FakeManager

import manager.engineapi.networks as networks_module
import manager.engineapi.payloads as payloads_module
import manager.engineapi.services as services_module
from manager.allocator.ipam import AllocationState
from manager.allocator.networks import allocate_network, ingress_network_spec
from manager.engineapi import ManagerEngineApi
from manager.state.store import Create, NotFound, Store
from manager.state.store.objects import default_cluster_spec, thaw
from nodeagent.engineapi import EngineApiServer, NodeFacts, NodeSwarmRoutes, SwarmInfo

REF = pathlib.Path(__file__).parent / "engineapi_ref"
NODE_ID = "mtf9fxg3e8rd2d0hazmk6yj01"
INGRESS_ID = "mhux3uf8d2blf9hfqhttvxctx"  # the recorded Swarm's ingress network (09-networks.txt)

NOT_YET = {
    "/containers": "swarmlet runs no containers of its own (docker ps, docker inspect)",
    "/volumes": "volumes are not served yet",
}

NEEDS_TASKS = re.compile(r"^(/v[0-9.]+)?/tasks/[0-9a-z]{25}$")
"""``GET /tasks/ID`` of a task the real Swarm had made: no orchestrator runs in this replay."""

ON_PURPOSE = {
    "/distribution/": "a real Swarm with no registry answers 500 for every image; swarmlet knows "
                      "its emulated images and answers Docker's 404 manifest unknown for the others "
                      "(the CLI prints the same warning)",
}


@dataclass
class Exchange:
    command: str
    method: str
    target: str
    status: int
    body: Any = None


_REQUEST = re.compile(r"^  (GET|HEAD|POST|DELETE|PUT) (\S+) HTTP/1\.1\s+-> (\d{3})")


def exchanges(name: str) -> list[Exchange]:
    """Every request of a recording with the status (and error body) Swarm answered."""
    found: list[Exchange] = []
    command = ""
    for line in (REF / name).read_text().splitlines():
        if line.startswith("$ "):
            command = line[2:].split("    [raw:")[0]
        elif m := _REQUEST.match(line):
            found.append(Exchange(command, m.group(1), m.group(2), int(m.group(3))))
        elif line.startswith("      body: ") and found:
            found[-1].body = json.loads(line[len("      body: "):])
    return found


def _skipped(path: str) -> str | None:
    bare = re.sub(r"^/v[0-9.]+", "", path)
    for prefix, reason in NOT_YET.items():
        if bare.startswith(prefix):
            return reason
    return None


async def replay(client: TestClient[web.Request, web.Application], manager: FakeManager | None,
                 recorded: list[Exchange]) -> list[str]:
    """Send every request again; return the differences, one line each."""
    differences = []
    replayed = 0
    seen: set[tuple[str, str, int]] = set()
    for ex in recorded:
        url = urlsplit(ex.target)
        if _skipped(url.path):
            continue
        if NEEDS_TASKS.match(url.path) or any(part in url.path for part in ON_PURPOSE):
            continue
        if ex.method == "GET" and (ex.command, ex.target, ex.status) in seen:
            continue  # the CLI's progress polls: the same question once is enough
        seen.add((ex.command, ex.target, ex.status))

        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body: Any = None
        if ex.method == "POST" and "/nodes/" in url.path and manager is not None:
            node = manager.store.lookup("node", NODE_ID)
            query["version"] = str(node.version)
            body = dict(node.spec) | {"Role": "worker" if " demote " in ex.command else node.spec["Role"]}
        elif ex.method == "POST" and url.path.endswith("/services/create"):
            body = create_body(ex.command, manager.store if manager is not None else None)
        elif ex.method == "POST" and url.path.endswith("/networks/create"):
            body = network_body(ex.command)
        elif ex.method == "POST" and url.path.endswith(("/secrets/create", "/configs/create")):
            body = payload_body(ex.command)
        elif ex.method == "POST" and url.path.endswith(("/swarm/init", "/swarm/join")):
            body = swarm_body(ex.command)
        elif ex.method == "POST" and url.path.endswith("/swarm/update") and manager is not None:
            cluster = manager.cluster()
            assert cluster is not None
            query["version"] = str(cluster.version)
            body = thaw(cluster.spec)
        elif ex.method == "POST" and "/services/" in url.path and manager is not None:
            try:
                service = manager.store.lookup("service", url.path.split("/")[-2])
                query["version"] = str(service.version)
                body = thaw(service.spec)
            except NotFound:
                body = {}
        resp = await client.request(ex.method, url.path, params=query, json=body)
        replayed += 1
        failed = resp.content_type == "application/json" and resp.status >= 400
        got_body = await resp.json() if failed else None
        if resp.status != ex.status or (ex.body is not None and got_body != ex.body):
            differences.append(f"{ex.command}: {ex.method} {ex.target}: Swarm {ex.status} {ex.body}, "
                               f"swarmlet {resp.status} {got_body}")
    assert replayed > 5, "the recording was not read"
    return differences


def swarm_body(command: str) -> dict[str, Any]:
    """The InitRequest or JoinRequest ``docker swarm init|join ...`` sends (the CLI's defaults)."""
    words = shlex.split(command)[3:]
    body: dict[str, Any] = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "Spec": {}}
    flags = iter(words)
    for word in flags:
        if word == "--advertise-addr":
            body["AdvertiseAddr"] = next(flags)
        elif word == "--token":
            body["JoinToken"] = next(flags)
        else:
            body["RemoteAddrs"] = [word]
    return body


def payload_body(command: str) -> dict[str, Any]:
    """The spec ``docker secret create [--label k=v] NAME FILE|-`` sends (the data is not recorded)."""
    words = shlex.split(command)[3:]
    labels = {}
    while words[0] == "--label":
        key, _, value = words[1].partition("=")
        labels[key] = value
        words = words[2:]
    return {"Name": words[0], "Labels": labels, "Data": base64.b64encode(b"recorded elsewhere\n").decode()}


def _reference(kind: str, value: str, store: Store | None) -> dict[str, Any]:
    """A SecretReference / ConfigReference as the CLI makes it from ``--secret`` / ``--config``."""
    fields = {"source": value}
    if "=" in value:
        fields = dict(item.partition("=")[::2] for item in value.split(","))
    source = fields.get("source") or fields.get("src") or ""
    mode = int(fields.get("mode", "0444"), 8)
    found = store.lookup(kind, source) if store is not None else None
    file = {"Name": fields.get("target", source), "UID": "0", "GID": "0", "Mode": mode}
    key = "Secret" if kind == "secret" else "Config"
    return {"File": file, f"{key}ID": found.id if found else "", f"{key}Name": source}


def create_body(command: str, store: Store | None = None) -> dict[str, Any]:
    """The ServiceSpec ``docker service create ...`` sends, for the flags the recordings use.

    ``--secret`` and ``--config`` are resolved to IDs in ``store``, as the CLI resolves them
    (it asks ``GET /secrets?filters={"name":...}`` first).
    """
    words = shlex.split(command)[3:]
    spec: dict[str, Any] = {"Labels": {}}
    container: dict[str, Any] = {"Init": False, "DNSConfig": {}}
    placement: dict[str, Any] = {}
    resources: dict[str, Any] = {"Limits": {}, "Reservations": {}}
    mode, replicas, ports, positional = "replicated", None, [], []
    flags = iter(words)
    for word in flags:
        if word in ("--detach", "-d", "--quiet", "-q", "--no-resolve-image"):
            continue
        if not word.startswith("-"):
            positional = [word, *flags]
            break
        value = next(flags)
        if word == "--name":
            spec["Name"] = value
        elif word == "--replicas":
            replicas = int(value)
        elif word == "--mode":
            mode = value
        elif word == "--publish":
            published, target = value.split(":")
            ports.append({"Protocol": "tcp", "TargetPort": int(target), "PublishedPort": int(published),
                          "PublishMode": "ingress"})
        elif word == "--network":
            spec.setdefault("Networks", []).append({"Target": value})  # the daemon resolves names
        elif word == "--constraint":
            placement.setdefault("Constraints", []).append(value)
        elif word == "--replicas-max-per-node":
            placement["MaxReplicas"] = int(value)
        elif word == "--placement-pref":
            spread = {"Spread": {"SpreadDescriptor": value.split("=")[1]}}
            placement.setdefault("Preferences", []).append(spread)
        elif word == "--reserve-memory":
            resources["Reservations"]["MemoryBytes"] = int(value.rstrip("g")) << 30
        elif word == "--reserve-cpu":
            resources["Reservations"]["NanoCPUs"] = int(value) * 1_000_000_000
        elif word in ("--secret", "--config"):
            kind = word[2:]
            container.setdefault(kind.title() + "s", []).append(_reference(kind, value, store))
        elif word in ("-e", "--env"):
            container.setdefault("Env", []).append(value)
        else:
            raise AssertionError(f"create_body does not know {word}")
    if positional:
        container["Image"] = positional[0]
        if positional[1:]:
            container["Args"] = positional[1:]
    spec["TaskTemplate"] = {"ContainerSpec": container, "Resources": resources, "Placement": placement,
                            "ForceUpdate": 0}
    if "Networks" in spec:
        spec["TaskTemplate"]["Networks"] = spec.pop("Networks")
    job = {"MaxConcurrent": replicas or 1, "TotalCompletions": replicas or 1}
    spec["Mode"] = {
        "replicated": {"Replicated": {"Replicas": 1 if replicas is None else replicas}},
        "global": {"Global": {}},
        "replicated-job": {"ReplicatedJob": job},
    }[mode]
    spec["EndpointSpec"] = {"Mode": "vip", **({"Ports": ports} if ports else {})}
    return spec


def network_body(command: str) -> dict[str, Any]:
    """The NetworkCreateRequest ``docker network create ...`` (CLI v28) sends, for the recordings' flags."""
    words = iter(shlex.split(command)[3:])
    body: dict[str, Any] = {"Driver": "bridge", "Scope": "", "IPAM": {"Driver": "default", "Options": {},
                            "Config": []}, "Internal": False, "Attachable": False, "Ingress": False,
                            "ConfigOnly": False, "ConfigFrom": None, "Options": {}, "Labels": {}}
    for word in words:
        if word in ("-d", "--driver"):
            body["Driver"] = next(words)
        elif word == "--attachable":
            body["Attachable"] = True
        elif word == "--subnet":
            body["IPAM"]["Config"].append({"Subnet": next(words)})
        elif word.startswith("-"):
            raise AssertionError(f"network_body does not know {word}")
        else:
            body["Name"] = word
    return body


def created_network_ids(transcript: str) -> list[str]:
    """The IDs a real Swarm gave the networks created in a transcript, in order."""
    ids = []
    for block in ("\n" + (REF / transcript).read_text()).split("\n$ ")[1:]:
        lines = block.splitlines()
        if block.startswith("docker network create") and re.fullmatch(r"[0-9a-z]{25}", lines[2].strip()):
            ids.append(lines[2].strip())
    return ids


def _swarm_manager() -> FakeManager:
    """One manager holding the recorded node, the cluster and the ingress network (recorded IDs)."""
    manager = FakeManager()
    manager.node_id = NODE_ID
    manager.leader = NODE_ID
    extra = {"Description": {"Hostname": "vm", "Engine": {"EngineVersion": "0.1.0"}},
             "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:2377"}}
    spec = {"Name": "", "Role": "manager", "Availability": "active", "Labels": {}}
    node = Create("node", NODE_ID, spec, {"State": "ready", "Addr": "127.0.0.1"}, extra)
    ingress = ingress_network_spec()
    allocated = allocate_network(INGRESS_ID, ingress, AllocationState())
    network = Create("network", INGRESS_ID, ingress, {}, allocated)
    asyncio.run(manager.write([Create("cluster", "c" * 25, {"Name": "default"}, {}, {}), node, network]))
    return manager


def test_network_commands_answer_as_swarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """09-networks: create (and the name taken), ls, inspect, a service on labnet, rm refused in use."""
    manager = _swarm_manager()
    network_ids = iter(created_network_ids("09-networks.txt"))
    service_ids = iter(created_ids("09-networks.txt"))
    monkeypatch.setattr(networks_module, "new_id", lambda: next(network_ids))
    monkeypatch.setattr(services_module, "new_id", lambda: next(service_ids))
    server = EngineApiServer(NodeFacts(node_id=NODE_ID, hostname="vm", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", NODE_ID, "127.0.0.1"), "127.0.0.1", 0)
    server.attach(ManagerEngineApi(manager))
    assert run(server, manager, ["09-networks.http.txt"]) == []
    assert next(network_ids, None) is None and next(service_ids, None) is None
    labnet = manager.store.lookup("network", "labnet")
    # The recorded Swarm's allocation: labnet 10.0.1.0/24 with VNI 4097 (network-labnet.json),
    # labnet2 the subnet asked for and the next VNI (networks-swarm.json).
    assert labnet.extra["IPAM"]["Config"] == [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]
    assert labnet.extra["DriverOptions"] == {"com.docker.network.driver.overlay.vxlanid_list": "4097"}
    labnet2 = manager.store.lookup("network", "labnet2")
    assert labnet2.extra["IPAM"]["Config"] == [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}]
    assert labnet2.extra["DriverOptions"] == {"com.docker.network.driver.overlay.vxlanid_list": "4098"}
    netsvc = manager.store.lookup("service", "netsvc")
    # The VIP the recorded Swarm gave netsvc on labnet: 10.0.1.2 (network-labnet.json's Services).
    assert netsvc.extra["Endpoint"]["VirtualIPs"] == [{"NetworkID": labnet.id, "Addr": "10.0.1.2/24"}]
    assert netsvc.spec["TaskTemplate"]["Networks"] == [{"Target": labnet.id}]


def created_ids(transcript: str, kinds: tuple[str, ...] = ("service",)) -> list[str]:
    """The IDs a real Swarm gave the objects (services...) created in a transcript, in order."""
    ids = []
    for block in ("\n" + (REF / transcript).read_text()).split("\n$ ")[1:]:
        if not block.startswith(tuple(f"docker {kind} create" for kind in kinds)):
            continue
        lines = block.splitlines()
        # The output starts after "--- stdout ---" (or "--- terminal ... ---" for a pty).
        start = next(i for i, line in enumerate(lines) if line.startswith(("--- stdout", "--- terminal")))
        first = lines[start + 1].strip()
        if re.fullmatch(r"[0-9a-z]{25}", first):  # refused creates print no ID
            ids.append(first)
    return ids


TOKEN_DIGEST = "0" * 50


class FakeSwarm:
    """The node's membership for the swarm recordings: ``init`` makes a one-manager cluster in the
    fake manager's store, with the node ID the real Swarm gave (read from the transcript), and
    attaches its routes; ``leave`` detaches them and empties the store, as a node that left."""

    def __init__(self, server: EngineApiServer, manager: FakeManager, ids: Iterator[str]) -> None:
        self.server, self.manager, self.ids = server, manager, ids
        self.node_id = ""

    @property
    def role(self) -> str:
        return "manager" if self.node_id else ""

    def in_swarm(self) -> bool:
        return bool(self.node_id)

    def swarm_info(self) -> SwarmInfo:
        if not self.node_id:
            return SwarmInfo(node_addr="127.0.0.1")
        return SwarmInfo("active", self.node_id, "127.0.0.1")

    async def init(self, advertise_addr: str, spec: dict[str, Any], *, timeout: float) -> str:
        self.node_id = next(self.ids)
        self.manager.store = Store()
        self.manager.node_id = self.manager.leader = self.node_id
        tokens = {"Worker": f"SWMTKN-1-{TOKEN_DIGEST}-{'w' * 25}",
                  "Manager": f"SWMTKN-1-{TOKEN_DIGEST}-{'m' * 25}"}
        extra = {"Description": {"Hostname": "vm", "Engine": {"EngineVersion": "0.1.0"}},
                 "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:2377"}}
        node_spec = {"Name": "", "Role": "manager", "Availability": "active", "Labels": {}}
        await self.manager.write([
            Create("cluster", "c" * 25, default_cluster_spec(), {}, {"JoinTokens": tokens}),
            Create("node", self.node_id, node_spec, {"State": "ready", "Addr": "127.0.0.1"}, extra)])
        self.server.attach(ManagerEngineApi(self.manager))
        return self.node_id

    async def join(self, remote_addrs: list[str], token: str, advertise_addr: str, *, timeout: float) -> str:
        raise AssertionError("the recordings join no swarm from this node")

    async def leave(self) -> None:
        self.server.detach()
        self.node_id = ""


def initialised_ids(transcript: str) -> list[str]:
    """The node IDs a real Swarm gave at each ``swarm init`` of a transcript, in order."""
    return re.findall(r"Swarm initialized: current node \(([0-9a-z]{25})\)", (REF / transcript).read_text())


def run(server: EngineApiServer, manager: FakeManager | None, names: list[str]) -> list[str]:
    recorded = [ex for name in names for ex in exchanges(name)]

    async def main() -> list[str]:
        async with TestClient(TestServer(server.app)) as client:
            return await replay(client, manager, recorded)

    return asyncio.run(main())


def test_a_node_in_no_swarm_answers_as_docker() -> None:
    server = EngineApiServer(NodeFacts(node_id="", hostname="vm", engine_version="0.1.0"),
                             lambda: SwarmInfo(node_addr="127.0.0.1"), "127.0.0.1", 0)
    assert run(server, None, ["00-no-swarm.http.txt"]) == []


@pytest.mark.parametrize("name", ["03-nodes.http.txt", "12-errors.http.txt"])
def test_node_commands_answer_as_swarm(name: str) -> None:
    manager = FakeManager()
    manager.node_id = NODE_ID
    manager.leader = NODE_ID
    extra = {"Description": {"Hostname": "vm", "Engine": {"EngineVersion": "0.1.0"}},
             "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:2377"}}
    spec = {"Name": "", "Role": "manager", "Availability": "active", "Labels": {}}
    node = Create("node", NODE_ID, spec, {"State": "ready", "Addr": "127.0.0.1"}, extra)
    asyncio.run(manager.write([Create("cluster", "c" * 25, {"Name": "default"}, {}, {}), node]))
    server = EngineApiServer(NodeFacts(node_id=NODE_ID, hostname="vm", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", NODE_ID, "127.0.0.1"), "127.0.0.1", 0)
    server.attach(ManagerEngineApi(manager))
    swarm = FakeSwarm(server, manager, iter(()))
    swarm.node_id = NODE_ID  # in the swarm already: leave is refused as for the last manager
    server.serve_swarm(NodeSwarmRoutes(swarm, server))
    assert HOST.architecture == "x86_64"
    assert run(server, manager, [name]) == []


def test_service_commands_answer_as_swarm(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = _swarm_manager()
    names = ["04-service-create", "05-service-scale", "06-service-update", "07-modes-placement"]
    ids: Iterator[str] = iter([i for name in names for i in created_ids(name + ".txt")])
    monkeypatch.setattr(services_module, "new_id", lambda: next(ids))
    server = EngineApiServer(NodeFacts(node_id=NODE_ID, hostname="vm", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", NODE_ID, "127.0.0.1"), "127.0.0.1", 0)
    server.attach(ManagerEngineApi(manager))
    assert run(server, manager, [name + ".http.txt" for name in names]) == []
    assert next(ids, None) is None  # every service the real Swarm created was created here


def test_secret_and_config_commands_answer_as_swarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """08: create (and a name taken), ls, inspect (not found), services that use them, in-use refusals.

    Secrets, configs and services take the real Swarm's IDs, so the recorded in-use refusal
    names the services in the same (ID) order.
    """
    manager = FakeManager()
    manager.node_id = NODE_ID
    manager.leader = NODE_ID
    extra = {"Description": {"Hostname": "vm", "Engine": {"EngineVersion": "0.1.0"}},
             "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:2377"}}
    spec = {"Name": "", "Role": "manager", "Availability": "active", "Labels": {}}
    node = Create("node", NODE_ID, spec, {"State": "ready", "Addr": "127.0.0.1"}, extra)
    asyncio.run(manager.write([Create("cluster", "c" * 25, {"Name": "default"}, {}, {}), node]))
    ids: Iterator[str] = iter(created_ids("08-secrets-configs.txt", ("secret", "config", "service")))
    monkeypatch.setattr(services_module, "new_id", lambda: next(ids))
    monkeypatch.setattr(payloads_module, "new_id", lambda: next(ids))
    server = EngineApiServer(NodeFacts(node_id=NODE_ID, hostname="vm", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", NODE_ID, "127.0.0.1"), "127.0.0.1", 0)
    server.attach(ManagerEngineApi(manager))
    assert run(server, manager, ["08-secrets-configs.http.txt"]) == []
    assert next(ids, None) is None  # every object the real Swarm created was created here
    assert manager.store.lookup("secret", "db_pass").id == "dpnty726urbstxnj9lfxhggh7"
    secweb = manager.store.lookup("service", "secweb")
    # The update posts the service as stored (as the other replays do), so the references stay.
    assert [r["SecretName"] for r in secweb.spec["TaskTemplate"]["ContainerSpec"]["Secrets"]] == [
        "db_pass", "site_cert"] and "PreviousSpec" in secweb.extra


def test_swarm_init_leave_and_join_tokens_answer_as_swarm() -> None:
    """01-swarm-init and 02-join-tokens: init, the last manager's leave refused in Swarm's words,
    leave --force, init again, init and join refused in a swarm, join-token, --rotate, update."""
    manager = FakeManager()
    ids = iter(initialised_ids("01-swarm-init.txt"))
    holder: list[FakeSwarm] = []
    server = EngineApiServer(NodeFacts(node_id=NODE_ID, hostname="vm", engine_version="0.1.0"),
                             lambda: holder[0].swarm_info(), "127.0.0.1", 0)
    swarm = FakeSwarm(server, manager, ids)
    holder.append(swarm)
    server.serve_swarm(NodeSwarmRoutes(swarm, server))
    assert run(server, manager, ["01-swarm-init.http.txt", "02-join-tokens.http.txt"]) == []
    assert next(ids, None) is None  # both inits happened
    cluster = manager.cluster()
    assert cluster is not None
    # The rotation changed the worker token only (same CA digest), the update wrote the spec back.
    tokens = cluster.extra["JoinTokens"]
    assert tokens["Manager"].endswith("m" * 25) and not tokens["Worker"].endswith("w" * 25)
    assert tokens["Worker"].startswith(f"SWMTKN-1-{TOKEN_DIGEST}-")
