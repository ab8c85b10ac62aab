"""Property: under any sequence of batches, Version.Index is the index of the object's last write.

Hypothesis draws batches of creates, updates and deletes over a few IDs and names, some with
stale versions, some writing an object twice; a small model says which batches must commit.
Every manager fed the same entries (including one restored from a snapshot midway) must agree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.state.store import Create, Delete, Op, Store, Update, encode_batch

IDS = tuple(f"s{i}" for i in range(8))
NAMES = ("web", "api", "db")

# (action, pick, version mode, name). Updates and deletes pick among existing services, creates
# among all IDs, so that most batches commit and versions keep moving; creates usually take a
# name of their own ("own") and sometimes a shared one, to exercise conflicts. The version is
# resolved against the live state: the current one, a stale one, or none (for a delete).
abstract_op = st.tuples(
    st.sampled_from(("create", "create", "update", "update", "update", "delete")),
    st.integers(min_value=0, max_value=len(IDS) - 1),
    st.sampled_from(("current", "current", "current", "stale", "none")),
    st.sampled_from((*NAMES, "own", "own", "own")),
)
batches = st.lists(st.lists(abstract_op, min_size=1, max_size=3), min_size=1, max_size=25)


def spec(name: str) -> dict[str, Any]:
    return {"Name": name, "Mode": {"Replicated": {"Replicas": 1}}}


def concrete(store: Store, action: str, pick: int, mode: str, name: str) -> Op:
    existing = store.find("service")
    if action == "create" or not existing:
        id_ = IDS[pick]
        return Create("service", id_, spec(f"svc-{id_}" if name == "own" else name))
    target = existing[pick % len(existing)]
    version = target.version + 1 if mode == "stale" else target.version
    if action == "update":
        # Services cannot be renamed: an update keeps the name and changes a label.
        return Update(
            "service", target.id, version, spec={**spec(target.spec["Name"]), "Labels": {"n": name}}
        )
    return Delete("service", target.id, None if mode == "none" else version)


def model_accepts(model: dict[str, tuple[int, str]], ops: list[Op]) -> dict[str, tuple[int, str]] | None:
    """The model's verdict on a batch: the objects' (version, name) after it, or None if rejected."""
    after = dict(model)
    touched: set[str] = set()
    for op in ops:
        if op.id in touched:
            return None
        touched.add(op.id)
        if isinstance(op, Create):
            if op.id in after or any(n == op.spec["Name"] for _, n in after.values()):
                return None
            after[op.id] = (-1, op.spec["Name"])
        elif isinstance(op, Update):
            if op.id not in after or after[op.id][0] != op.version:
                return None
            after[op.id] = (-1, after[op.id][1])
        else:
            if op.id not in after or (op.version is not None and after[op.id][0] != op.version):
                return None
            del after[op.id]
    return after


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.integers(min_value=0, max_value=25))
def test_versions_track_the_last_write(steps: list[list[tuple[str, int, str, str]]], cut: int) -> None:
    leader, follower = Store(), Store()
    late: Store | None = None
    model: dict[str, tuple[int, str]] = {}
    entries: list[bytes] = []
    for index, step in enumerate(steps, start=1):
        ops = [concrete(leader, *op) for op in step]
        data = encode_batch(ops, now="2026-11-22T10:00:00Z")
        entries.append(data)
        verdict = model_accepts(model, ops)
        result = leader.apply(index, data)
        assert result.ok == (verdict is not None), result.error
        if verdict is not None:
            model = {k: (index if v == -1 else v, n) for k, (v, n) in verdict.items()}
            assert [c.object.version for c in result.changes if c.action != "remove"] == [
                index for c in result.changes if c.action != "remove"
            ]
        assert follower.apply(index, data).ok == result.ok
        if index == cut:
            late = Store()
            late.restore(leader.snapshot(), index)
        elif late is not None:
            late.apply(index, data)
        assert {o.id: (o.version, o.spec["Name"]) for o in leader.find("service")} == model
    assert follower.snapshot() == leader.snapshot()
    if late is not None:
        assert late.snapshot() == leader.snapshot()
