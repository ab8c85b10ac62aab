"""Issue 10's must-shows on the compose cluster with the real docker CLI: where tasks go, and why not.

Max replicas per node, a global service following nodes that join and drain, constraints on
role and labels, resource reservations against what the nodes declare (the session cluster is
up with ``--cpus 1 --memory 1g``, tests/compose/conftest.py) with ``swarmlet explain``, the
restart policy, and a replicated job. Each test removes what it made and leaves every node
started, Active and without labels. The pending reasons are Swarm's words, as recorded in
../shared/ref/real-swarm/single-node/07-modes-placement.txt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compose.dockercli import (
    NODES,
    five_ready,
    manager_host,
    node_ids,
    ok,
    running_tasks,
    service_ls,
    service_ps,
    tasks_per_node,
    tidy_cluster,
)
from tests.compose.helpers import swarmlet, wait_for


@pytest.fixture
def tidy(cluster: str) -> Iterator[None]:
    wait_for("the five nodes Ready", five_ready, timeout=60, interval=0.5)
    before = set(service_ls())
    yield
    tidy_cluster(before)


def pending(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["DesiredState"] == "Running" and r["CurrentState"].startswith("Pending")]


def waiting_with_reason(service: str) -> list[dict[str, Any]] | None:
    """The service's pending tasks once the scheduler has written why they wait."""
    rows = pending(service_ps(service))
    return rows if rows and all(r["Error"] for r in rows) else None


def test_max_replicas_per_node_leaves_two_of_seven_pending(tidy: None) -> None:
    ok("service", "create", "-d", "--name", "maxper", "--replicas", "7", "--replicas-max-per-node", "1",
       "nginx:1.25")  # fmt: skip

    def settled() -> list[dict[str, Any]] | None:
        rows = service_ps("maxper")
        return rows if len(running_tasks("maxper")) == 5 and len(pending(rows)) == 2 else None

    rows = wait_for("5 running, 2 pending", settled, timeout=60, interval=0.5)
    assert sorted(tasks_per_node(running_tasks("maxper")).values()) == [1] * 5
    assert all(r["Node"] == "" and r["Error"] == "no suitable node (max replicas per node limit exceed)"
               for r in pending(rows))  # fmt: skip
    assert service_ls()["maxper"]["Replicas"] == "5/7 (max 1 per node)"


def test_global_service_follows_nodes_joining_and_draining(tidy: None) -> None:
    ok("service", "create", "-d", "--name", "agent", "--mode", "global", "busybox", "sleep", "1d")
    rows = wait_for("one agent task per node", lambda: len(r := running_tasks("agent")) == 5 and r,
                    timeout=60, interval=0.5)
    assert sorted(r["Node"] for r in rows) == sorted(NODES)
    ids = node_ids()
    assert sorted(r["Name"] for r in rows) == sorted(f"agent.{ids[n]}" for n in NODES)
    assert service_ls()["agent"]["Mode"] == "global"
    wait_for("REPLICAS 5/5", lambda: service_ls()["agent"]["Replicas"] == "5/5", timeout=30, interval=0.5)

    added = swarmlet("node", "add", timeout=180)
    joined = time.monotonic()  # `node add` returns once the managers list the node Ready
    assert added.stdout.startswith("worker3 ("), added.stdout
    try:
        def on_worker3(state: str) -> Any:
            return [r for r in service_ps("agent") if r["Node"] == "worker3"
                    and r["CurrentState"].startswith(state)]  # fmt: skip

        wait_for("a task assigned to worker3", lambda: on_worker3(""), timeout=30, interval=0.05)
        assigned = time.monotonic() - joined
        wait_for("the task on worker3 running", lambda: on_worker3("Running"), timeout=30, interval=0.05)
        running = time.monotonic() - joined
        print(f"worker3 Ready -> its agent task listed {assigned:.2f} s, running {running:.2f} s later")
        # The bound, 2 s from the node joining; measured here 0.10 to 0.58 s to running at load
        # average 10 to 50 (README, "Measured figures").
        assert running < 2.0, f"worker3's global task ran only {running:.2f} s after it joined"
        wait_for("REPLICAS 6/6", lambda: service_ls()["agent"]["Replicas"] == "6/6", timeout=30, interval=0.5)
    finally:
        swarmlet("node", "rm", "worker3", timeout=180)
    wait_for("5 agent tasks after worker3 left",
             lambda: service_ls()["agent"]["Replicas"] == "5/5", timeout=90, interval=0.5)

    ok("node", "update", "--availability", "drain", "worker2")

    def drained() -> list[dict[str, Any]] | None:
        rows = [r for r in service_ps("agent") if r["Node"] == "worker2"]
        stopped = all(r["DesiredState"] == "Shutdown" and r["CurrentState"].startswith("Shutdown")
                      for r in rows)  # fmt: skip
        return rows if rows and stopped else None

    # busybox's sleep ignores SIGTERM: the task stops when its 10 s stop grace period ends.
    wait_for("worker2's agent task shut down", drained, timeout=60, interval=0.3)
    assert sorted(r["Node"] for r in running_tasks("agent")) == sorted(set(NODES) - {"worker2"})
    wait_for("REPLICAS 4/4", lambda: service_ls()["agent"]["Replicas"] == "4/4", timeout=30, interval=0.5)
    ok("node", "update", "--availability", "active", "worker2")
    wait_for("worker2 running an agent task again",
             lambda: "worker2" in tasks_per_node(running_tasks("agent")), timeout=30, interval=0.3)


