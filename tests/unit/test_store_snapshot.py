"""Managers that apply the same log hold byte-identical state, and snapshots carry it over."""

from __future__ import annotations

import base64
import json

import pytest

from manager.state.store import (
    Create,
    Delete,
    InvalidObject,
    Op,
    Store,
    Update,
    default_cluster_spec,
    encode_batch,
)

NODE = {"Role": "worker", "Availability": "active", "Labels": {}}


def log() -> list[bytes]:
    """A short cluster history with a rejected batch and an empty entry in it."""
    batches: list[tuple[list[Op], str]] = [
        (
            [
                Create(
                    "cluster",
                    "c1",
                    default_cluster_spec(),
                    extra={"JoinTokens": {"Worker": "w", "Manager": "m"}},
                )
            ],
            "1",
        ),
        ([Create("node", "n1", {**NODE, "Role": "manager"}), Create("node", "n2", NODE)], "2"),
        ([Create("secret", "s1", {"Name": "pw", "Data": base64.b64encode(b"pw").decode()})], "3"),
        ([Create("service", "svc", {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}}})], "4"),
        ([Create("task", "t1", {}, {"State": "new"}, {"ServiceID": "svc", "Slot": 1})], "5"),
        ([Update("node", "n2", 1, status={"State": "ready"})], "6"),  # stale: rejected
        ([Update("node", "n2", 2, status={"State": "ready"})], "7"),
        (
            [
                Update(
                    "task", "t1", 6, status={"State": "running"}, extra={"ServiceID": "svc", "NodeID": "n2"}
                )
            ],
            "8",
        ),
        ([Delete("secret", "s1")], "9"),
    ]
    out = [encode_batch(ops, now=f"2026-11-22T10:00:0{sec}Z") for ops, sec in batches]
    out.insert(3, b"")  # a new leader's no-op
    return out


def replay(entries: list[bytes], store: Store | None = None, start: int = 1) -> Store:
    store = store or Store()
    for i, data in enumerate(entries, start=start):
        store.apply(i, data)
    return store


def test_two_managers_reach_byte_identical_state() -> None:
    a, b = replay(log()), replay(log())
    assert a.snapshot() == b.snapshot()
    assert a.applied_index == len(log())
    state = json.loads(a.snapshot())
    assert [(o["Kind"], o["ID"], o["Version"]) for o in state["objects"]] == [
        ("cluster", "c1", 1),
        ("node", "n1", 2),
        ("node", "n2", 8),
        ("service", "svc", 5),
        ("task", "t1", 9),
    ]


def test_restore_then_continue_matches_an_uninterrupted_run() -> None:
    entries = log()
    whole = replay(entries)
    for cut in range(len(entries) + 1):
        first = replay(entries[:cut])
        follower = Store()
        follower.restore(first.snapshot(), cut)
        replay(entries[cut:], follower, start=cut + 1)
        assert follower.snapshot() == whole.snapshot(), f"diverged after a snapshot at {cut}"


def test_restore_tells_watchers_what_changed() -> None:
    entries = log()
    early, late = replay(entries[:3]), replay(entries)
    w = early.watch()
    early.restore(late.snapshot(), late.applied_index)
    got = [(c.index, c.action, c.kind, c.object.id) for c in w.poll()]
    assert got == [  # in kind order, then ID order
        (10, "update", "node", "n2"),
        (10, "create", "service", "svc"),
        (10, "create", "task", "t1"),
        (10, "remove", "secret", "s1"),
    ]
    back = replay(entries[:3])
    w2 = early.watch()
    early.restore(back.snapshot(), 11)
    assert [(c.action, c.object.id) for c in w2.poll()] == [
        ("update", "n2"),
        ("remove", "svc"),
        ("remove", "t1"),
        ("create", "s1"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"nonsense",
        b'{"v": 1, "index": 99, "objects": []}',  # taken after the index it is restored at
        b'{"v": 1, "index": 1, "objects": [{"Kind": "widget", "ID": "x"}]}',
        b'{"v": 1, "index": 1, "objects": [{"Kind": "node", "ID": "x", "Version": 1}]}',
    ],
)
def test_a_bad_snapshot_changes_nothing(data: bytes) -> None:
    store = replay(log()[:3])
    before = store.snapshot()
    with pytest.raises(InvalidObject):
        store.restore(data, 5)
    assert store.snapshot() == before and store.applied_index == 3
