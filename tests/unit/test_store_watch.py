"""Watches deliver committed changes in commit order, and nothing of a rejected batch."""

from __future__ import annotations

import pytest

from manager.state.store import Change, Create, Delete, InvalidObject, Op, Store, Update, encode_batch

T0 = "2026-11-22T10:44:27Z"
NODE = {"Role": "worker", "Availability": "active"}


def run(store: Store, ops: list[Op]) -> bool:
    return store.apply(store.applied_index + 1, encode_batch(ops, now=T0)).ok


def summary(changes: list[Change]) -> list[tuple[int, str, str, str, int]]:
    return [(c.index, c.action, c.kind, c.object.id, c.object.version) for c in changes]


def test_changes_arrive_in_commit_order_and_rejected_batches_never() -> None:
    store = Store()
    w = store.watch()
    assert run(store, [Create("node", "n1", NODE), Create("task", "t1", {}, {"State": "new"})])
    assert not run(store, [Create("node", "n2", NODE), Update("node", "n1", 99, status={"State": "ready"})])
    assert run(store, [Update("task", "t1", 1, status={"State": "pending"})])
    assert run(store, [Delete("node", "n1")])
    assert summary(w.poll()) == [
        (1, "create", "node", "n1", 1),
        (1, "create", "task", "t1", 1),
        (3, "update", "task", "t1", 3),
        (4, "remove", "node", "n1", 1),  # a removal carries the last version
    ]
    assert w.poll() == []


def test_kinds_filter_and_close() -> None:
    store = Store()
    tasks = store.watch(["task"])
    nodes = store.watch({"node"})
    run(store, [Create("node", "n1", NODE), Create("task", "t1", {})])
    assert [c.kind for c in tasks.poll()] == ["task"]
    assert [c.kind for c in nodes.poll()] == ["node"]
    nodes.close()
    run(store, [Create("node", "n2", NODE)])
    assert nodes.poll() == [] and tasks.poll() == []
    with pytest.raises(InvalidObject):
        store.watch(["widget"])


def test_on_change_fires_once_per_batch_after_apply_returned() -> None:
    store = Store()
    seen: list[tuple[int, int]] = []

    def woken() -> None:
        # The callback may read the store: the whole batch is visible already.
        seen.append((store.applied_index, store.count("node")))

    with store.watch(["node"], on_change=woken) as w:
        run(store, [Create("node", "n1", NODE), Create("node", "n2", NODE)])
        assert seen == []  # apply only queues; the applier tells the watches afterwards
        store.notify_watches()
        run(store, [Create("task", "t1", {})])  # not watched: no wake-up
        assert not run(store, [Create("node", "n1", NODE)])  # rejected: no wake-up
        store.notify_watches()
        assert seen == [(1, 2)]
        assert w.pending == 2
    run(store, [Create("node", "n3", NODE)])
    store.notify_watches()
    assert seen == [(1, 2)]


def test_a_failing_watcher_is_counted_and_never_fails_the_write() -> None:
    failures: list[str] = []
    store = Store(on_watch_error=lambda w, exc: failures.append(str(exc)))
    later: list[int] = []

    def broken() -> None:
        raise RuntimeError("watcher bug")

    store.watch(["node"], on_change=broken)
    good = store.watch(["node"], on_change=lambda: later.append(store.applied_index))
    assert run(store, [Create("node", "n1", NODE)])  # committed, whatever the watchers do
    assert store.notify_watches() == 1
    assert failures == ["watcher bug"] and store.watch_errors == 1
    assert later == [1]  # the watcher after the broken one was still told
    assert [c.object.id for c in good.poll()] == ["n1"]
    assert store.get("node", "n1").version == 1


def test_from_index_replays_kept_history() -> None:
    store = Store(history=3)
    for i in range(1, 6):
        run(store, [Create("node", f"n{i}", NODE)])
    w = store.watch(from_index=4)
    assert [c.object.id for c in w.poll()] == ["n4", "n5"]
    with pytest.raises(InvalidObject, match="no longer kept"):
        store.watch(from_index=2)
    future = store.watch(from_index=8)
    run(store, [Create("node", "n6", NODE)])  # index 6: before the watch's start
    run(store, [Create("node", "n7", NODE)])
    run(store, [Create("node", "n8", NODE)])
    assert [c.object.id for c in future.poll()] == ["n8"]


def test_history_is_complete_only_after_a_partly_dropped_batch() -> None:
    store = Store(history=3)
    run(store, [Create("node", "a", NODE), Create("node", "b", NODE)])
    run(store, [Create("node", "c", NODE), Create("node", "d", NODE)])  # "a" falls out of history
    with pytest.raises(InvalidObject):
        store.watch(from_index=1)
    assert [c.object.id for c in store.watch(from_index=2).poll()] == ["c", "d"]
