"""The linearizability checker on hand-built histories, random small ones against brute force,
and a 10,000-operation kv history within its time budget."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest

from manager.check import HistoryError, check_history, parse_operations
from manager.check.synth import SynthConfig, generate, inject_stale_read

Event = dict[str, Any]


def inv(p: int, f: str, value: Any = None, key: str | None = None) -> Event:
    event: Event = {"process": p, "type": "invoke", "f": f, "value": value}
    if key is not None:
        event["key"] = key
    return event


def end(kind: str, p: int, f: str, value: Any = None, key: str | None = None) -> Event:
    event: Event = {"process": p, "type": kind, "f": f, "value": value}
    if key is not None:
        event["key"] = key
    return event


def ok(p: int, f: str, value: Any = None, key: str | None = None) -> Event:
    return end("ok", p, f, value, key)


def write(p: int, value: Any, key: str | None = None, kind: str = "ok") -> list[Event]:
    return [inv(p, "write", value, key), end(kind, p, "write", value, key)]


def read(p: int, value: Any, key: str | None = None) -> list[Event]:
    return [inv(p, "read", None, key), ok(p, "read", value, key)]


def cas(p: int, expected: Any, new: Any, kind: str = "ok") -> list[Event]:
    return [inv(p, "cas", [expected, new]), end(kind, p, "cas", [expected, new])]


def linearizable(events: list[Event], model: str = "register") -> bool:
    return check_history(events, model).ok


def test_sequential_write_then_read_is_linearizable() -> None:
    assert linearizable([*write(1, 5), *read(2, 5)])


def test_read_of_never_written_register_is_null() -> None:
    assert linearizable(read(1, None))
    assert not linearizable(read(1, 0))


def test_stale_read_after_write_returned_is_not_linearizable() -> None:
    events = [*write(1, 1), *write(1, 2), *read(2, 1)]
    result = check_history(events, "register")
    assert not result.ok
    blocking = [op for op in result.unorderable if op["blocking"]]
    assert blocking == [
        {
            "process": 2,
            "type": "ok",
            "f": "read",
            "value": 1,
            "invoke_line": 5,
            "complete_line": 6,
            "blocking": True,
        }
    ]
    assert "lines 5-6" in result.explanation


def test_read_concurrent_with_write_may_see_either_value() -> None:
    # write 1 ... | read -> old | read -> new | ... write returns
    for seen in (None, 1):
        events = [inv(1, "write", 1), *read(2, seen), ok(1, "write", 1)]
        assert linearizable(events), seen


def test_new_value_then_old_value_is_not_linearizable() -> None:
    # Both reads overlap the write, but once one has seen 1, a later read cannot see null.
    events = [inv(1, "write", 1), *read(2, 1), *read(3, None), ok(1, "write", 1)]
    assert not linearizable(events)


def test_failed_write_did_not_happen() -> None:
    assert linearizable([*write(1, 7, kind="fail"), *read(2, None)])
    assert not linearizable([*write(1, 7, kind="fail"), *read(2, 7)])


def test_failed_read_is_dropped() -> None:
    events = [*write(1, 3), inv(2, "read"), end("fail", 2, "read"), *read(2, 3)]
    assert linearizable(events)


def test_failed_cas_means_the_register_held_another_value() -> None:
    assert linearizable([*write(1, 1), *cas(2, 9, 2, kind="fail"), *read(1, 1)])
    # The register certainly held 1, so a cas expecting 1 cannot have failed.
    assert not linearizable([*write(1, 1), *cas(2, 1, 2, kind="fail")])
    # A failed cas changes nothing.
    assert not linearizable([*write(1, 1), *cas(2, 9, 2, kind="fail"), *read(1, 2)])


def test_failed_cas_is_ordered_at_a_point_where_the_value_differed() -> None:
    # Concurrent with a write of 1 over 0, a failed cas expecting 0 must be ordered after the write.
    events = [*write(1, 0), inv(1, "write", 1), *cas(2, 0, 5, kind="fail"), ok(1, "write", 1), *read(3, 1)]
    assert linearizable(events)
    # ...which is impossible if a read after the cas returned still saw 0 before the write.
    events = [*write(1, 0), inv(1, "write", 1), *cas(2, 0, 5, kind="fail"), *read(3, 0), ok(1, "write", 1)]
    assert not linearizable(events)


def test_concurrent_cas_only_one_can_win() -> None:
    both_ok = [
        *write(1, 0),
        inv(2, "cas", [0, 1]),
        inv(3, "cas", [0, 2]),
        ok(2, "cas", [0, 1]),
        ok(3, "cas", [0, 2]),
    ]
    assert not linearizable(both_ok)
    one_fails = [
        *write(1, 0),
        inv(2, "cas", [0, 1]),
        inv(3, "cas", [0, 2]),
        ok(2, "cas", [0, 1]),
        end("fail", 3, "cas", [0, 2]),
        *read(1, 1),
    ]
    assert linearizable(one_fails)
    # The loser's failure must come after the winner: had the register still held 0, it would match.
    chained = [
        *write(1, 0),
        inv(2, "cas", [0, 1]),
        inv(3, "cas", [1, 2]),
        ok(2, "cas", [0, 1]),
        ok(3, "cas", [1, 2]),
        *read(1, 2),
    ]
    assert linearizable(chained)


def test_info_write_may_or_may_not_have_happened() -> None:
    maybe = write(1, 4, kind="info")
    assert linearizable([*maybe, *read(2, 4)])
    assert linearizable([*maybe, *read(2, None)])
    assert not linearizable([*maybe, *read(2, 4), *read(2, None)])


def test_info_write_can_take_effect_long_after_it_was_invoked() -> None:
    events = [*write(1, 4, kind="info"), *write(2, 1), *read(2, 1), *read(2, 4), *read(2, 4)]
    assert linearizable(events)
    # ...but only once: the value it wrote cannot come back after being overwritten.
    events = [*write(1, 4, kind="info"), *read(2, 4), *write(2, 1), *read(2, 4)]
    assert not linearizable(events)


def test_info_write_cannot_explain_a_read_that_returned_before_it_was_invoked() -> None:
    assert not linearizable([*read(2, 4), *write(1, 4, kind="info")])
    assert not linearizable([*read(2, 4), *write(1, 4, kind="info"), *read(2, 4)])


def test_info_cas_applies_only_when_it_matches() -> None:
    assert linearizable([*write(1, 0), *cas(2, 0, 1, kind="info"), *read(1, 1)])
    assert linearizable([*write(1, 0), *cas(2, 0, 1, kind="info"), *read(1, 0)])
    assert not linearizable([*write(1, 3), *cas(2, 0, 1, kind="info"), *read(1, 1)])


def test_operation_open_at_the_end_counts_as_info() -> None:
    assert linearizable([inv(1, "write", 8), *read(2, 8)])
    assert linearizable([inv(1, "write", 8), *read(2, None)])


def test_process_may_invoke_again_after_info() -> None:
    events = [*write(1, 1, kind="info"), *write(1, 2), *read(1, 2)]
    assert linearizable(events)


REGRESSION_HISTORY: list[Event] = [
    # From the issue "Honest verdicts": linearizable (cas [null,0], write 0, cas [0,2], write 0,
    # cas [0,0], cas [0,0]) but once reported as not, because the second write of 0, invoked before
    # the cas [0,2] and finding 0 already there, was taken to be a read and placed first for good.
    inv(0, "cas", [3, 3]),
    end("fail", 0, "cas", [3, 3]),
    inv(0, "cas", [None, 0]),
    ok(0, "cas", [None, 0]),
    inv(2, "write", 0),
    ok(2, "write", 0),
    inv(2, "write", 0),
    inv(1, "cas", [0, 2]),
    ok(2, "write", 0),
    ok(1, "cas", [0, 2]),
    inv(1, "cas", [0, 0]),
    inv(0, "cas", [0, 0]),
    ok(0, "cas", [0, 0]),
    ok(1, "cas", [0, 0]),
]


def test_regression_write_of_the_current_value_is_not_a_read() -> None:
    result = check_history(REGRESSION_HISTORY, "register")
    assert result.ok, result.explanation


def test_operation_invoked_first_may_take_effect_second() -> None:
    # Writing the value the register already holds changes nothing *now*, but placed later it
    # undoes the cas: the write invoked first must come second for the final read of 0.
    events = [*write(1, 0), inv(2, "write", 0), inv(1, "cas", [0, 2])]
    events += [ok(2, "write", 0), ok(1, "cas", [0, 2])]
    assert linearizable([*events, *read(3, 0)])
    assert linearizable([*events, *read(3, 2)])
    # Two cas where the one invoked first can only apply second.
    events = [*write(1, 0), inv(2, "cas", [2, 0]), inv(1, "cas", [0, 2])]
    events += [ok(2, "cas", [2, 0]), ok(1, "cas", [0, 2])]
    assert linearizable([*events, *read(3, 0)])
    assert not linearizable([*events, *read(3, 2)])


def test_info_operation_invoked_after_every_return() -> None:
    # Its response at infinity must sort after its own call: it once sorted before it, which
    # corrupted the event list and turned this linearizable history into a failure.
    assert linearizable([*write(1, 0), *write(2, 1), *read(2, 1), inv(3, "cas", [0, 2])])
    assert linearizable([*write(1, 0), *read(2, 0), inv(3, "write", 1)])
    assert not linearizable([*write(1, 0), *read(2, 1), inv(3, "write", 1)])


def test_kv_checks_each_key_on_its_own() -> None:
    events = [*write(1, 1, key="a"), *write(1, 2, key="b"), *read(2, 1, key="a"), *read(2, 2, key="b")]
    result = check_history(events, "kv")
    assert result.ok and result.keys_checked == 2 and result.ops == 4
    crossed = [*write(1, 1, key="a"), *read(2, 1, key="b")]
    result = check_history(crossed, "kv")
    assert not result.ok
    assert [op["key"] for op in result.unorderable] == ["b"]
    assert "key 'b'" in result.explanation


def test_register_model_refuses_several_keys() -> None:
    events = [*write(1, 1, key="a"), *read(2, 1, key="b")]
    with pytest.raises(HistoryError) as info:
        check_history(events, "register")
    assert info.value.line == 3
    assert "--model kv" in str(info.value)


def test_unknown_model_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        check_history(read(1, None), "queue")


def _brute_force(events: list[Event]) -> bool:
    """Linearizable by enumerating orders: the definition, with no search cleverness."""
    ops = parse_operations(events)
    must = [op for op in ops if op.outcome == "ok" or (op.f == "cas" and op.outcome == "fail")]
    maybe = [op for op in ops if op.outcome == "info" and op.f != "read"]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(must + list(chosen)):
                if _legal(order):
                    return True
    return False


def _legal(order: tuple[Any, ...]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if b.ret is not None and b.ret < a.call:
                return False  # b returned before a was invoked, yet comes after it
    value = None
    for op in order:
        if op.f == "read":
            if op.result != value:
                return False
        elif op.f == "write":
            value = op.value
        elif op.outcome == "fail":
            if value == op.value[0]:
                return False
        else:  # an ok cas, or an info cas taken to have happened
            if value != op.value[0]:
                return False
            value = op.value[1]
    return True


def _mutate(events: list[Event], rng: random.Random) -> list[Event]:
    changed = [dict(e) for e in events]
    for _ in range(rng.randint(0, 2)):
        event = rng.choice(changed)
        if event["f"] == "read" and event["type"] == "ok":
            event["value"] = rng.choice([None, 1, 2, 3])
        elif event["f"] == "cas" and event["type"] in ("ok", "fail"):
            event["type"] = "fail" if event["type"] == "ok" else "ok"
    return changed


def test_agrees_with_brute_force_on_small_random_histories() -> None:
    config = SynthConfig(operations=6, processes=3, keys=1, latency=1.0, think=0.3, p_info=0.2, p_fail=0.1)
    verdicts = set()
    for seed in range(250):
        rng = random.Random(seed)
        events = _mutate(generate(rng, config), rng)
        # Small values so that different writes can write the same value.
        for event in events:
            if event["f"] == "write" and event["value"] is not None:
                event["value"] = event["value"] % 3
        expected = _brute_force(events)
        assert check_history(events, "kv").ok == expected, (seed, events)
        verdicts.add(expected)
    assert verdicts == {True, False}


@pytest.mark.parametrize("seed", [1, 2])
def test_ten_thousand_operation_kv_history_within_ten_seconds(seed: int) -> None:
    events = generate(random.Random(seed), SynthConfig(operations=10_000, processes=10, keys=10))
    assert sum(e["type"] == "invoke" for e in events) == 10_000
    assert any(e["type"] == "info" for e in events) and any(e["type"] == "fail" for e in events)
    started = time.perf_counter()
    result = check_history(events, "kv")
    assert result.ok, result.explanation
    bad, changed = inject_stale_read(events, random.Random(seed))
    verdict = check_history(bad, "kv")
    elapsed = time.perf_counter() - started
    assert not verdict.ok
    assert any(op["blocking"] and op["complete_line"] == changed + 1 for op in verdict.unorderable)
    assert elapsed < 10.0


def test_search_past_its_memory_budget_says_unknown_not_a_verdict() -> None:
    events = write(1, 1) + write(2, 2) + read(3, 2)
    assert check_history(events, "register").ok
    tight = check_history(events, "register", memory_budget=1)
    assert not tight.ok and tight.unknown
    assert tight.explanation.startswith("unknown:") and tight.unorderable == []


def test_cli_exit_code_3_when_the_budget_runs_out(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import deploy.commands.check as command
    from deploy.cli import main

    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in write(1, 1) + write(2, 2) + read(3, 2)))
    budgets: list[int] = []

    def tiny_budget(*args: Any, memory_budget: int, **kwargs: Any) -> Any:
        budgets.append(memory_budget)
        return check_history(*args, memory_budget=1, **kwargs)  # far below what the search needs

    monkeypatch.setattr(command, "check_history", tiny_budget)
    assert main(["check", "linearizable", str(path), "--model", "register", "--max-memory-mb", "5"]) == 3
    assert budgets == [5 << 20]
    assert "unknown:" in capsys.readouterr().out
    assert main(["check", "linearizable", str(path), "--max-memory-mb", "0"]) == 2


def _hard_history() -> list[Event]:
    """400 operations of 10 processes on one register with a stale read planted: the search needs
    about 60,000 steps (60 polls of the time limit) to rule out every order."""
    events = generate(random.Random(1), SynthConfig(operations=400, processes=10, keys=1))
    return inject_stale_read(events, random.Random(1))[0]


class _TickingClock:
    """A clock that moves one second each time it is read: the time limit in polls, exactly."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return float(self.reads)


