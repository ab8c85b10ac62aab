"""The real docker CLI's ``docker service`` commands against swarmlet node processes on 127.0.0.x.

Three managers and a worker run as ``python -m nodeagent``; the CLI asks manager2, so every
write is forwarded to the leader. Only what needs no running task is checked here (the service
objects and the CLI's output): ``create`` (no digest warning for an image the emulated runtime
knows, Swarm's warning for one it does not), ``ls`` with Swarm's columns, ``inspect``,
``update --replicas``, ``inspect --pretty``, ``scale``, ``rollback``, ``logs``, ``rm``, and
Swarm's refusals (name exists, bad constraint, unknown service) in Docker's words. Skipped
when no docker binary is installed.

The CLI's progress bars (``service create`` without ``--detach``) need tasks that move: the
second test serves the routes from a bare store in this process and plays the orchestrator's,
scheduler's and agent's part by writing the tasks' states, as those components will.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pathlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from _docker_cli import DOCKER, cli_rows, docker, requires_docker
from _procs_manager import START_S, Cluster, running, wait_until
from aiohttp.test_utils import TestServer

from manager.engineapi import HostFacts, ManagerEngineApi
from manager.state.store import Create, Op, Store, StoredObject, Update, encode_batch, format_timestamp
from nodeagent.engineapi import EngineApiServer, NodeFacts, SwarmInfo

pytestmark = requires_docker


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 3, ["worker1"]) as c:
        yield c


@pytest.mark.slow
def test_docker_service_commands(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    m2 = cluster.managers()[1]

    def run(*args: str) -> Any:
        return docker(tmp_path, m2.host, *args)

    def ready() -> Any:
        done = run("node", "ls")
        return done if done.returncode == 0 and done.stdout.count("Ready") == 4 else None

    try:
        wait_until(ready, timeout=START_S, what="docker node ls: 4 Ready nodes")
    except AssertionError:
        raise AssertionError(cluster.logs()) from None

    # Flags before the image: after it they would be the task's command.
    created = run("service", "create", "--name", "web", "--replicas", "2", "--detach", "nginx:1.25")
    print(created.stdout, created.stderr)
    assert created.returncode == 0, created.stderr
    service_id = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{25}", service_id)
    assert created.stderr == ""  # an image the emulated runtime knows: pinned, no warning

    listed = run("service", "ls")
    print(listed.stdout)
    assert listed.returncode == 0, listed.stderr
    rows = cli_rows(listed.stdout)
    assert rows[0] == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert rows[1][:3] == [service_id[:12], "web", "replicated"]
    assert rows[1][3].endswith("/2")  # running/desired: 0/2 until tasks run
    assert rows[1][4] == "nginx:1.25"  # the CLI hides the digest it pinned

    shown = run("service", "inspect", "web")
    assert shown.returncode == 0, shown.stderr
    service = json.loads(shown.stdout)[0]
    assert service["ID"] == service_id
    spec = service["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith("nginx:1.25@sha256:")
    assert spec["UpdateConfig"] == {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                                    "MaxFailureRatio": 0, "Order": "stop-first"}
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"

    # --detach: without it the CLI waits for tasks to converge, which needs the orchestrator.
    updated = run("service", "update", "--detach", "--replicas", "3", "web")
    assert (updated.returncode, updated.stdout.strip()) == (0, "web"), updated.stderr
    after = json.loads(run("service", "inspect", "web").stdout)[0]
    assert after["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert after["PreviousSpec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    assert after["Version"]["Index"] > service["Version"]["Index"]

    pretty = run("service", "inspect", "--pretty", "web")
    assert pretty.returncode == 0, pretty.stderr
    assert "Service Mode:\tReplicated\n Replicas:\t3" in pretty.stdout
    assert " Update order:      stop-first" in pretty.stdout and "Endpoint Mode:\tvip" in pretty.stdout
    scaled = run("service", "scale", "--detach", "web=4")
    assert (scaled.returncode, scaled.stdout.strip()) == (0, "web scaled to 4"), scaled.stderr
    rolled = run("service", "rollback", "--detach", "web")
    assert (rolled.returncode, rolled.stdout.strip()) == (0, "web"), rolled.stderr
    back = json.loads(run("service", "inspect", "web").stdout)[0]
    assert back["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert back["UpdateStatus"]["State"] == "rollback_started"
    # The leader's orchestrator now runs web's tasks, whose logs come from the agents through
    # gossip; here a service with no task shows the empty answer.
    quiet = run("service", "create", "--detach", "--name", "quiet", "--replicas", "0", "nginx:1.25")
    assert quiet.returncode == 0, quiet.stderr
    logs = run("service", "logs", "quiet")  # no task has run: nothing to print
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "", ""), logs.stderr

    exists = run("service", "create", "--detach", "--name", "web", "nginx:1.25")
    assert exists.returncode == 1
    assert exists.stderr.strip() == ("Error response from daemon: rpc error: code = AlreadyExists desc = "
                                     "name conflicts with an existing object: service web already exists")
    bad = run("service", "create", "--detach", "--name", "badc", "--constraint", "node.labels.x=y",
              "--no-resolve-image", "busybox")
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("Error response from daemon: rpc error: code = Unknown desc = "
                                  "constraint expected one operator from ==, !=")
    unknown = run("service", "inspect", "nosuch")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "Error: no such service: nosuch")
    gone = run("service", "rm", "nosuch")
    assert (gone.returncode, gone.stderr.strip()) == (
        1, "Error response from daemon: service nosuch not found")

    # An image no node can run: the CLI's own warning, as against a Swarm with no registry.
    other = run("service", "create", "--detach", "--name", "other", "lab/nosuch:1")
    assert other.returncode == 0, other.stderr
    assert "image lab/nosuch:1 could not be accessed on a registry to record" in other.stderr

    tasks = run("service", "ps", "web")
    assert tasks.returncode == 0, tasks.stderr
    assert cli_rows(tasks.stdout)[0][:3] == ["ID", "NAME", "IMAGE"]

    removed = run("service", "rm", "web", "other", "quiet")
    assert (removed.returncode, removed.stdout.split()) == (0, ["web", "other", "quiet"]), removed.stderr
    empty = run("service", "ls", "-q")
    assert (empty.returncode, empty.stdout.strip()) == (0, "")


class _StoreManager:
    """A ManagerView over a bare store, writes applied at once: the routes without Raft."""

    def __init__(self) -> None:
        self.store = Store()
        self.node_id = NODE
        self.host = HostFacts()
        self._index = itertools.count(1)

    def leader_id(self) -> str:
        return NODE

    def unreachable(self) -> frozenset[str]:
        return frozenset()

    def cluster(self) -> StoredObject | None:
        return None

    async def write(self, ops: Sequence[Op]) -> None:
        batch = encode_batch(list(ops), now=format_timestamp(time.time()))
        result = self.store.apply(next(self._index), batch)
        if not result.ok:
            assert result.error is not None
            raise result.error


NODE = "n" * 25


async def _play_orchestrator(manager: _StoreManager) -> None:
    """What the orchestrator, scheduler and agent will do: tasks made, assigned, then running."""
    while not manager.store.find("service"):
        await asyncio.sleep(0.05)
    service = manager.store.find("service")[0]
    template = dict(service.spec["TaskTemplate"])
    ids = [f"task{slot}".ljust(25, "x") for slot in (1, 2)]
    await manager.write([
        Create("task", tid, template, {"State": "new", "Message": "created"},
               {"ServiceID": service.id, "Slot": slot, "DesiredState": "running",
                "ServiceAnnotations": {"Name": service.name}})
        for slot, tid in enumerate(ids, 1)
    ])
    for state in ("pending", "assigned", "accepted", "preparing", "starting", "running"):
        await asyncio.sleep(0.3)
        ops: list[Op] = []
        for tid in ids:
            task = manager.store.get("task", tid)
            extra = dict(task.extra) | {"NodeID": NODE}
            status = {"State": state, "Message": state}
            ops.append(Update("task", tid, task.version, status=status, extra=extra))
        await manager.write(ops)


@pytest.mark.slow
def test_create_without_detach_shows_progress_until_converged(tmp_path: pathlib.Path) -> None:
    """The CLI's progress bars read Slot, NodeID, DesiredState, Status and the nodes as Docker's."""
    manager = _StoreManager()
    description = {"Hostname": "node1", "Engine": {"EngineVersion": "0.1.0"}}
    spec = {"Role": "manager", "Availability": "active", "Labels": {}}
    status = {"State": "ready", "Addr": "127.0.0.1"}
    asyncio.run(manager.write([Create("node", NODE, spec, status, {"Description": description})]))
    server = EngineApiServer(NodeFacts(node_id=NODE, hostname="node1", engine_version="0.1.0"),
                             lambda: SwarmInfo("active", NODE, "127.0.0.1"), "127.0.0.1", 0)
    server.attach(ManagerEngineApi(manager))

    async def main() -> tuple[int, str, str]:
        async with TestServer(server.app, host="127.0.0.1") as http:
            env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp_path / "cfg"),
                   "HOME": str(tmp_path)}
            assert DOCKER is not None
            cli = await asyncio.create_subprocess_exec(
                DOCKER, "-H", f"tcp://127.0.0.1:{http.port}", "service", "create", "--name", "web",
                "--replicas", "2", "--update-monitor", "1s", "nginx:1.25",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            player = asyncio.create_task(_play_orchestrator(manager))
            out, err = await asyncio.wait_for(cli.communicate(), timeout=60)
            await player
            return cli.returncode or 0, out.decode(), err.decode()

    code, out, err = asyncio.run(main())
    print(out, err)
    assert code == 0, err
    service_id = manager.store.find("service")[0].id
    lines = out.splitlines()
    assert lines[0] == service_id
    assert "overall progress: 0 out of 2 tasks" in lines
    assert "overall progress: 2 out of 2 tasks" in lines
    assert lines[-1] == f"verify: Service {service_id} converged"
