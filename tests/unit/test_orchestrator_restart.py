"""The restart supervisor on virtual time: delay, MaxAttempts, Window, defaults as Swarm shows them."""

from __future__ import annotations

import itertools
import random

import pytest
from _orch import World

from manager.orchestrator import DEFAULT_DELAY, ReplicatedOrchestrator, RestartPolicy, restart_policy

POLICY = RestartPolicy
S = 1_000_000_000  # nanoseconds per second, as the Engine API counts

_SEEDS = itertools.count(1)  # a fresh orchestrator per pass must not repeat IDs


def orch() -> ReplicatedOrchestrator:
    return ReplicatedOrchestrator(random.Random(next(_SEEDS)))


@pytest.mark.parametrize(
    ("spec", "policy"),
    [
        ({}, RestartPolicy("any", 5.0, 0, 0.0)),  # what `docker service inspect` shows by default
        ({"RestartPolicy": {"Condition": "any", "Delay": 5 * S}}, POLICY("any", 5.0, 0, 0.0)),
        ({"RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 3}}, POLICY("on-failure", 5.0, 3, 0.0)),
        ({"RestartPolicy": {"Condition": "none", "Delay": 0}}, POLICY("none", 0.0, 0, 0.0)),
        ({"RestartPolicy": {"Delay": 1500 * 1_000_000, "Window": 60 * S}}, POLICY("any", 1.5, 0, 60.0)),
    ],
)
def test_policy_defaults_are_swarmkits(spec: dict[str, object], policy: RestartPolicy) -> None:
    assert restart_policy(spec) == policy
    assert DEFAULT_DELAY == 5.0


def fail_current(w: World, sid: str) -> str | None:
    """Fail the slot's task meant to run (released first if held); returns its ID."""
    live = w.live(sid)
    if not live:
        return None
    (task,) = live
    w.set_task(task.id, state="failed")
    return task.id


def test_delay_holds_the_replacement_exactly_that_long() -> None:
    w = World()
    sid = w.service("web", restart={"Condition": "any", "Delay": 3 * S})
    w.task(sid, slot=1, node="n1")
    fail_current(w, sid)
    result = w.run(orch())
    (held,) = w.live(sid)
    assert held.extra["DesiredState"] == "ready" and result.next_wakeup == w.now + 3.0
    w.now += 2.999
    assert w.run(orch()).next_wakeup == pytest.approx(w.now + 0.001)
    assert w.store.get("task", held.id).extra["DesiredState"] == "ready"
    w.now += 0.001
    w.run(orch())
    assert w.store.get("task", held.id).extra["DesiredState"] == "running"


def test_max_attempts_bounds_the_restarts_of_a_slot() -> None:
    w = World()
    sid = w.service("web", restart={"Condition": "on-failure", "Delay": 0, "MaxAttempts": 2})
    w.task(sid, slot=1, node="n1")
    restarts = 0
    for _ in range(5):
        w.now += 10
        if fail_current(w, sid) is None:
            break
        w.run(orch())
        restarts = len(w.tasks(sid)) - 1
    assert restarts == 2
    assert w.live(sid) == []
    w.run(orch())  # the slot is finished: no new task either
    assert len(w.tasks(sid)) == 3


def test_window_counts_only_recent_restarts() -> None:
    w = World()
    sid = w.service("web", restart={"Condition": "any", "Delay": 0, "MaxAttempts": 1, "Window": 10 * S})
    w.task(sid, slot=1, node="n1")  # created at 1000
    fail_current(w, sid)
    w.run(orch())  # restart 1, created at 1000
    assert len(w.tasks(sid)) == 2
    w.now = 1020.0  # the restart is out of the window now
    fail_current(w, sid)
    w.run(orch())  # restart 2 allowed, created at 1020
    assert len(w.tasks(sid)) == 3
    w.now = 1022.0  # a restart 2 s ago: within the window, the one attempt is used
    fail_current(w, sid)
    w.run(orch())
    assert len(w.tasks(sid)) == 3 and w.live(sid) == []


def test_a_new_spec_starts_the_count_afresh() -> None:
    w = World()
    sid = w.service("web", restart={"Condition": "any", "Delay": 0, "MaxAttempts": 1})
    w.task(sid, slot=1, node="n1")
    fail_current(w, sid)
    w.run(orch())
    fail_current(w, sid)
    w.run(orch())
    assert w.live(sid) == []  # one attempt used up
    template = dict(w.store.get("service", sid).spec["TaskTemplate"])
    template["ForceUpdate"] = 1
    w.update_spec(sid, TaskTemplate=template)
    w.task(sid, slot=1, node="n2")  # what the update supervisor would start
    fail_current(w, sid)
    w.run(orch())
    assert len(w.live(sid)) == 1  # restarted: the new spec has its own attempts
