"""Orchestration on virtual time: the real orchestrators, allocator and scheduler on the real store.

A simulated cluster (``manager.orchestrator.simcluster``) runs every leader component in the
simulator's harness; fake agents report assigned tasks running after 50 ms. A service of 4
replicas converges to 4 running tasks; a node marked Down has its tasks replaced on the other
nodes by the replicated orchestrator's next pass (held for the 5 s restart delay, then placed
elsewhere and running);
the same seed gives the same run, store digest and all; a failed task runs again exactly one
restart delay (plus the agent's report) later; a global service follows nodes joining and draining.
"""

from __future__ import annotations

from typing import Any

import pytest

from manager.orchestrator.simcluster import SimCluster
from manager.scheduler.build import make_node, task_template

NODES = [f"node{i}".ljust(25, "0") for i in range(1, 5)]


def web(replicas: int) -> dict[str, Any]:
    return {"Name": "web", "TaskTemplate": task_template(), "Mode": {"Replicated": {"Replicas": replicas}}}


def placement(cluster: SimCluster, sid: str) -> dict[int, str]:
    return {int(t.extra["Slot"]): str(t.extra["NodeID"]) for t in cluster.running(sid)}


def run_scenario(seed: int) -> tuple[SimCluster, str, list[tuple[float, str, str, str]]]:
    cluster = SimCluster(seed, [make_node(n) for n in NODES])
    log: list[tuple[float, str, str, str]] = []

    def record() -> None:
        for change in watch.poll():
            t = change.object
            log.append((cluster.sim.now, t.id, str(t.status.get("State")), str(t.extra.get("DesiredState"))))

    watch = cluster.store.watch(["task"], on_change=record)  # every task change, in commit order
    sid = cluster.create_service(web(4))
    cluster.run_until(1.0)
    return cluster, sid, log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_four_replicas_converge_to_four_running(seed: int) -> None:
    cluster, sid, _ = run_scenario(seed)
    running = cluster.running(sid)
    assert sorted(t.extra["Slot"] for t in running) == [1, 2, 3, 4]
    assert len({t.extra["NodeID"] for t in running}) == 4  # spread: one per node
    assert len(cluster.tasks(sid)) == 4


def test_a_down_node_has_its_tasks_replaced_on_the_others_in_one_pass() -> None:
    cluster, sid, _ = run_scenario(1)
    before = placement(cluster, sid)
    victim_slot, victim = min(before.items())
    replicated = cluster.harnesses[0]
    assert replicated.component.name == "orchestrator-replicated"
    passes = replicated.passes
    cluster.set_node(victim, state="down")
    while replicated.passes == passes:  # up to and including the orchestrator's next pass
        assert cluster.sim.step()
    tasks = cluster.tasks(sid)
    slot_tasks = [t for t in tasks if t.extra["Slot"] == victim_slot]
    replacement = [t for t in slot_tasks if t.extra["DesiredState"] != "shutdown"]
    assert len(replacement) == 1 and replacement[0].extra["DesiredState"] == "ready"
    old = [t for t in tasks if t.extra.get("NodeID") == victim]
    assert [t.extra["DesiredState"] for t in old] == ["shutdown"]
    cluster.run_until(cluster.sim.now + 0.001)
    (held,) = [t for t in cluster.tasks(sid) if t.id == replacement[0].id]
    assert held.status["State"] == "new"  # held for the restart delay before it can reach a node
    cluster.run_until(cluster.sim.now + 6.0)  # the 5 s restart delay, placement, then the agent
    (new,) = [t for t in cluster.tasks(sid) if t.id == replacement[0].id]
    assert new.status["State"] == "running" and new.extra["NodeID"] not in ("", victim)
    after = placement(cluster, sid)
    assert len(after) == 4 and victim not in after.values()
    assert {s: n for s, n in after.items() if s != victim_slot} == {
        s: n for s, n in before.items() if s != victim_slot
    }


def test_the_same_seed_gives_the_same_run() -> None:
    def run(seed: int) -> tuple[str, list[tuple[float, str, str, str]]]:
        cluster, sid, log = run_scenario(seed)
        cluster.set_node(placement(cluster, sid)[1], state="down")
        cluster.scale(sid, 6)
        cluster.run_until(10.0)
        return cluster.digest(), log

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first[0] != other[0]  # task IDs come from the seed


def test_a_failed_task_runs_again_exactly_one_restart_delay_later() -> None:
    cluster = SimCluster(4, [make_node(n) for n in NODES])
    spec = web(2)
    spec["TaskTemplate"]["RestartPolicy"] = {"Condition": "on-failure", "Delay": 2_000_000_000}
    sid = cluster.create_service(spec)
    cluster.run_until(1.0)
    (victim,) = [t for t in cluster.running(sid) if t.extra["Slot"] == 1]
    cluster.agents.fail(victim.id, 3)  # at virtual t = 1.0
    started: list[float] = []

    def seen() -> None:
        for change in watch.poll():
            t = change.object
            if t.id != victim.id and t.extra.get("Slot") == 1 and t.status.get("State") == "running":
                started.append(cluster.sim.now)

    watch = cluster.store.watch(["task"], on_change=seen)
    cluster.run_until(10.0)
    assert started == [pytest.approx(1.0 + 2.0 + 0.05)]  # the delay, then the agent's report
    assert cluster.store.get("task", victim.id).extra["DesiredState"] == "shutdown"


def test_a_global_service_follows_nodes_joining_and_draining() -> None:
    cluster = SimCluster(5, [make_node(n) for n in NODES[:2]])
    sid = cluster.create_service({"Name": "agent", "TaskTemplate": task_template(), "Mode": {"Global": {}}})
    cluster.run_until(1.0)
    assert sorted(t.extra["NodeID"] for t in cluster.running(sid)) == NODES[:2]
    cluster.add_node(make_node(NODES[2]))
    cluster.set_node(NODES[0], availability="drain")
    cluster.run_until(2.0)
    assert sorted(t.extra["NodeID"] for t in cluster.running(sid)) == NODES[1:3]
    drained = [t for t in cluster.tasks(sid) if t.extra["NodeID"] == NODES[0]]
    assert [(t.status["State"], t.extra["DesiredState"]) for t in drained] == [("shutdown", "shutdown")]


def test_jobs_run_to_completion_and_stop() -> None:
    cluster = SimCluster(6, [make_node(n) for n in NODES])
    job = cluster.create_service(
        {"Name": "job", "TaskTemplate": task_template(),
         "Mode": {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}}}
    )  # fmt: skip
    gjob = cluster.create_service(
        {"Name": "gjob", "TaskTemplate": task_template(), "Mode": {"GlobalJob": {}}}
    )
    cluster.run_until(5.0)
    done = [t for t in cluster.tasks(job) if t.status["State"] == "complete"]
    assert sorted(t.extra["Slot"] for t in done) == [1, 2, 3, 4, 5] and len(cluster.tasks(job)) == 5
    assert sorted(t.extra["NodeID"] for t in cluster.tasks(gjob)) == NODES
    assert all(t.status["State"] == "complete" for t in cluster.tasks(gjob))