def test_time_limit_gives_unknown_and_a_generous_one_the_verdict() -> None:
    events = _hard_history()
    tight = _TickingClock()
    result = check_history(events, "kv", timeout=10, clock=tight)
    assert result.unknown and not result.ok and result.unorderable == []
    assert result.explanation.startswith("unknown: the check ran past its time limit of 10 s")
    # One read to set the deadline, then one poll per POLL_EVERY steps until the 10th says stop.
    assert tight.reads == 11
    generous = _TickingClock()
    result = check_history(events, "kv", timeout=1000, clock=generous)
    assert not result.ok and not result.unknown and result.unorderable
    assert 30 < generous.reads < 1000  # it did poll all along, and finished within the limit
    # Without a limit the clock is never read.
    unlimited = _TickingClock()
    assert not check_history(events, "kv", clock=unlimited).ok and unlimited.reads == 0


def test_linearizable_result_carries_a_legal_order() -> None:
    result = check_history(REGRESSION_HISTORY, "register")
    # (invoke line, f, value) in the order found: the write invoked at line 7 comes after the cas
    # invoked at line 8.
    found = [(op.invoke_line, op.f, op.value) for op in result.order]
    assert found == [
        (1, "cas", [3, 3]),
        (3, "cas", [None, 0]),
        (5, "write", 0),
        (8, "cas", [0, 2]),
        (7, "write", 0),
        (11, "cas", [0, 0]),
        (12, "cas", [0, 0]),
    ]
    assert check_history([*write(1, 0), *read(1, 1)], "register").order == []


