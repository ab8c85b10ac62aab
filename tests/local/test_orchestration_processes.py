"""The leader's orchestration components in real manager processes on 127.0.0.x.

One manager and one worker run as ``python -m nodeagent``. A service is written the way the
Engine API writes it (a batch forwarded to the leader's cluster port), and the leader's metrics
then show batches written by the replicated orchestrator (tasks created), the allocator
(pending) and the scheduler (assigned): the components run in the manager's harnesses, on the
leader, through Raft. With the real docker CLI, and the agents running the tasks: services
converge, a failing task is restarted with its delay up to MaxAttempts, and a worker that stops
has its tasks replaced on the other one.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _docker_cli import requires_docker
from _procs_manager import START_S, Cluster, NodeProc, running, wait_until

from manager.engineapi.writes import WRITE_METHOD
from manager.scheduler.build import task_template
from manager.state.store import Create
from manager.state.store.commands import encode_batch
from manager.state.store.objects import format_timestamp
from nodeagent import tls


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 1, ["worker1"]) as c:
        yield c


def batches(node: NodeProc) -> dict[str, float]:
    """swarmlet_component_batches_total by component, from the node's /metrics."""
    port = node.args[node.args.index("--metrics-port") + 1]
    with urllib.request.urlopen(f"http://{node.host}:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    found = re.findall(r'swarmlet_component_batches_total\{component="([^"]+)"\} ([0-9.e+]+)', text)
    return {name: float(value) for name, value in found}


def create_service(node: NodeProc, replicas: int) -> str:
    """Write a service through the leader's forwarded-write method, as the Engine API does."""
    spec = {"Name": "web", "TaskTemplate": task_template(), "Mode": {"Replicated": {"Replicas": replicas}}}
    request = encode_batch([Create("service", "s" * 25, spec, {}, {})], now=format_timestamp(0))

    async def send() -> bytes:
        async with tls.channel(node.target) as channel:
            answer: bytes = await channel.unary_unary(WRITE_METHOD, None, None)(request, timeout=5)
            return answer

    return json.loads(asyncio.run(send())).get("error", {}).get("message", "")


def test_a_service_gets_tasks_created_allocated_and_scheduled_by_the_leader(cluster: Cluster) -> None:
    manager = cluster.managers()[0]
    wait_until(lambda: isinstance(batches(manager), dict), 30, what="the manager's /metrics")

    def created() -> bool:
        error = create_service(manager, 2)
        return not error or "already exists" in error

    wait_until(created, 30, interval=0.3, what="the service written")
    try:
        wait_until(
            lambda: all(
                batches(manager).get(name, 0) >= 1
                for name in ("orchestrator-replicated", "allocator", "scheduler")
            ),
            30,
            what="orchestrator, allocator and scheduler batches",
        )
    except Exception:
        print(cluster.logs())
        raise


@pytest.mark.slow
@requires_docker
def test_the_docker_cli_sees_services_converge_restart_and_reschedule(tmp_path: pathlib.Path) -> None:
    """As the recordings of a real Swarm show (five-nodes/d-reschedule.txt): a worker stopped and
    Down has its tasks replaced on the other worker; the old ones show desired Shutdown, current
    Running, and ``service ls`` counts them (6/4) while the node cannot report; once the node is
    removed they are Orphaned and counted no more (4/4)."""
    from _docker_cli import cli_rows, docker

    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    c.add_worker("worker2")
    c.start_all()
    manager = c.managers()[0]

    def run(*args: str) -> Any:
        return docker(tmp_path, manager.host, *args)

    def ps(name: str) -> list[list[str]]:
        return cli_rows(run("service", "ps", name).stdout)[1:]

    try:
        wait_until(lambda: run("node", "ls").stdout.count("Ready") == 3, START_S, 0.5, "3 nodes Ready")
        web = run("service", "create", "--detach", "--name", "web", "--replicas", "4",
                  "--constraint", "node.role==worker", "nginx:1.25")  # fmt: skip
        assert web.returncode == 0, web.stderr
        bad = run("service", "create", "--detach", "--name", "bad", "--restart-delay", "1s",
                  "--restart-max-attempts", "2", "busybox", "sh", "-c", "exit 3")  # fmt: skip
        assert bad.returncode == 0, bad.stderr

        def running(rows: list[list[str]], node: str = "") -> int:
            return sum(
                row[4] == "Running" and row[5].startswith("Running") and (not node or row[3] == node)
                for row in rows
            )

        rows = wait_until(lambda: (r := ps("web")) and running(r) == 4 and r, 30, 0.5, "4 web tasks running")
        assert {row[3] for row in rows} == {"worker1", "worker2"}  # spread over both workers

        # Two restarts, a second apart, then the slot is left failed: three tasks in all.
        def all_failed(rows: list[list[str]]) -> bool:
            return len(rows) == 3 and all(row[5].startswith("Failed") for row in rows)

        failed = wait_until(lambda: (r := ps("bad")) and all_failed(r) and r, 30, 0.5, "bad failed 3 times")
        assert all(row[4] == "Shutdown" and '"task: non-zero exit (3)"' in row for row in failed)
        time.sleep(3)
        assert len(ps("bad")) == 3  # MaxAttempts used up: no fourth task

        c.nodes["worker2"].kill()
        wait_until(lambda: "Down" in run("node", "ls").stdout, 20, 0.2, "worker2 Down")
        after = wait_until(
            lambda: (r := ps("web")) and running(r, "worker1") == 4 and r, 20, 0.5, "4 tasks on worker1"
        )
        old = [row for row in after if row[3] == "worker2"]
        assert len(old) == 2 and all(row[4] == "Shutdown" and row[5].startswith("Running") for row in old)
        listing = {row[1]: row for row in cli_rows(run("service", "ls").stdout)[1:]}
        assert listing["web"][3] == "6/4"

        # Removed (node rm), worker2's tasks are orphaned in the same write, as swarmkit's
        # RemoveNode does: no agent will report on them, and they no longer count as running.
        done = run("node", "rm", "worker2")
        assert done.returncode == 0, done.stderr
        listing = {row[1]: row for row in cli_rows(run("service", "ls").stdout)[1:]}
        assert listing["web"][3] == "4/4"
        gone = [row for row in ps("web") if row[5].startswith("Orphaned")]
        assert len(gone) == 2 and all(row[4] == "Shutdown" for row in gone), gone
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop_all()
