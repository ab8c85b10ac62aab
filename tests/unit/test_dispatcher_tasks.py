"""The dispatcher's task path: assignments (complete, then incremental from the watch) and status batches."""

from __future__ import annotations

import asyncio
import json
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


class FakeShell:
    def __init__(self, leader: bool, leader_address: str = "") -> None:
        self.is_leader = leader
        self.leader_address = leader_address


def test_the_assignments_stream_sends_the_set_then_only_changes_and_followers_redirect() -> None:
    import grpc
    from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

    from manager.dispatcher.tasks import TaskDispatcher

    UPDATE, REMOVE = dispatcher_pb2.AssignmentChange.UPDATE, dispatcher_pb2.AssignmentChange.REMOVE

    async def main() -> None:
        store = Store()
        node = Create("node", "n1", {"Role": "worker", "Availability": "active"})
        run(store, [node, mk("t1", "n1", "assigned"), mk("t2", "n2", "assigned")])
        runtime = FakeRuntime(store)
        runtime.shell = FakeShell(True)  # type: ignore[attr-defined]
        dispatcher = TaskDispatcher(runtime)
        server = grpc.aio.server()
        dispatcher_pb2_grpc.add_AssignmentsServicer_to_server(dispatcher, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        job = asyncio.create_task(dispatcher.run())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = dispatcher_pb2_grpc.AssignmentsStub(channel)  # type: ignore[no-untyped-call]
                call = stub.Assignments(dispatcher_pb2.AssignmentsRequest(node_id="n1"))
                first = await call.read()
                assert first.type == dispatcher_pb2.AssignmentsMessage.COMPLETE
                assert [c.id for c in first.changes] == ["t1"]
                run(store, [mk("t3", "n1", "assigned"), mk("t4", "n2", "assigned")])
                second = await asyncio.wait_for(call.read(), 2)
                assert second.type == dispatcher_pb2.AssignmentsMessage.INCREMENTAL
                assert [(c.action, c.id) for c in second.changes] == [(UPDATE, "t3")]
                # The agent reports: one call, written in one batch; the report does not come back.
                updates = [
                    dispatcher_pb2.TaskStatusUpdate(task_id="t3", status=b'{"State":"running"}'),
                    dispatcher_pb2.TaskStatusUpdate(task_id="t4", status=b'{"State": "running"}'),
                ]
                request = dispatcher_pb2.UpdateTaskStatusRequest(node_id="n1", updates=updates)
                reply = await stub.UpdateTaskStatus(request, timeout=2)
                assert (reply.written, reply.ignored) == (1, 1)  # t4 is another node's
                run(store, [Delete("task", "t1")])
                third = await asyncio.wait_for(call.read(), 2)
                assert [(c.action, c.id) for c in third.changes] == [(REMOVE, "t1")]
                call.cancel()
                # A follower sends the agent to the leader.
                runtime.shell = FakeShell(False, "10.0.0.1:2377")  # type: ignore[attr-defined]
                redirect = await stub.Assignments(dispatcher_pb2.AssignmentsRequest(node_id="n1")).read()
                assert redirect.leader_addr == "10.0.0.1:2377" and not redirect.changes
                tasks = await stub.NodeTasks(dispatcher_pb2.NodeTasksRequest(node_id="n1"), timeout=2)
                assert sorted(json.loads(t)["ID"] for t in tasks.tasks) == ["t3"]
        finally:
            job.cancel()
            await server.stop(0)

    asyncio.run(main())
