"""The task reaper: 5 tasks per slot (Swarm's default), MaxAttempts + 1, removed tasks and services."""

from __future__ import annotations

from _orch import World

from manager.orchestrator import TaskReaper
from manager.state.store import Update
from manager.state.store.objects import thaw


def history(w: World, sid: str, count: int, *, slot: int = 1, node: str = "n1") -> list[str]:
    """``count`` stopped tasks of one slot, oldest first, then one running."""
    ids = []
    for _ in range(count):
        ids.append(w.task(sid, slot=slot, node=node, state="shutdown", desired="shutdown"))
        w.now += 1
    ids.append(w.task(sid, slot=slot, node=node))
    return ids


def test_keeps_five_tasks_per_slot_deleting_the_oldest_stopped() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 2}})
    slot1 = history(w, sid, 7, slot=1)
    slot2 = history(w, sid, 3, slot=2)
    w.run(TaskReaper())
    kept = {t.id for t in w.tasks(sid)}
    assert kept == set(slot1[3:]) | set(slot2)  # slot 1: the three oldest went; slot 2 untouched


def test_max_attempts_keeps_one_more_than_the_attempts() -> None:
    w = World()
    sid = w.service("web", restart={"Condition": "any", "MaxAttempts": 2})
    ids = history(w, sid, 5)
    w.run(TaskReaper())
    assert [t.id for t in w.tasks(sid)] == sorted(ids[3:])


def test_the_cluster_spec_sets_the_limit() -> None:
    w = World()
    cluster = w.store.find("cluster")[0]
    spec = thaw(cluster.spec)
    spec["Orchestration"]["TaskHistoryRetentionLimit"] = 2
    w.apply([Update("cluster", cluster.id, cluster.version, spec=spec)])
    sid = w.service("web")
    ids = history(w, sid, 4)
    w.run(TaskReaper(), {("cluster", "*")})
    assert sorted(t.id for t in w.tasks(sid)) == sorted(ids[3:])


def test_a_running_task_is_never_reaped_and_global_history_is_per_node() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}})
    for _ in range(7):
        w.task(sid, node="n1")  # seven running tasks on one node: nothing to reap
    history(w, sid, 6, node="n2")
    w.run(TaskReaper())
    assert len([t for t in w.tasks(sid) if t.extra["NodeID"] == "n1"]) == 7
    assert len([t for t in w.tasks(sid) if t.extra["NodeID"] == "n2"]) == 5


def test_removed_tasks_go_once_stopped() -> None:
    w = World()
    sid = w.service("web")
    running = w.task(sid, slot=2, node="n1", desired="remove")
    stopped = w.task(sid, slot=3, node="n1", state="shutdown", desired="remove")
    never = w.task(sid, slot=4, state="pending", desired="remove")
    w.run(TaskReaper())
    assert [t.id for t in w.tasks(sid)] == [running]
    assert stopped and never


def test_a_removed_services_tasks_are_stopped_then_deleted() -> None:
    w = World()
    sid = w.service("web")
    running = w.task(sid, slot=1, node="n1")
    w.task(sid, slot=2, node="n2", state="failed", desired="shutdown")
    w.delete("service", sid)
    w.run(TaskReaper(), {("service", sid)})
    (left,) = w.tasks(sid)
    assert left.id == running and left.extra["DesiredState"] == "remove"
    w.set_task(running, state="shutdown")
    w.run(TaskReaper(), {("service", sid)})
    assert w.tasks(sid) == []