def test_cli_explain_prints_the_order_and_what_was_left_out(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from deploy.cli import main

    path = tmp_path / "history.jsonl"
    failed_write = write(3, 9, kind="fail")
    path.write_text("".join(json.dumps(e) + "\n" for e in REGRESSION_HISTORY + failed_write))
    assert main(["check", "linearizable", str(path), "--model", "register", "--explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "linearizable: 8 operation(s) on 1 register(s)"
    assert out[1] == "a legal order for the register:"
    cas_first = '  4. {"process": 1, "type": "ok", "f": "cas", "value": [0, 2], "invoke_line": 8,'
    assert out[5].startswith(cas_first)
    assert out[6].startswith('  5. {"process": 2, "type": "ok", "f": "write", "value": 0, "invoke_line": 7,')
    assert out[9].startswith("not in the order")
    assert json.loads(out[10]) == {
        "process": 3, "type": "fail", "f": "write", "value": 9, "invoke_line": 15, "complete_line": 16
    }
    assert len(out) == 11
    # Without --explain, the verdict alone.
    assert main(["check", "linearizable", str(path), "--model", "register"]) == 0
    assert capsys.readouterr().out.splitlines() == ["linearizable: 8 operation(s) on 1 register(s)"]


def test_cli_timeout(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from deploy.cli import main

    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _hard_history()))
    # The search takes tens of milliseconds at least; a millisecond cannot be enough.
    assert main(["check", "linearizable", str(path), "--timeout", "0.001"]) == 3
    assert "unknown: the check ran past its time limit of 0.001 s" in capsys.readouterr().out
    assert main(["check", "linearizable", str(path), "--timeout", "600"]) == 1
    for bad in ("0", "-1", "nan", "inf"):
        assert main(["check", "linearizable", str(path), "--timeout", bad]) == 2
        assert "--timeout must be a positive number" in capsys.readouterr().err
