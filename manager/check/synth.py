"""Realistic synthetic histories, for the checker's tests and benchmark.

Clients run against a simulated linearizable kv store: each operation is invoked, takes effect at
one instant a random delay later, and completes after another random delay, so operations from
different processes overlap the way they do against a real cluster over a network. Some operations
time out (``info``: they may or may not have taken effect, and the client then moves on under a new
process id, as Jepsen's do); some writes fail without effect; a cas whose expected value does not
match fails. Every write and cas writes a value never written before, which lets
:func:`inject_stale_read` plant an anomaly that is certainly not linearizable.
"""

from __future__ import annotations

import heapq
import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SynthConfig", "generate", "inject_stale_read", "write_history"]


@dataclass(frozen=True)
class SynthConfig:
    """What kind of history :func:`generate` makes."""

    operations: int = 10_000
    """Operations invoked in total."""
    processes: int = 10
    """Concurrent clients: each runs one operation at a time."""
    keys: int = 20
    """Keys the clients spread their operations over."""
    latency: float = 1.0
    """Upper bound (virtual seconds) of each of the two delays: invoke to effect, effect to reply."""
    think: float = 0.2
    """Upper bound of a client's pause between one reply and its next invoke."""
    p_info: float = 0.01
    """Chance that an operation times out (info); half of those took effect anyway."""
    p_fail: float = 0.01
    """Chance that a write is refused without effect (fail)."""
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    """Shares of read, write and cas."""

    def __post_init__(self) -> None:
        if self.operations < 0 or self.processes < 1 or self.keys < 1:
            raise ValueError("operations must be >= 0, processes and keys >= 1")
        if not (0 <= self.p_info <= 1 and 0 <= self.p_fail <= 1) or self.latency <= 0:
            raise ValueError("probabilities must lie in [0, 1] and latency must be positive")


@dataclass(order=True)
class _Pending:
    at: float
    seq: int
    what: str = field(compare=False)  # "invoke", "apply" or "reply"
    client: int = field(compare=False)
    op: dict[str, Any] = field(compare=False, default_factory=dict)


def generate(rng: random.Random, config: SynthConfig | None = None) -> list[dict[str, Any]]:
    """A linearizable kv history (events in time order) drawn from ``rng``."""
    cfg = config or SynthConfig()
    store: dict[str, Any] = {}
    written: dict[str, list[Any]] = {}  # per key, values written so far (cas picks expected from them)
    fresh = 0
    seq = 0
    queue: list[_Pending] = []
    process_of = list(range(cfg.processes))  # client slot -> current process id
    events: list[dict[str, Any]] = []
    invoked = 0

    def push(at: float, what: str, client: int, op: dict[str, Any] | None = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, _Pending(at, seq, what, client, op or {}))

    for client in range(cfg.processes):
        push(rng.uniform(0, cfg.think), "invoke", client)
    while queue:
        item = heapq.heappop(queue)
        client = item.client
        if item.what == "invoke":
            if invoked >= cfg.operations:
                continue
            invoked += 1
            key = f"k{rng.randrange(cfg.keys)}"
            f = rng.choices(("read", "write", "cas"), weights=cfg.mix)[0]
            value: Any = None
            if f != "read":
                fresh += 1
                new = fresh
                if f == "write":
                    value = new
                else:
                    seen = written.get(key, [])
                    # Mostly the latest value this client could know, so a good share of cas succeed.
                    expected = (seen[-1] if rng.random() < 0.7 else rng.choice(seen[-3:])) if seen else None
                    value = [expected, new]
            op = {"process": process_of[client], "f": f, "key": key, "value": value}
            events.append({**op, "type": "invoke"})
            roll = rng.random()
            op["fate"] = "info" if roll < cfg.p_info else "fail" if roll < cfg.p_info + cfg.p_fail else "ok"
            push(item.at + rng.uniform(0, cfg.latency), "apply", client, op)
        elif item.what == "apply":
            op = item.op
            key, f = op["key"], op["f"]
            timed_out_before = op["fate"] == "info" and rng.random() < 0.5
            if f == "read":
                op["read"] = store.get(key)
            elif (op["fate"] == "fail" and f == "write") or timed_out_before:
                pass  # refused or lost on the way: never takes effect
            elif f == "write":
                store[key] = op["value"]
                written.setdefault(key, []).append(op["value"])
            else:
                expected, new = op["value"]
                op["matched"] = store.get(key) == expected
                if op["matched"]:
                    store[key] = new
                    written.setdefault(key, []).append(new)
            push(item.at + rng.uniform(0, cfg.latency), "reply", client, op)
        else:
            op = item.op
            outcome = op["fate"]
            if outcome == "fail" and op["f"] != "write":
                outcome = "ok"  # only writes are refused outright; reads and cas answer
            if op["f"] == "cas" and outcome == "ok" and not op["matched"]:
                outcome = "fail"
            value = op["read"] if op["f"] == "read" and outcome == "ok" else op["value"]
            events.append(
                {"process": op["process"], "type": outcome, "f": op["f"], "key": op["key"], "value": value}
            )
            if outcome == "info":
                # The client gives up on it and carries on under a new process id.
                process_of[client] += cfg.processes
            push(item.at + rng.uniform(0, cfg.think), "invoke", client)
    return events


def inject_stale_read(events: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """A copy of ``events`` where one ok read returns a value overwritten before it was invoked.

    It picks a read and two successful writes (or cas) w1, w2 on its key with w1 returning before w2
    is invoked and w2 returning before the read is invoked; the read then claims w1's value. Values
    are unique, so no order explains it. Returns the new events and the index of the changed
    completion event; raises ValueError when the history offers no such triple.
    """
    invoke_at: dict[int, int] = {}  # completion index -> its invoke's index
    open_by_process: dict[Any, int] = {}
    for index, event in enumerate(events):
        if event["type"] == "invoke":
            open_by_process[event["process"]] = index
        else:
            invoke_at[index] = open_by_process.pop(event["process"])
    writes: dict[str, list[tuple[int, int, Any]]] = {}  # key -> (invoke, return, value) of ok writes
    reads: list[tuple[int, int, str]] = []  # (invoke, return, key) of ok reads
    for index, event in enumerate(events):
        if event["type"] != "ok":
            continue
        start = invoke_at[index]
        if event["f"] == "read":
            reads.append((start, index, event["key"]))
        else:
            value = event["value"] if event["f"] == "write" else event["value"][1]
            writes.setdefault(event["key"], []).append((start, index, value))
    rng.shuffle(reads)
    for start, ret, key in reads:
        before = [w for w in writes.get(key, []) if w[1] < start]
        for w1 in before:
            if any(w2[0] > w1[1] for w2 in before):
                changed = [dict(e) for e in events]
                changed[ret]["value"] = w1[2]
                return changed, ret
    raise ValueError("no read follows two sequential writes to its key")


def write_history(events: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write events as JSON lines."""
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
