"""The update supervisor's pure reconcile, as tables: batches, delay, order, monitor, failure action."""

from __future__ import annotations

import random
from typing import Any

import pytest
from _orch import World

from manager.orchestrator import GlobalOrchestrator, ReplicatedOrchestrator, UpdateSupervisor
from manager.orchestrator.restart import held_start
from manager.orchestrator.update import update_config
from manager.state.store import Update
from manager.state.store.objects import StoredObject, thaw

SECOND = 1_000_000_000


def supervisor() -> UpdateSupervisor:
    return UpdateSupervisor(random.Random(1))


def setup(replicas: int = 4, **config: Any) -> tuple[World, str]:
    """A service of ``replicas`` running tasks of image 1, then updated to image 2 with ``config``."""
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": replicas}})
    for slot in range(1, replicas + 1):
        w.task(sid, slot=slot, node=f"n{1 + (slot - 1) % 3}")
    w.now += 10
    service = w.store.get("service", sid)
    spec = thaw(service.spec)
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    spec["UpdateConfig"] = {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * SECOND,
                            "MaxFailureRatio": 0, "Order": "stop-first", **config}  # fmt: skip
    spec["RollbackConfig"] = {"Parallelism": 0, "FailureAction": "pause", "Monitor": 5 * SECOND}
    extra = {"PreviousSpec": thaw(service.spec)}
    w.apply([Update("service", sid, service.version, spec=spec, extra=extra)])
    return w, sid


def new(w: World, sid: str) -> list[StoredObject]:
    return sorted(
        (t for t in w.tasks(sid) if t.spec["ContainerSpec"]["Image"] == "img:2"),
        key=lambda t: t.extra["Slot"],
    )


def old_desired(w: World, sid: str) -> list[str]:
    return [
        str(t.extra["DesiredState"])
        for t in sorted(w.tasks(sid), key=lambda t: t.extra["Slot"])
        if t.spec["ContainerSpec"]["Image"] != "img:2"
    ]


def status(w: World, sid: str) -> dict[str, Any]:
    return dict(w.store.get("service", sid).extra.get("UpdateStatus") or {})


def run_new(w: World, sid: str, state: str = "running") -> None:
    """Every new task not yet there reaches ``state`` now (the agents' reports)."""
    for t in new(w, sid):
        if t.status["State"] == "new":
            w.set_task(t.id, state=state, desired="running")


def test_an_update_starts_with_update_status_updating() -> None:
    w, sid = setup()
    result = w.run(supervisor())
    assert status(w, sid) == {"State": "updating", "StartedAt": "1970-01-01T00:16:50Z",
                              "Message": "update in progress"}  # fmt: skip
    assert new(w, sid) == [] and result.next_wakeup == w.now


@pytest.mark.parametrize(("parallelism", "first_batch"), [(1, 1), (2, 2), (0, 4)])
def test_parallelism_sets_the_batch(parallelism: int, first_batch: int) -> None:
    w, sid = setup(Parallelism=parallelism)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    fresh = new(w, sid)
    assert len(fresh) == first_batch
    # stop-first: each replaced slot's old task shut down in the same batch, the new one held
    assert all(t.extra["DesiredState"] == "ready" for t in fresh)
    assert old_desired(w, sid) == ["shutdown"] * first_batch + ["running"] * (4 - first_batch)
    assert [t.extra["Slot"] for t in fresh] == list(range(1, first_batch + 1))
    w.run(sup)  # nothing more until the batch runs
    assert len(new(w, sid)) == first_batch


def test_the_delay_is_a_wakeup_after_the_new_task_runs() -> None:
    w, sid = setup(Delay=2 * SECOND)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    run_new(w, sid)
    ran = w.now
    result = w.run(sup)
    assert len(new(w, sid)) == 1 and result.next_wakeup == ran + 2
    w.now = ran + 1.9
    w.run(sup)
    assert len(new(w, sid)) == 1
    w.now = ran + 2
    result = w.run(sup)
    assert len(new(w, sid)) == 2 and result.next_wakeup is None  # waits for the task to run


def test_start_first_starts_the_new_task_then_stops_the_old() -> None:
    w, sid = setup(Order="start-first")
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    (fresh,) = new(w, sid)
    assert fresh.extra["DesiredState"] == "running" and fresh.extra["Slot"] == 1
    assert old_desired(w, sid) == ["running"] * 4
    w.set_task(fresh.id, state="starting")
    w.run(sup)
    assert old_desired(w, sid) == ["running"] * 4
    w.set_task(fresh.id, state="running")
    w.run(sup)
    assert old_desired(w, sid)[0] == "shutdown"
    assert len(new(w, sid)) == 2  # and the next slot follows (no delay)


