"""The real docker CLI's ``docker service`` commands against swarmlet node processes on 127.0.0.x.

Three managers and a worker run as ``python -m nodeagent``; the CLI asks manager2, so every
write is forwarded to the leader. Only what needs no running task is checked here (the service
objects and the CLI's output): ``create`` (no digest warning for an image the emulated runtime
knows, Swarm's warning for one it does not), ``ls`` with Swarm's columns, ``inspect``,
``update --replicas``, ``rm``, and Swarm's refusals (name exists, bad constraint, unknown
service) in Docker's words. Skipped when no docker binary is installed.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import Cluster, wait_until
from test_engineapi_cli import DOCKER, _rows, docker

pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI installed")


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(3)
    c.add_worker("worker1")
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


@pytest.mark.slow
def test_docker_service_commands(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    m2 = cluster.managers()[1]

    def run(*args: str) -> Any:
        return docker(tmp_path, m2.host, *args)

    def ready() -> Any:
        done = run("node", "ls")
        return done if done.returncode == 0 and done.stdout.count("Ready") == 4 else None

    try:
        wait_until(ready, timeout=30, what="docker node ls: 4 Ready nodes")
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
    rows = _rows(listed.stdout)
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
    assert _rows(tasks.stdout)[0][:3] == ["ID", "NAME", "IMAGE"]

    removed = run("service", "rm", "web", "other")
    assert (removed.returncode, removed.stdout.split()) == (0, ["web", "other"]), removed.stderr
    empty = run("service", "ls", "-q")
    assert (empty.returncode, empty.stdout.strip()) == (0, "")
