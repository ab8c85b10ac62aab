"""The replicated orchestrator: scale up and down, node down and drain, restarts, as tables."""

from __future__ import annotations

import random

import pytest
from _orch import World

from manager.orchestrator import ReplicatedOrchestrator
from manager.orchestrator.replicated import scale_down_order


def orch(seed: int = 1) -> ReplicatedOrchestrator:
    return ReplicatedOrchestrator(random.Random(seed))


def test_scale_up_creates_the_missing_slots_as_new_tasks_in_the_contracts_shape() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 3}})
    w.run(orch())
    tasks = w.tasks(sid)
    assert sorted(t.extra["Slot"] for t in tasks) == [1, 2, 3]
    service = w.store.get("service", sid)
    for t in tasks:
        assert t.status["State"] == "new" and t.status["Message"] == "created"
        assert t.extra["DesiredState"] == "running"
        assert "NodeID" not in t.extra  # the scheduler chooses
        assert t.extra["ServiceAnnotations"] == {"Name": "web"}
        assert t.extra["Annotations"] == {"Name": f"web.{t.extra['Slot']}.{t.id}"}
        assert t.extra["SpecVersion"] == {"Index": service.version}
        assert t.spec == service.spec["TaskTemplate"]
    w.run(orch())  # nothing more to do
    assert len(w.tasks(sid)) == 3


def test_scale_up_fills_the_lowest_free_slots() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 4}})
    w.task(sid, slot=2, node="n1")
    w.task(sid, slot=5, node="n2")
    w.run(orch())
    assert w.slots(sid) == [1, 2, 3, 5]


@pytest.mark.parametrize(
    ("placed", "replicas", "removed"),
    [
        # slot -> node; the nodes with the most tasks of the service lose them first
        ({1: "n1", 2: "n1", 3: "n1", 4: "n2"}, 2, {2, 3}),
        ({1: "n1", 2: "n2", 3: "n1", 4: "n2", 5: "n3"}, 3, {3, 4}),
        ({1: "n1", 2: "n2", 3: "n3"}, 1, {2, 3}),  # even: higher slots go first
        ({1: "n1", 2: "n1", 3: ""}, 2, {3}),  # a task with no node goes before any placed one
    ],
)
def test_scale_down_removes_slots_from_the_busiest_nodes(
    placed: dict[int, str], replicas: int, removed: set[int]
) -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": replicas}})
    for slot, node in placed.items():
        w.task(sid, slot=slot, node=node, state="running" if node else "pending")
    w.run(orch())
    gone = {t.extra["Slot"] for t in w.tasks(sid) if t.extra["DesiredState"] == "remove"}
    assert gone == removed
    assert len(w.live(sid)) == replicas
    w.run(orch())  # stable: no further change
    assert len(w.live(sid)) == replicas


def test_scale_down_prefers_tasks_that_do_not_run() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 2}})
    w.task(sid, slot=1, node="n1", state="running")
    w.task(sid, slot=2, node="n2", state="starting")
    w.task(sid, slot=3, node="n3", state="running")
    w.run(orch())
    assert w.slots(sid) == [1, 3]


def test_scale_down_order_is_stable() -> None:
    from manager.scheduler.build import make_service, make_task

    s = make_service("s")
    slots = {i: [make_task(f"t{i}", s, slot=i, node_id="n1", state="running")] for i in (3, 1, 2)}
    assert scale_down_order(slots) == [1, 2, 3]


def test_a_down_node_gets_its_tasks_replaced_in_one_pass_held_for_the_delay() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 2}})
    a = w.task(sid, slot=1, node="n1")
    b = w.task(sid, slot=2, node="n2")
    w.set_node("n1", state="down")
    result = w.run(orch())
    assert w.store.get("task", a).extra["DesiredState"] == "shutdown"
    assert w.store.get("task", a).status["State"] == "running"  # a Down node reports nothing
    new = [t for t in w.live(sid) if t.id not in (a, b)]
    assert len(new) == 1 and new[0].extra["Slot"] == 1 and "NodeID" not in new[0].extra
    assert new[0].extra["DesiredState"] == "ready"  # the default 5 s restart delay
    assert result.next_wakeup == w.now + 5.0
    w.now += 4.9
    w.run(orch())
    assert w.store.get("task", new[0].id).extra["DesiredState"] == "ready"
    w.now += 0.1
    w.run(orch())
    assert w.store.get("task", new[0].id).extra["DesiredState"] == "running"


def test_a_drained_node_is_left_without_delay_once_its_task_stopped() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 1}})
    a = w.task(sid, slot=1, node="n1")
    w.set_node("n1", availability="drain")
    result = w.run(orch())
    (new,) = [t for t in w.live(sid) if t.id != a]
    assert new.extra["DesiredState"] == "ready"  # waits for the old task to stop
    assert result.next_wakeup == w.now + 60.0  # or at most a minute
    w.now += 1
    w.set_task(a, state="shutdown")  # the agent stopped it
    w.run(orch())
    assert w.store.get("task", new.id).extra["DesiredState"] == "running"  # no 5 s delay on drain


@pytest.mark.parametrize(
    ("condition", "end", "replaced"),
    [
        ("any", "failed", True),
        ("any", "complete", True),
        ("any", "rejected", True),
        ("on-failure", "failed", True),
        ("on-failure", "complete", False),
        ("none", "failed", False),
    ],
)
def test_a_stopped_task_is_replaced_by_its_restart_policy(condition: str, end: str, replaced: bool) -> None:
    w = World()
    sid = w.service("web", restart={"Condition": condition, "Delay": 0, "MaxAttempts": 0})
    a = w.task(sid, slot=1, node="n1")
    w.set_task(a, state=end)
    w.run(orch())
    assert w.store.get("task", a).extra["DesiredState"] == "shutdown"
    new = [t for t in w.tasks(sid) if t.id != a]
    assert len(new) == int(replaced)
    if replaced:
        assert new[0].extra["DesiredState"] == "running"  # no delay, nothing to wait for
    w.run(orch())  # a slot whose task may not restart stays as it is: no new task either
    assert len(w.tasks(sid)) == 1 + int(replaced)


def test_the_same_seed_gives_the_same_tasks() -> None:
    def ids(seed: int) -> list[str]:
        w = World()
        sid = w.service("web", mode={"Replicated": {"Replicas": 3}})
        w.run(orch(seed))
        return [t.id for t in w.tasks(sid)]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_a_pass_writes_at_most_max_ops_and_carries_on_at_once() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 25}})
    o = ReplicatedOrchestrator(random.Random(1), max_ops=10)
    first = w.run(o)
    assert len(first.ops) == 10 and first.next_wakeup == w.now
    w.run(o, set())
    w.run(o, set())
    assert len(w.tasks(sid)) == 25