def test_completed_one_monitor_period_after_the_last_task_runs() -> None:
    w, sid = setup(Parallelism=0)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    run_new(w, sid)
    ran = w.now
    result = w.run(sup)
    assert result.next_wakeup == ran + 5 and status(w, sid)["State"] == "updating"
    w.now = ran + 5
    w.run(sup)
    assert status(w, sid) == {
        "State": "completed", "StartedAt": "1970-01-01T00:16:50Z",
        "CompletedAt": "1970-01-01T00:16:55Z", "Message": "update completed",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("action", "fails_after", "expect"),
    [
        ("pause", 1, "paused"),
        ("pause", 6, "updating"),  # after Monitor: not a failure of the update
        ("continue", 1, "updating"),
        ("rollback", 1, "rollback_started"),
    ],
)
def test_a_new_task_failing_within_monitor(action: str, fails_after: float, expect: str) -> None:
    w, sid = setup(FailureAction=action, Delay=10 * SECOND)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    run_new(w, sid)
    w.run(sup)
    (fresh,) = new(w, sid)
    w.now += fails_after
    w.set_task(fresh.id, state="failed")
    w.run(sup)
    got = status(w, sid)
    assert got["State"] == expect
    service = w.store.get("service", sid)
    if expect == "paused":
        assert got["Message"] == f"update paused due to failure or early termination of task {fresh.id}"
    if expect == "rollback_started":
        assert got["Message"] == f"update rolled back due to failure or early termination of task {fresh.id}"
        assert service.spec["TaskTemplate"]["ContainerSpec"]["Image"] != "img:2"
        assert service.extra["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "img:2"
        assert got["StartedAt"] == "1970-01-01T00:16:50Z" and "CompletedAt" not in got
    else:
        assert service.spec["TaskTemplate"]["ContainerSpec"]["Image"] == "img:2"


def test_a_rollback_rolls_the_updated_slots_back_with_rollback_config() -> None:
    w, sid = setup(FailureAction="rollback", Parallelism=2)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    run_new(w, sid)
    first, second = new(w, sid)
    w.now += 1
    w.set_task(first.id, state="failed")
    w.run(sup)
    assert status(w, sid)["State"] == "rollback_started"
    w.run(sup)
    # RollbackConfig Parallelism 0: the one updated slot still running is rolled back at once
    second = w.store.get("task", second.id)
    assert second.extra["DesiredState"] == "shutdown"
    back = [t for t in w.tasks(sid) if t.extra["Slot"] == 2 and t.extra["DesiredState"] == "ready"]
    assert len(back) == 1 and back[0].spec["ContainerSpec"]["Image"] != "img:2"
    w.set_task(back[0].id, state="running", desired="running")
    w.now += 5
    w.run(sup)
    got = status(w, sid)
    assert got["State"] == "rollback_completed" and got["Message"] == "rollback completed"


def test_a_failing_rollback_pauses() -> None:
    w, sid = setup(FailureAction="rollback")
    sup = supervisor()
    w.run(sup)
    service = w.store.get("service", sid)
    extra = thaw(service.extra)
    extra["UpdateStatus"]["State"] = "rollback_started"
    w.apply([Update("service", sid, service.version, extra=extra)])
    w.run(sup)
    fresh = new(w, sid)[0]  # RollbackConfig Parallelism 0: every slot at once
    w.set_task(fresh.id, state="rejected")
    w.run(sup)
    got = status(w, sid)
    assert got["State"] == "rollback_paused"
    assert got["Message"] == f"rollback paused due to failure or early termination of task {fresh.id}"


@pytest.mark.parametrize(("ratio", "failures", "expect"), [(0.5, 2, "updating"), (0.5, 3, "paused"),
                                                           (0, 1, "paused")])  # fmt: skip
def test_max_failure_ratio(ratio: float, failures: int, expect: str) -> None:
    w, sid = setup(Parallelism=0, MaxFailureRatio=ratio)
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    run_new(w, sid)
    for t in new(w, sid)[:failures]:
        w.set_task(t.id, state="failed")
    w.run(sup)
    assert status(w, sid)["State"] == expect


def test_a_paused_update_does_nothing_until_the_next_update() -> None:
    w, sid = setup()
    sup = supervisor()
    w.run(sup)
    service = w.store.get("service", sid)
    extra = thaw(service.extra)
    extra["UpdateStatus"]["State"] = "paused"
    w.apply([Update("service", sid, service.version, extra=extra)])
    assert w.run(sup).ops == []


def test_the_orchestrator_releases_a_held_update_task_once_the_old_one_stopped_without_delay() -> None:
    w, sid = setup()
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    (fresh,) = new(w, sid)
    (old,) = [t for t in w.tasks(sid) if t.extra["DesiredState"] == "shutdown"]
    slot_tasks = [fresh, old]
    nodes = {n.id: n for n in w.store.find("node")}
    assert held_start(fresh, slot_tasks, nodes) == w.now + 60  # the old one may still run
    w.set_task(old.id, state="shutdown")
    old = w.store.get("task", old.id)
    assert held_start(fresh, [fresh, old], nodes) == w.now  # no 5 s restart delay
    w.run(ReplicatedOrchestrator(random.Random(2)))
    assert w.store.get("task", fresh.id).extra["DesiredState"] == "running"
    assert len(w.live(sid)) == 4  # the orchestrator replaced nothing itself


def test_the_replicated_orchestrator_leaves_out_of_date_tasks_alone() -> None:
    w, sid = setup()
    result = w.run(ReplicatedOrchestrator(random.Random(2)))
    assert result.ops == [] and old_desired(w, sid) == ["running"] * 4


def test_global_services_update_per_node() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}})
    for node in ("n1", "n2", "n3"):
        w.task(sid, node=node)
    service = w.store.get("service", sid)
    spec = thaw(service.spec)
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    spec["UpdateConfig"] = {"Parallelism": 2, "Order": "stop-first"}
    w.apply([Update("service", sid, service.version, spec=spec, extra={"PreviousSpec": thaw(service.spec)})])
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    fresh = [t for t in w.tasks(sid) if t.spec["ContainerSpec"]["Image"] == "img:2"]
    assert sorted(t.extra["NodeID"] for t in fresh) == ["n1", "n2"]
    assert all("Slot" not in t.extra and t.extra["DesiredState"] == "ready" for t in fresh)


