"""Rolling updates on virtual time: the real components, fake agents that can fail a healthcheck.

``docker service update --image 2 --update-parallelism 1 --update-delay 2s`` replaces one task at
a time, stop-first: each old task is shut down together with its replacement's creation, the
next slot starts ``Delay`` after the previous new task runs, and UpdateStatus ends ``completed``
``Monitor`` (5 s) after the last. An update to an image that fails its healthcheck with
``--update-failure-action rollback`` swaps the spec back by itself and ends
``rollback_completed`` with every task on the old image. A global service updates node by node;
the same seed gives the same run.
"""

from __future__ import annotations

import itertools
from typing import Any

from manager.orchestrator.common import parse_timestamp
from manager.orchestrator.simcluster import SimCluster
from manager.scheduler.build import make_node, task_template
from manager.state.store.objects import StoredObject

NODES = [f"node{i}".ljust(25, "0") for i in range(1, 5)]
SECOND = 1_000_000_000


def web(replicas: int, image: str = "nginx:1.25") -> dict[str, Any]:
    template = task_template()
    template["ContainerSpec"] = {"Image": image}
    return {
        "Name": "web",
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * SECOND,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * SECOND,
                           "MaxFailureRatio": 0, "Order": "stop-first"},
    }  # fmt: skip


def image(task: StoredObject) -> str:
    return str(task.spec["ContainerSpec"]["Image"])


