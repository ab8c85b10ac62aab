"""The dispatcher's task path: assignments (complete, then incremental from the watch) and status batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from manager.dispatcher.assignments import NodeAssignments, Report, merge_reports, status_ops
from manager.dispatcher.tasks import AssignmentsHub, StatusBatcher
from manager.state.store import Create, Delete, Op, Store, Update, UpdateOutOfSequence, encode_batch

pytestmark = pytest.mark.unit

T0 = "2026-11-22T10:44:27Z"


def run(store: Store, ops: list[Op]) -> None:
    result = store.apply(store.applied_index + 1, encode_batch(ops, now=T0))
    assert result.ok, result.error
    store.notify_watches()


def mk(task_id: str, node: str, state: str, desired: str = "running") -> Create:
    return Create("task", task_id, {"ContainerSpec": {"Image": "nginx"}}, {"State": state, "Message": state},
                  {"NodeID": node, "DesiredState": desired, "ServiceID": "s1", "Slot": 1})  # fmt: skip


def lines(changes: Any) -> list[tuple[str, str]]:
    return [(c.action, c.id) for c in changes]


def test_the_complete_set_is_the_nodes_tasks_from_assigned_on() -> None:
    store = Store()
    run(store, [mk("t1", "n1", "assigned"), mk("t2", "n1", "pending"), mk("t3", "n2", "assigned"),
                mk("t4", "n1", "running"), mk("t5", "n1", "failed")])  # fmt: skip
    state = NodeAssignments("n1")
    assert lines(state.complete(store.find("task", node_id="n1"))) == [
        ("update", "t1"), ("update", "t4"), ("update", "t5"),
    ]  # fmt: skip


def test_changes_are_incremental_and_only_for_the_node() -> None:
    store = Store()
    run(store, [mk("t1", "n1", "assigned")])
    watch = store.watch(["task"])
    state = NodeAssignments("n1")
    state.complete(store.find("task", node_id="n1"))
    # Another node's task, a task still pending, and nothing else: nothing to send.
    run(store, [mk("t2", "n2", "assigned"), mk("t3", "n1", "pending")])
    assert state.incremental(watch.poll()) == []
    # The scheduler assigns t3; the orchestrator asks t1 to stop; both in one message.
    t1 = store.get("task", "t1")
    stop_t1 = Update("task", "t1", t1.version, extra={**t1.extra, "DesiredState": "shutdown"})
    run(store, [Update("task", "t3", 2, status={"State": "assigned"}), stop_t1])
    out = state.incremental(watch.poll())
    assert lines(out) == [("update", "t3"), ("update", "t1")]
    assert out[1].object is not None and out[1].object.extra["DesiredState"] == "shutdown"
    # The node's own report comes back as a new version with only Status changed: not sent back.
    t3 = store.get("task", "t3")
    run(store, [Update("task", "t3", t3.version, status={"State": "running", "Message": "started"})])
    assert state.incremental(watch.poll()) == []
    assert state.sent[("task", "t3")] == store.get("task", "t3").version
    # t3 moves to another node (never in Swarm, but the set must stay right) and t1 is deleted.
    t3 = store.get("task", "t3")
    run(store, [Update("task", "t3", t3.version, extra={**t3.extra, "NodeID": "n2"}), Delete("task", "t1")])
    assert lines(state.incremental(watch.poll())) == [("remove", "t3"), ("remove", "t1")]
    assert state.sent == {}


def test_the_hub_routes_changes_to_the_streams_of_the_node_and_of_the_node_a_task_left() -> None:
    async def main() -> None:
        store = Store()
        hub = AssignmentsHub(store)
        hub.start()
        n1, n2 = hub.subscribe("n1"), hub.subscribe("n2")
        run(store, [mk("t1", "n1", "assigned")])
        assert [c.object.id for c in n1.changes] == ["t1"] and n1.wake.is_set() and not n2.changes
        t1 = store.get("task", "t1")
        run(store, [Update("task", "t1", t1.version, extra={**t1.extra, "NodeID": "n2"})])
        assert len(n1.changes) == 2 and len(n2.changes) == 1
        hub.unsubscribe(n1)
        run(store, [Delete("task", "t1")])
        assert len(n2.changes) == 2
        hub.close()

    asyncio.run(main())


def test_status_reports_move_forward_only_and_skip_deleted_foreign_and_unchanged() -> None:
    store = Store()
    run(store, [mk("run", "n1", "running"), mk("new", "n1", "assigned"), mk("other", "n2", "assigned")])

    def get(task_id: str) -> Any:
        found = store.find("task", filters=lambda t: t.id == task_id)
        return found[0] if found else None

    decision = status_ops(get, [
        Report("n1", "run", {"State": "starting", "Message": "starting"}),  # behind: stale
        Report("n1", "new", {"State": "running", "Message": "started", "Timestamp": T0}),
        Report("n1", "gone", {"State": "running"}),
        Report("n1", "other", {"State": "accepted"}),
        Report("n1", "run", {"State": "running", "Message": "running"}),  # what is stored already
        Report("n1", "new", {"State": "bogus"}),
    ])  # fmt: skip
    assert [op.id for op in decision.ops] == ["new"]
    assert decision.ignored == {"run": "unchanged", "gone": "deleted", "other": "foreign", "new": "invalid"}
    run(store, list(decision.ops))
    assert store.get("task", "new").status["State"] == "running"


def test_merge_keeps_the_furthest_report_per_task() -> None:
    pending: dict[str, Report] = {}
    for state in ("accepted", "running", "preparing"):
        merge_reports(pending, Report("n1", "t", {"State": state}))
    assert pending["t"].status["State"] == "running"


class FakeRuntime:
    """Just what the batcher needs: a store, a write that applies, and a time scale."""

    def __init__(self, store: Store, conflicts: int = 0) -> None:
        self.store = store
        self.time_scale = 1.0
        self.writes: list[list[Op]] = []
        self.conflicts = conflicts

    async def write(self, ops: list[Op], timeout: float = 5.0) -> None:
        if self.conflicts:
            self.conflicts -= 1
            # Someone else wrote one of these tasks first: the batcher must decide again.
            task = self.store.get("task", ops[0].id)
            run(self.store, [Update("task", task.id, task.version, extra={**task.extra, "Slot": 2})])
            raise UpdateOutOfSequence()
        self.writes.append(list(ops))
        run(self.store, list(ops))


def test_reports_from_many_agents_are_written_in_one_batch_and_a_conflict_is_retried() -> None:
    async def main() -> None:
        store = Store()
        run(store, [mk(f"t{i}", f"n{i % 3}", "assigned") for i in range(9)])
        runtime = FakeRuntime(store, conflicts=1)
        batcher = StatusBatcher(runtime, 0.05)
        job = asyncio.create_task(batcher.run())
        answers = await asyncio.gather(*[
            batcher.submit([Report(f"n{i % 3}", f"t{i}", {"State": "accepted", "Message": "accepted"}),
                            Report(f"n{i % 3}", f"t{i}", {"State": "running", "Message": "started"})], 2.0)
            for i in range(9)
        ])  # fmt: skip
        assert answers == [(1, 0)] * 9
        assert len(runtime.writes) == 1 and len(runtime.writes[0]) == 9  # one batch, one op per task
        assert {store.get("task", f"t{i}").status["State"] for i in range(9)} == {"running"}
        assert store.get("task", "t0").extra["Slot"] == 2  # the other writer's change was kept
        # A report for a task deleted meanwhile is answered as ignored, not as an error.
        run(store, [Delete("task", "t8")])
        assert await batcher.submit([Report("n2", "t8", {"State": "complete"})], 2.0) == (0, 1)
        job.cancel()

    asyncio.run(main())
