"""The leader's orchestration components in real manager processes on 127.0.0.x.

One manager and one worker run as ``python -m nodeagent``. A service is written the way the
Engine API writes it (a batch forwarded to the leader's cluster port), and the leader's metrics
then show batches written by the replicated orchestrator (tasks created), the allocator
(pending) and the scheduler (assigned): the components run in the manager's harnesses, on the
leader, through Raft.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from _procs_manager import Cluster, NodeProc, wait_until

from manager.engineapi.writes import WRITE_METHOD
from manager.scheduler.build import task_template
from manager.state.store import Create
from manager.state.store.commands import encode_batch
from manager.state.store.objects import format_timestamp


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


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
        async with grpc.aio.insecure_channel(node.target) as channel:
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
