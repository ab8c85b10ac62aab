"""Replicated store throughput: apply, snapshot, restore and find at a given number of tasks.

Usage: .venv/bin/python bench/store_apply.py [--tasks 10000] [--batch 100]
"""

from __future__ import annotations

import argparse
import random
import time

from manager.state.store import Create, Store, Update, encode_batch, new_id

NOW = "2026-11-22T10:00:00Z"
TEMPLATE = {
    "ContainerSpec": {"Image": "nginx:alpine", "Args": ["nginx", "-g", "daemon off;"]},
    "Resources": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1)
    store, index = Store(), 0
    ids: list[str] = []
    services = [f"svc{i}" for i in range(100)]
    start = time.perf_counter()
    while len(ids) < args.tasks:
        ops = []
        for _ in range(min(args.batch, args.tasks - len(ids))):
            ids.append(new_id(rng))
            extra = {
                "ServiceID": rng.choice(services),
                "Slot": len(ids),
                "DesiredState": "running",
            }
            ops.append(Create("task", ids[-1], TEMPLATE, {"State": "new"}, extra))
        index += 1
        assert store.apply(index, encode_batch(ops, now=NOW)).ok
    took = time.perf_counter() - start
    print(
        f"create {args.tasks} tasks, {args.batch} per batch: "
        f"{args.tasks / took:,.0f} objects/s (encode + apply)"
    )
    updates = min(2000, args.tasks)
    start = time.perf_counter()
    for tid in ids[:updates]:
        task = store.get("task", tid)
        index += 1
        assert store.apply(
            index,
            encode_batch(
                [Update("task", tid, task.version, status={"State": "running"})],
                now=NOW,
            ),
        ).ok
    took = time.perf_counter() - start
    print(
        f"single-object update batches: {took / updates * 1e6:,.0f} us each (get + encode + apply)"
    )
    start = time.perf_counter()
    snap = store.snapshot()
    print(f"snapshot: {len(snap) / 1e6:.1f} MB in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    Store().restore(snap, index)
    print(f"restore: {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    for service in services:
        store.find("task", service_id=service)
    per_index = (time.perf_counter() - start) / len(services)
    start = time.perf_counter()
    store.find("task", filters=lambda t: t.extra.get("ServiceID") == "svc7")
    per_scan = time.perf_counter() - start
    print(
        f"tasks of one service: {per_index * 1e3:.2f} ms by index, {per_scan * 1e3:.1f} ms by full scan"
    )


if __name__ == "__main__":
    main()