def test_update_config_defaults_as_docker_shows_them() -> None:
    cfg = update_config({}, rollback=False)
    got = (cfg.parallelism, cfg.delay, cfg.failure_action, cfg.monitor, cfg.max_failure_ratio, cfg.order)
    assert got == (1, 0.0, "pause", 5.0, 0.0, "stop-first")


def test_a_global_node_keeps_its_old_task_beside_a_start_first_replacement() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}})
    old = {node: w.task(sid, node=node) for node in ("n1", "n2", "n3")}
    service = w.store.get("service", sid)
    spec = thaw(service.spec)
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    spec["UpdateConfig"] = {"Parallelism": 1, "Order": "start-first"}
    w.apply([Update("service", sid, service.version, spec=spec, extra={"PreviousSpec": thaw(service.spec)})])
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    (fresh,) = [t for t in w.tasks(sid) if t.spec["ContainerSpec"]["Image"] == "img:2"]
    assert fresh.extra["NodeID"] == "n1" and fresh.extra["DesiredState"] == "running"
    w.run(GlobalOrchestrator(random.Random(3)))  # neither task is the global orchestrator's to stop
    assert w.store.get("task", fresh.id).extra["DesiredState"] == "running"
    assert w.store.get("task", old["n1"]).extra["DesiredState"] == "running"
    w.set_task(fresh.id, state="running")
    w.run(sup)
    assert w.store.get("task", old["n1"]).extra["DesiredState"] == "shutdown"


def test_force_update_replaces_every_task() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 2}})
    for slot in (1, 2):
        w.task(sid, slot=slot, node="n1")
    service = w.store.get("service", sid)
    spec = thaw(service.spec)
    spec["TaskTemplate"]["ForceUpdate"] = 1  # docker service update --force
    spec["UpdateConfig"] = {"Parallelism": 0}
    w.apply([Update("service", sid, service.version, spec=spec, extra={"PreviousSpec": thaw(service.spec)})])
    sup = supervisor()
    w.run(sup)
    w.run(sup)
    fresh = [t for t in w.tasks(sid) if t.spec.get("ForceUpdate") == 1]
    assert sorted(t.extra["Slot"] for t in fresh) == [1, 2]