def set_image(name: str, **update: Any) -> Any:
    def change(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = name
        spec["UpdateConfig"].update(update)

    return change


def update_status(cluster: SimCluster, sid: str) -> dict[str, Any]:
    return dict(cluster.store.get("service", sid).extra.get("UpdateStatus") or {})


def test_one_task_at_a_time_with_the_delay_between() -> None:
    cluster = SimCluster(1, [make_node(n) for n in NODES])
    sid = cluster.create_service(web(4))
    cluster.run_until(1.0)
    assert len(cluster.running(sid)) == 4
    started = cluster.sim.now
    cluster.update_service(sid, set_image("nginx:1.26", Delay=2 * SECOND))
    cluster.run_until(started + 30.0, lambda: update_status(cluster, sid).get("State") == "completed")
    tasks = cluster.tasks(sid)
    new = sorted((t for t in tasks if image(t) == "nginx:1.26"), key=lambda t: t.created_at)
    old = [t for t in tasks if image(t) == "nginx:1.25"]
    assert len(new) == 4 and len(old) == 4
    assert all(t.status["State"] == "running" and t.extra["DesiredState"] == "running" for t in new)
    assert all(t.status["State"] == "shutdown" and t.extra["DesiredState"] == "shutdown" for t in old)
    assert sorted(t.extra["Slot"] for t in new) == [1, 2, 3, 4]
    # one at a time: each new task is created 2 s (the delay) after the previous one ran, plus the
    # agents' report latencies; never two replacements under way at once
    created = [parse_timestamp(t.created_at) for t in new]
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert all(2.0 <= gap <= 2.5 for gap in gaps), gaps
    status = update_status(cluster, sid)
    assert status["Message"] == "update completed"
    completed = parse_timestamp(status["CompletedAt"])
    assert parse_timestamp(status["StartedAt"]) <= created[0]
    # Swarm declares the update complete after the last delay and one Monitor period (5 s)
    assert created[-1] + 7.0 <= completed <= created[-1] + 8.0
    # every old task stopped before its slot's replacement ran (stop-first)
    for task in new:
        (previous,) = [t for t in old if t.extra["Slot"] == task.extra["Slot"]]
        assert parse_timestamp(previous.status["Timestamp"]) <= parse_timestamp(task.status["Timestamp"])


def test_an_unhealthy_image_rolls_back_by_itself() -> None:
    cluster = SimCluster(2, [make_node(n) for n in NODES])
    sid = cluster.create_service(web(4))
    cluster.run_until(1.0)
    cluster.agents.unhealthy["nginx:broken"] = 1.5  # fails its healthcheck 1.5 s after starting
    cluster.update_service(sid, set_image("nginx:broken", FailureAction="rollback", Monitor=2 * SECOND))
    cluster.run_until(60.0, lambda: update_status(cluster, sid).get("State") == "rollback_completed")
    status = update_status(cluster, sid)
    assert status["State"] == "rollback_completed", status
    assert status["Message"] == "rollback completed"
    service = cluster.store.get("service", sid)
    assert service.spec["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:1.25"
    assert service.extra["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:broken"
    running = cluster.running(sid)
    assert len(running) == 4 and {image(t) for t in running} == {"nginx:1.25"}
    broken = [t for t in cluster.tasks(sid) if image(t) == "nginx:broken"]
    # with no delay the supervisor moves on once a task runs, so slots after the first may have
    # been updated before the first failed its healthcheck: all of them are rolled back
    assert broken
    assert any(t.status["State"] == "failed" and t.status.get("Err") == "unhealthy container" for t in broken)
    assert all(t.extra["DesiredState"] == "shutdown" for t in broken)


def test_rollback_message_names_the_failed_task() -> None:
    cluster = SimCluster(3, [make_node(n) for n in NODES])
    sid = cluster.create_service(web(2))
    cluster.run_until(1.0)
    cluster.agents.unhealthy["nginx:broken"] = 1.0
    cluster.update_service(sid, set_image("nginx:broken", FailureAction="rollback"))
    cluster.run_until(30.0, lambda: update_status(cluster, sid).get("State") == "rollback_started")
    status = update_status(cluster, sid)
    (failed,) = [t for t in cluster.tasks(sid) if t.status["State"] == "failed"]
    assert status["Message"] == f"update rolled back due to failure or early termination of task {failed.id}"
    assert "CompletedAt" not in status


def test_a_paused_update_stays_paused() -> None:
    cluster = SimCluster(4, [make_node(n) for n in NODES])
    sid = cluster.create_service(web(3))
    cluster.run_until(1.0)
    cluster.agents.unhealthy["nginx:broken"] = 1.0
    cluster.update_service(sid, set_image("nginx:broken", Delay=5 * SECOND))
    cluster.run_until(40.0)
    status = update_status(cluster, sid)
    assert status["State"] == "paused"
    assert status["Message"].startswith("update paused due to failure or early termination of task ")
    # two slots still run the old image; the failed slot keeps being restarted on the new one
    old = [t for t in cluster.running(sid) if image(t) == "nginx:1.25"]
    assert len(old) == 2


def test_a_global_service_updates_node_by_node() -> None:
    cluster = SimCluster(5, [make_node(n) for n in NODES])
    spec = web(0)
    spec["Mode"] = {"Global": {}}
    sid = cluster.create_service(spec)
    cluster.run_until(1.0)
    assert len(cluster.running(sid)) == 4
    cluster.update_service(sid, set_image("nginx:1.26", Delay=1 * SECOND))
    cluster.run_until(40.0, lambda: update_status(cluster, sid).get("State") == "completed")
    assert update_status(cluster, sid)["State"] == "completed"
    running = cluster.running(sid)
    assert {image(t) for t in running} == {"nginx:1.26"}
    assert sorted(t.extra["NodeID"] for t in running) == sorted(NODES)
    created = sorted(parse_timestamp(t.created_at) for t in running)
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # one node at a time, the delay between


def test_same_seed_same_update() -> None:
    def digest(seed: int) -> str:
        cluster = SimCluster(seed, [make_node(n) for n in NODES])
        sid = cluster.create_service(web(4))
        cluster.run_until(1.0)
        cluster.agents.unhealthy["nginx:broken"] = 1.5
        cluster.update_service(sid, set_image("nginx:broken", FailureAction="rollback"))
        cluster.run_until(40.0)
        return cluster.digest()

    assert digest(7) == digest(7)
