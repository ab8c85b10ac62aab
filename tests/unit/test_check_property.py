"""The checker against an independent brute-force oracle on random small histories.

The oracle below shares no code with ``manager.check``: it pairs events itself, applies the
outcome rules of docs/check.md directly, and tries every order that respects real time, with no
reductions, no linked list and no forced moves. What it does share with the checker is only the
specification:

- an ``ok`` operation happened, between its invoke and its completion;
- a ``fail`` read or write never happened;
- a ``fail`` cas happened and saw a value other than the one it expected (it changes nothing);
- an ``info`` read constrains nothing; an ``info`` write or cas either never happened or happened
  at any point after its invoke (a cas then found its expected value and wrote its new one);
- an operation still open when the history ends is ``info``;
- every register starts at null; with the kv model each key is its own register.

Histories come from :func:`random_history`, which runs a real sequential execution (so most are
linearizable) and then perturbs some (so many are not). ``bench/check_property.py`` runs the same
comparison on tens of thousands of histories.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import pytest

from manager.check import check_history

Event = dict[str, Any]

VALUES: tuple[Any, ...] = (None, 0, 1, 2)
"""A small domain, so that writes repeat values, cas often match, and null is written too."""


@dataclass(frozen=True)
class _Op:
    key: Any
    f: str
    value: Any
    outcome: str
    result: Any
    call: int
    ret: int | None  # None: never completed (info, or open at the end)


def _pair(events: list[Event]) -> list[_Op]:
    """Invokes paired with the next completion of the same process; open ones become info."""
    open_ops: dict[Any, tuple[int, Event]] = {}
    ops: list[_Op] = []
    for position, event in enumerate(events):
        if event["type"] == "invoke":
            assert event["process"] not in open_ops
            open_ops[event["process"]] = (position, event)
            continue
        call, invoke = open_ops.pop(event["process"])
        kind = event["type"]
        result = event.get("value") if invoke["f"] == "read" and kind == "ok" else None
        ret = None if kind == "info" else position
        ops.append(_Op(invoke.get("key"), invoke["f"], invoke.get("value"), kind, result, call, ret))
    for call, invoke in open_ops.values():
        ops.append(_Op(invoke.get("key"), invoke["f"], invoke.get("value"), "info", None, call, None))
    return ops


def _apply(op: _Op, held: Any) -> tuple[bool, Any]:
    """Whether ``op`` can take effect on a register holding ``held``, and what it holds after."""
    if op.f == "read":
        return op.result == held, held
    if op.f == "write":
        return True, op.value
    expected, new = op.value
    if op.outcome == "fail":
        return held != expected, held
    return held == expected, new  # ok, or info taken to have happened


def brute_force(events: list[Event]) -> bool:
    """Linearizable by the definition: is there an order of the operations that happened, one that
    respects real time, which is a legal run of registers starting at null?

    Orders are built one operation at a time: any operation not yet placed may come next unless an
    operation that must happen returned before it was invoked and is not placed yet. ``ok``
    operations and failed cas must all be placed; ``info`` writes and cas may be; failed reads and
    writes and ``info`` reads never are. Prefixes that placed the same operations and left every
    register with the same value have the same possible continuations, so each such configuration
    is expanded once (without that, twelve concurrent writes would mean 12! orders).
    """
    never = {("fail", "read"), ("fail", "write"), ("info", "read")}
    ops = [op for op in _pair(events) if (op.outcome, op.f) not in never]
    keys = sorted({repr(op.key) for op in ops})
    slot = {key: index for index, key in enumerate(keys)}
    must = 0
    for i, op in enumerate(ops):
        if op.outcome != "info":
            must |= 1 << i
    before = [0] * len(ops)  # before[i]: operations that must happen and returned before i was invoked
    for i, op in enumerate(ops):
        for j, other in enumerate(ops):
            if must >> j & 1 and other.ret is not None and other.ret < op.call:
                before[i] |= 1 << j
    start = (0, tuple(None for _ in keys))
    seen = {start}
    todo = [start]
    while todo:
        placed, held = todo.pop()
        if placed & must == must:
            return True
        for i, op in enumerate(ops):
            if placed >> i & 1 or before[i] & ~placed:
                continue
            where = slot[repr(op.key)]
            fits, after = _apply(op, held[where])
            if not fits:
                continue
            config = (placed | 1 << i, (*held[:where], after, *held[where + 1 :]))
            if config not in seen:
                seen.add(config)
                todo.append(config)
    return False


def permutations_oracle(events: list[Event]) -> bool:
    """The definition without even the configuration memo, for tiny histories: every subset of the
    info writes and cas, every permutation, checked pairwise for real time."""
    ops = _pair(events)
    must = [op for op in ops if op.outcome == "ok" or (op.f == "cas" and op.outcome == "fail")]
    maybe = [op for op in ops if op.outcome == "info" and op.f != "read"]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(must + list(chosen)):
                if any(
                    later.ret is not None and later.ret < earlier.call
                    for i, earlier in enumerate(order)
                    for later in order[i + 1 :]
                ):
                    continue
                held: dict[Any, Any] = {}
                for op in order:
                    fits, held[repr(op.key)] = _apply(op, held.get(repr(op.key)))
                    if not fits:
                        break
                else:
                    return True
    return False


def random_history(rng: random.Random, model: str, max_ops: int = 12) -> list[Event]:
    """A small history from a real sequential execution, perturbed every other time or so.

    2 to 5 processes run up to ``max_ops`` operations; each operation takes effect at one instant
    between its invoke and completion, so overlapping operations end in every order. Values come
    from :data:`VALUES`, so the same value is written twice, null is written, and some cas expect
    the value they write. About 15% of operations end in info (half of those took effect, possibly
    long after the info, and the process carries on), 10% of reads and writes fail without effect,
    and a cas fails exactly when its expected value does not match. The last operation of a process
    may be left without a completion.
    """
    processes = rng.randint(2, 5)
    keys: list[Any] = [None] if model == "register" else ["a", "b", "c"][: rng.randint(2, 3)]
    if model == "register" and rng.random() < 0.2:
        keys = ["r"]
    free_at = [rng.uniform(0, 0.5) for _ in range(processes)]
    last_of: dict[int, int] = {}
    planned: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, max_ops)):
        process = rng.randrange(processes)
        start = free_at[process] + rng.uniform(0, 0.6)
        finish = start + rng.uniform(0.01, 1.5)
        f = rng.choice(("read", "write", "cas"))
        roll = rng.random()
        fate = "info" if roll < 0.15 else "fail" if roll < 0.25 and f != "cas" else "ok"
        effect: float | None = rng.uniform(start, finish)
        if fate == "fail" or (fate == "info" and rng.random() < 0.5):
            effect = None  # never takes effect
        elif fate == "info":
            effect = rng.uniform(start, finish + 2.0)  # may take effect long after the client gave up
        if f == "write":
            value: Any = rng.choice(VALUES)
        elif f == "cas":
            expected = rng.choice(VALUES)
            value = [expected, expected if rng.random() < 0.2 else rng.choice(VALUES)]
        else:
            value = None
        planned.append(
            {"process": process, "key": rng.choice(keys), "f": f, "value": value, "fate": fate,
             "start": start, "finish": finish, "effect": effect}
        )
        last_of[process] = len(planned) - 1
        free_at[process] = finish
    held: dict[Any, Any] = {}
    for op in sorted((op for op in planned if op["effect"] is not None), key=lambda op: op["effect"]):
        current = held.get(op["key"])
        if op["f"] == "read":
            op["read"] = current
        elif op["f"] == "write":
            held[op["key"]] = op["value"]
        else:
            op["matched"] = current == op["value"][0]
            if op["matched"]:
                held[op["key"]] = op["value"][1]
    timed: list[tuple[float, Event]] = []
    for index, op in enumerate(planned):
        base: Event = {"process": op["process"], "f": op["f"]}
        if op["key"] is not None:
            base["key"] = op["key"]
        timed.append((op["start"], {**base, "type": "invoke", "value": op["value"]}))
        outcome = op["fate"]
        if op["f"] == "cas" and outcome == "ok" and not op["matched"]:
            outcome = "fail"
        if outcome == "info" and last_of[op["process"]] == index and rng.random() < 0.5:
            continue  # still open when the history ends
        value = op.get("read") if op["f"] == "read" else op["value"]
        if op["f"] == "read" and outcome != "ok":
            value = None
        timed.append((op["finish"], {**base, "type": outcome, "value": value}))
    events = [event for _, event in sorted(timed, key=lambda pair: pair[0])]
    if rng.random() < 0.5:
        _perturb(events, rng)
    return events


def _perturb(events: list[Event], rng: random.Random) -> None:
    """One or two changes, each of which alters the history (it may still be linearizable)."""
    for _ in range(rng.randint(1, 2)):
        reads = [e for e in events if e["type"] == "ok" and e["f"] == "read"]
        decided_cas = [e for e in events if e["f"] == "cas" and e["type"] in ("ok", "fail")]
        writes = [e for e in events if e["type"] == "invoke" and e["f"] == "write"]
        swaps = [i for i in range(len(events) - 1) if events[i]["process"] != events[i + 1]["process"]]
        choice = rng.randrange(4)
        if choice == 0 and reads:
            event = rng.choice(reads)
            event["value"] = rng.choice([v for v in VALUES if v != event["value"]])
        elif choice == 1 and decided_cas:
            event = rng.choice(decided_cas)
            event["type"] = "fail" if event["type"] == "ok" else "ok"
        elif choice == 2 and writes:
            event = rng.choice(writes)
            event["value"] = rng.choice([v for v in VALUES if v != event["value"]])
        elif swaps:
            # Swapping neighbouring events of two processes keeps the history well formed.
            i = rng.choice(swaps)
            events[i], events[i + 1] = events[i + 1], events[i]


def legal_order(events: list[Event], placed_calls: list[int]) -> bool:
    """Is the checker's order (operations named by their invoke's position) a legal one?

    Checked with the oracle's own rules: every operation that must happen is in it once, none that
    cannot happen is, and on each key (the checker orders key by key, which locality allows) the
    order respects real time and is a legal run of a register starting at null.
    """
    by_call = {op.call: op for op in _pair(events)}
    if len(set(placed_calls)) != len(placed_calls) or not set(placed_calls) <= set(by_call):
        return False
    order = [by_call[call] for call in placed_calls]
    for op in by_call.values():
        must = op.outcome == "ok" or (op.outcome == "fail" and op.f == "cas")
        never = (op.outcome, op.f) in {("fail", "read"), ("fail", "write"), ("info", "read")}
        if (must and op not in order) or (never and op in order):
            return False
    held: dict[str, Any] = {}
    for i, op in enumerate(order):
        later_same_key = [later for later in order[i + 1 :] if later.key == op.key]
        if any(later.ret is not None and later.ret < op.call for later in later_same_key):
            return False
        fits, held[repr(op.key)] = _apply(op, held.get(repr(op.key)))
        if not fits:
            return False
    return True


def compare(seed: int) -> tuple[bool, bool]:
    """(checker's verdict, oracle's verdict) on the history drawn from ``seed``; model by parity.

    A linearizable verdict counts only with a legal order: a wrong order reads as "not".
    """
    rng = random.Random(seed)
    model = "register" if seed % 2 == 0 else "kv"
    events = random_history(rng, model)
    result = check_history(events, model)
    checked = result.ok and legal_order(events, [op.call for op in result.order])
    return checked, brute_force(events)


def test_oracle_agrees_with_plain_permutations_on_tiny_histories() -> None:
    verdicts = set()
    for seed in range(400):
        rng = random.Random(seed)
        events = random_history(rng, "kv" if seed % 2 else "register", max_ops=5)
        verdict = brute_force(events)
        assert verdict == permutations_oracle(events), (seed, events)
        verdicts.add(verdict)
    assert verdicts == {True, False}


def test_order_check_rejects_what_it_should() -> None:
    # write 1 | read 1, one after the other; an info write of 2 invoked last.
    events: list[Event] = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 1},
        {"process": 2, "type": "invoke", "f": "write", "value": 2},
    ]
    assert legal_order(events, [0, 2])
    assert legal_order(events, [0, 2, 4])  # the info write may happen, after its invoke
    assert not legal_order(events, [2, 0])  # against real time, and reads null
    assert not legal_order(events, [0])  # the ok read is missing
    assert not legal_order(events, [0, 4, 2])  # the read would see 2
    assert not legal_order(events, [0, 2, 2])
    result = check_history(events, "register")
    assert result.ok and legal_order(events, [op.call for op in result.order])


def test_checker_agrees_with_brute_force_on_5000_random_histories() -> None:
    disagreements = []
    by_verdict = {True: 0, False: 0}
    for seed in range(5000):
        checked, expected = compare(seed)
        by_verdict[expected] += 1
        if checked != expected:
            disagreements.append(seed)
    assert disagreements == [], disagreements[:20]
    # Both verdicts are exercised in earnest.
    assert min(by_verdict.values()) > 750, by_verdict


@pytest.mark.parametrize("model", ["register", "kv"])
def test_generator_covers_what_it_promises(model: str) -> None:
    seen: set[str] = set()
    for seed in range(300):
        events = random_history(random.Random(seed), model)
        open_processes: set[Any] = set()
        for event in events:
            seen.add(f"{event['type']} {event['f']}")
            if event["type"] == "invoke":
                open_processes.add(event["process"])
                if event["f"] == "cas" and event["value"][0] == event["value"][1]:
                    seen.add("cas expecting what it writes")
                if event["f"] == "write" and event["value"] is None:
                    seen.add("write null")
            else:
                open_processes.discard(event["process"])
        if open_processes:
            seen.add("open at the end")
        seen |= _overlaps(events)
        writes = [e["value"] for e in events if e["type"] == "invoke" and e["f"] == "write"]
        if len(writes) != len({repr(v) for v in writes}):
            seen.add("same value written twice")
    for kind in ("ok", "fail", "info"):
        for f in ("read", "write", "cas"):
            assert f"{kind} {f}" in seen
    features = (
        "cas expecting what it writes",
        "write null",
        "open at the end",
        "same value written twice",
        "first invoked returns first",
        "first invoked returns last",
    )
    assert set(features) <= seen


def _overlaps(events: list[Event]) -> set[str]:
    """How pairs of overlapping operations (both completed) interleave in ``events``."""
    spans: list[tuple[int, int]] = []
    open_at: dict[Any, int] = {}
    for position, event in enumerate(events):
        if event["type"] == "invoke":
            open_at[event["process"]] = position
        else:
            spans.append((open_at.pop(event["process"]), position))
    found = set()
    for (_, a_ret), (b_call, b_ret) in itertools.combinations(sorted(spans), 2):
        if b_call < a_ret:  # b invoked while a was running
            found.add("first invoked returns first" if a_ret < b_ret else "first invoked returns last")
    return found