def test_constraints_on_role_and_on_a_label_added_later(tidy: None) -> None:
    ok("service", "create", "-d", "--name", "onw", "--replicas", "4", "--constraint", "node.role==worker",
       "nginx:1.25")  # fmt: skip
    rows = wait_for("4 onw tasks running", lambda: len(r := running_tasks("onw")) == 4 and r, timeout=60,
                    interval=0.5)
    assert tasks_per_node(rows) == {"worker1": 2, "worker2": 2}

    ok("service", "create", "-d", "--name", "db", "--constraint", "node.labels.db == true", "nginx:1.25")
    waiting = wait_for("db pending", lambda: waiting_with_reason("db"), timeout=60, interval=0.5)
    assert waiting[0]["Error"] == "no suitable node (scheduling constraints not satisfied on 5 nodes)"
    time.sleep(1)
    assert running_tasks("db") == [] and service_ls()["db"]["Replicas"] == "0/1"

    ok("node", "update", "--label-add", "db=true", "worker2")
    rows = wait_for("db running on worker2", lambda: running_tasks("db"), timeout=30, interval=0.3)
    assert [r["Node"] for r in rows] == ["worker2"]
    assert service_ls()["db"]["Replicas"] == "1/1"


def test_reserved_memory_beyond_every_node_pends_and_explain_names_each_nodes_memory(tidy: None) -> None:
    for name in NODES:
        resources = json.loads(ok("node", "inspect", "--format", "{{json .Description.Resources}}", name))
        assert resources == {"NanoCPUs": 1_000_000_000, "MemoryBytes": 1 << 30}, (name, resources)
    ok("service", "create", "-d", "--name", "big", "--reserve-memory", "2g", "nginx:1.25")
    waiting = wait_for("big pending", lambda: waiting_with_reason("big"), timeout=60, interval=0.5)
    assert waiting[0]["Error"] == "no suitable node (insufficient resources on 5 nodes)"
    assert service_ls()["big"]["Replicas"] == "0/1"

    explained = swarmlet("explain", "big", "--host", f"tcp://{manager_host()}")
    print(explained.stdout)
    out = explained.stdout.splitlines()
    assert "Swarm says: no suitable node (insufficient resources on 5 nodes)" in out
    for name in NODES:
        at = next(i for i, line in enumerate(out) if line.startswith(f"  {name} ["))
        assert out[at].endswith(": no (resources)"), out[at]
        assert out[at + 1].strip() == "resources: reserves 2 GiB memory, 1 GiB of 1 GiB free", out[at + 1]
        assert "1 GiB more memory" in out[at + 2], out[at + 2]


def test_on_failure_restarts_twice_then_stops(tidy: None) -> None:
    # The restart delay is shortened from Swarm's 5 s so that the test takes 3 s, not 11.
    ok("service", "create", "-d", "--name", "bad", "--restart-condition", "on-failure",
       "--restart-max-attempts", "2", "--restart-delay", "1s", "busybox", "sh", "-c", "exit 3")  # fmt: skip

    def failed_three_times() -> list[dict[str, Any]] | None:
        rows = service_ps("bad")
        stopped = all(r["CurrentState"].startswith("Failed") and r["DesiredState"] == "Shutdown"
                      for r in rows)  # fmt: skip
        return rows if len(rows) == 3 and stopped else None

    # Every failed task is told to stay down (swarmkit's restart supervisor sets Shutdown even
    # when it makes no replacement), and two replacements were made: three in all.
    rows = wait_for("bad failed 3 times", failed_three_times, timeout=60, interval=0.5)
    assert all(r["Error"] == "task: non-zero exit (3)" for r in rows), rows
    assert [r["Name"] for r in rows] == ["bad.1"] * 3
    table = ok("service", "ps", "bad")
    assert table.count('"task: non-zero exit (3)"') == 3 and table.count(" \\_ bad.1 ") == 2, table
    time.sleep(3)  # three restart delays: no fourth task comes
    assert len(service_ps("bad")) == 3
    assert service_ls()["bad"]["Replicas"] == "0/1"


def test_replicated_job_completes_and_ls_shows_it_as_swarm_does(tidy: None) -> None:
    ok("service", "create", "-d", "--name", "job", "--mode", "replicated-job", "--replicas", "5",
       "busybox", "echo", "hi")  # fmt: skip

    def done() -> list[dict[str, Any]] | None:
        rows = service_ps("job")
        complete = [r for r in rows if r["DesiredState"] == "Complete"
                    and r["CurrentState"].startswith("Complete")]  # fmt: skip
        return rows if len(complete) == 5 else None

    rows = wait_for("5 job tasks complete", done, timeout=90, interval=0.5)
    assert sorted(r["Name"] for r in rows) == [f"job.{n}" for n in range(1, 6)]
    row = service_ls()["job"]
    assert (row["Mode"], row["Replicas"]) == ("replicated job", "0/5 (5/5 completed)")
    logs = [line.partition(" | ")[2] for line in ok("service", "logs", "job").splitlines()]
    assert logs == ["hi"] * 5

