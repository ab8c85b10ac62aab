"""Replay what the real docker CLI sent a real Swarm, and compare swarmlet's answers with Swarm's.

The recordings (engineapi_ref/*.http.txt, from ../shared/ref/real-swarm/single-node) list, for
each command, the requests the CLI made and the status (and error body) the single-node Swarm
answered. Each request is sent again to swarmlet's Engine API: a node in no swarm for
00-no-swarm, and a one-manager swarm holding the recorded node (same ID, hostname ``vm``) for the
node commands. Normalised: ``?version=`` is the node's current version (the recording's are
another cluster's), and an update's body is the node's spec (the CLI sends what it read), with
the role the command asks for. Requests to routes swarmlet does not serve yet are listed in
NOT_YET and skipped, each with its reason.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_engineapi_nodes import HOST, FakeManager

from manager.engineapi import ManagerEngineApi
from manager.state.store import Create
from nodeagent.engineapi import EngineApiServer, NodeFacts, SwarmInfo

REF = pathlib.Path(__file__).parent / "engineapi_ref"
NODE_ID = "mtf9fxg3e8rd2d0hazmk6yj01"

NOT_YET = {
    "/tasks": "tasks are not served yet",
    "/services": "services are not served yet",
    "/secrets": "secrets are not served yet",
    "/configs": "configs are not served yet",
    "/swarm/unlockkey": "autolock is not served yet",
    "/networks": "networks are not served yet",
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
    for ex in recorded:
        url = urlsplit(ex.target)
        if _skipped(url.path):
            continue
        if manager is not None and url.path.endswith("/swarm/leave"):
            continue  # a manager leaving (Swarm's quorum warnings) is not served yet

        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = None
        if ex.method == "POST" and url.path.endswith("/update") and manager is not None:
            node = manager.store.lookup("node", NODE_ID)
            query["version"] = str(node.version)
            body = dict(node.spec) | {"Role": "worker" if " demote " in ex.command else node.spec["Role"]}
        resp = await client.request(ex.method, url.path, params=query, json=body)
        replayed += 1
        failed = resp.content_type == "application/json" and resp.status >= 400
        got_body = await resp.json() if failed else None
        if resp.status != ex.status or (ex.body is not None and got_body != ex.body):
            differences.append(f"{ex.command}: {ex.method} {ex.target}: Swarm {ex.status} {ex.body}, "
                               f"swarmlet {resp.status} {got_body}")
    assert replayed > 5, "the recording was not read"
    return differences


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
    assert HOST.architecture == "x86_64"
    assert run(server, manager, [name]) == []
