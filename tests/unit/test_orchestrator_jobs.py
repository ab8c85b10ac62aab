"""Jobs: MaxConcurrent and TotalCompletions, tasks ending in complete, iterations, global jobs."""

from __future__ import annotations

import random

from _orch import World

from manager.orchestrator import GlobalJobOrchestrator, ReplicatedJobOrchestrator
from manager.state.store import Update
from manager.state.store.objects import thaw


def complete_all(w: World, sid: str) -> None:
    for t in w.tasks(sid):
        if t.extra["DesiredState"] == "complete" and t.status["State"] != "complete":
            w.set_task(t.id, state="complete")


def test_a_replicated_job_runs_total_completions_at_most_max_concurrent_at_a_time() -> None:
    w = World()
    sid = w.service("job", mode={"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}})
    o = ReplicatedJobOrchestrator(random.Random(1))
    rounds = []
    for _ in range(5):
        w.run(o)
        rounds.append(sorted(t.extra["Slot"] for t in w.tasks(sid) if t.status["State"] != "complete"))
        complete_all(w, sid)
    assert rounds == [[1, 2], [3, 4], [5], [], []]
    tasks = w.tasks(sid)
    assert len(tasks) == 5 and all(t.status["State"] == "complete" for t in tasks)
    assert all(t.extra["DesiredState"] == "complete" and t.extra["JobIteration"] == {} for t in tasks)


def test_a_failed_job_task_is_restarted_in_its_slot() -> None:
    w = World()
    sid = w.service(
        "job", mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        restart={"Condition": "on-failure", "Delay": 0},
    )  # fmt: skip
    o = ReplicatedJobOrchestrator(random.Random(1))
    w.run(o)
    (first,) = w.tasks(sid)
    w.set_task(first.id, state="failed")
    w.run(o)
    again = [t for t in w.tasks(sid) if t.id != first.id]
    assert len(again) == 1 and again[0].extra["Slot"] == 1 and again[0].extra["DesiredState"] == "complete"


def test_a_new_iteration_removes_the_old_ones_still_running() -> None:
    w = World()
    sid = w.service("job", mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}})
    o = ReplicatedJobOrchestrator(random.Random(1))
    w.run(o)
    (old,) = w.tasks(sid)
    service = w.store.get("service", sid)
    w.apply([Update("service", sid, service.version, extra={"JobStatus": {"JobIteration": {"Index": 1}}})])
    w.run(o)
    assert w.store.get("task", old.id).extra["DesiredState"] == "remove"
    (new,) = [t for t in w.tasks(sid) if t.id != old.id]
    assert new.extra["JobIteration"] == {"Index": 1}


def test_a_global_job_runs_once_on_each_eligible_node() -> None:
    w = World()
    sid = w.service("gjob", mode={"GlobalJob": {}})
    w.set_node("n3", availability="drain")
    o = GlobalJobOrchestrator(random.Random(1))
    w.run(o)
    assert sorted(t.extra["NodeID"] for t in w.tasks(sid)) == ["n1", "n2"]
    complete_all(w, sid)
    w.run(o)
    assert len(w.tasks(sid)) == 2  # done: not run again
    w.set_node("n3", availability="active")
    w.run(o)
    assert sorted(t.extra["NodeID"] for t in w.tasks(sid)) == ["n1", "n2", "n3"]
    assert all(thaw(t.extra)["DesiredState"] == "complete" for t in w.tasks(sid))
