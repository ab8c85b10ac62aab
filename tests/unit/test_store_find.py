"""Finding tasks by service and by node gives what a full scan gives, through writes and restores."""

from __future__ import annotations

import random

from manager.state.store import Create, Delete, Op, Store, StoredObject, Update, encode_batch

SERVICES = ("svc1", "svc2", "svc3")
NODES = ("n1", "n2", "n3", "")


def scan(store: Store, service_id: str | None, node_id: str | None) -> list[str]:
    def keep(t: StoredObject) -> bool:
        extra = t.extra
        return (service_id is None or extra.get("ServiceID") == service_id) and (
            node_id is None or extra.get("NodeID") == node_id
        )

    return [t.id for t in store.find("task", filters=keep)]


def check_all(store: Store) -> None:
    for service_id in (*SERVICES, None):
        for node_id in (*NODES[:-1], None):
            if service_id is None and node_id is None:
                continue
            got = [t.id for t in store.find("task", service_id=service_id, node_id=node_id)]
            assert got == scan(store, service_id, node_id), (service_id, node_id)


def test_task_index_follows_scheduling_moves_and_removals() -> None:
    rng = random.Random(7)
    store = Store()
    for index in range(1, 301):
        tasks = store.find("task")
        ops: list[Op]
        roll = rng.random()
        if roll < 0.4 or not tasks:
            id_ = f"t{index}"
            ops = [Create("task", id_, {}, {"State": "new"}, {"ServiceID": rng.choice(SERVICES), "Slot": 1})]
        elif roll < 0.85:
            t = rng.choice(tasks)
            extra = {**t.extra, "NodeID": rng.choice(NODES)}  # assign, move, or unassign ("")
            ops = [Update("task", t.id, t.version, extra=extra)]
        else:
            ops = [Delete("task", rng.choice(tasks).id)]
        assert store.apply(index, encode_batch(ops, now="2026-11-22T10:00:00Z")).ok
        if index % 50 == 0:
            check_all(store)
            restored = Store()
            restored.restore(store.snapshot(), index)
            check_all(restored)
    assert store.find("task", service_id="nope") == []
    assert store.find("node", node_id="n1") == []  # only tasks are indexed by node
