"""Batches: what the leader proposes decodes to the same operations, and garbage is refused."""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager.state.store import (
    Create,
    Delete,
    InvalidObject,
    Op,
    Store,
    StoreError,
    Update,
    decode_batch,
    encode_batch,
    format_timestamp,
    new_id,
)

T0 = "2026-11-22T10:44:27.364128Z"


def test_round_trip_keeps_every_operation() -> None:
    ops: list[Op] = [
        Create(
            "node",
            "n1",
            {"Role": "worker", "Availability": "active"},
            {"State": "ready"},
            {"Description": {}},
        ),
        Update("service", "s1", 7, spec={"Name": "web", "Labels": {"é": "ü"}}),
        Update("task", "t1", 9, status={"State": "running"}),
        Delete("secret", "x1"),
        Delete("config", "c1", version=3),
    ]
    expected = copy.deepcopy(ops)  # what went in, even if encoding changed it in place
    decoded, now = decode_batch(encode_batch(ops, now=T0))
    assert now == T0
    assert decoded == expected


def test_encoding_is_canonical() -> None:
    a = encode_batch([Create("node", "n1", {"Role": "worker", "Availability": "active"})], now=T0)
    b = encode_batch([Create("node", "n1", {"Availability": "active", "Role": "worker"})], now=T0)
    assert a == b


@pytest.mark.parametrize(
    "ops",
    [
        [Create("widget", "w1", {})],
        [Create("node", "", {})],
        [Create("node", "has space", {})],
        [Create("node", "n1", {1: "x"})],  # type: ignore[dict-item]
        [Create("node", "n1", {"x": float("nan")})],
        [Create("node", "n1", {"x": object()})],
        [Create("node", "n1", [])],  # type: ignore[arg-type]  # a list is not a JSON object
        [Update("node", "n1", -1)],
        [Update("node", "n1", True)],
        ["not an op"],
    ],
)
def test_malformed_operations_are_refused_before_proposing(ops: list[Create | Update | Delete]) -> None:
    with pytest.raises(InvalidObject):
        encode_batch(ops, now=T0)


@pytest.mark.parametrize("now", ["", "yesterday", "2026-11-22 10:44:27", "2026-11-22T10:44:27"])
def test_the_timestamp_must_be_rfc3339(now: str) -> None:
    with pytest.raises(InvalidObject):
        encode_batch([], now=now)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"[]",
        b'{"v": 2, "now": "2026-11-22T10:44:27Z", "ops": []}',
        b'{"v": 1, "now": "2026-11-22T10:44:27Z", "ops": {}}',
        b'{"v": 1, "now": "2026-11-22T10:44:27Z", "ops": [{"op": "frob", "kind": "node", "id": "n1"}]}',
        b'{"v": 1, "now": "2026-11-22T10:44:27Z", "ops": [{"op": "create", "kind": "node", "id": "n1"}]}',
        b'{"v": 1, "v": 1, "now": "2026-11-22T10:44:27Z", "ops": []}',
        b'{"v": 1, "now": "2026-11-22T10:44:27Z", "ops": [{"op": "create", "kind": "node", "id": "n1",'
        b' "spec": {"x": NaN}}]}',
    ],
)
def test_garbage_entries_are_rejected_by_apply_without_effect(data: bytes) -> None:
    with pytest.raises(InvalidObject):
        decode_batch(data)
    store = Store()
    result = store.apply(1, data)
    assert not result.ok and isinstance(result.error, InvalidObject)
    assert store.applied_index == 1 and json.loads(store.snapshot())["objects"] == []


def test_proposer_helpers() -> None:
    assert format_timestamp(1763808267.364128) == "2025-11-22T10:44:27.364128Z"
    assert format_timestamp(1763808267.5) == "2025-11-22T10:44:27.5Z"
    assert format_timestamp(1763808267) == "2025-11-22T10:44:27Z"
    encode_batch([], now=format_timestamp(1763808267.364128))  # acceptable as ``now``
    ids = {new_id(random.Random(seed)) for seed in range(50)}
    assert len(ids) == 50 and all(len(i) == 25 and i.isalnum() and i.islower() for i in ids)
    assert new_id(random.Random(3)) == new_id(random.Random(3))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
raw_ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["create", "update", "delete", "x"]),
        "kind": st.sampled_from(["node", "secret", "x"]),
    },
    optional={
        "id": json_values | st.just("n1"),
        "spec": json_values,
        "version": json_values,
        "extra": json_values,
    },
)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(max_size=64)
    | st.builds(
        lambda ops: json.dumps({"v": 1, "now": T0, "ops": ops}).encode(), st.lists(raw_ops, max_size=3)
    )
)
def test_apply_never_raises_whatever_the_entry_holds(data: bytes) -> None:
    store = Store()
    result = store.apply(1, data)
    assert result.ok or isinstance(result.error, StoreError)
    if not result.ok:
        assert json.loads(store.snapshot())["objects"] == []
    assert store.applied_index == 1


def test_deeply_nested_specs_are_refused_not_crashed() -> None:
    deep: dict[str, object] = {}
    for _ in range(5000):
        deep = {"x": deep}
    with pytest.raises(InvalidObject):
        encode_batch([Create("node", "n1", deep)], now=T0)
    nested = b'{"v": 1, "now": "2026-11-22T10:00:00Z", "ops": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert not Store().apply(1, nested).ok
