"""A task's Status.State and DesiredState only move forward (TASK_STATES order), checked by the store."""

from __future__ import annotations

from typing import Any

import pytest

from manager.state.store import Create, InvalidObject, Store, StoreError, Update, encode_batch
from manager.state.store.objects import TASK_STATES
from manager.state.store.validate import DESIRED_TASK_STATES

T0 = "2026-11-22T10:44:27.364128Z"


def run(store: Store, ops: list[Any]) -> StoreError | None:
    result = store.apply(store.applied_index + 1, encode_batch(ops, now=T0))
    return result.error


def make(store: Store, state: str = "new", desired: str = "running") -> None:
    status = {"State": state, "Message": "created", "Timestamp": T0}
    assert run(store, [Create("task", "t1", {}, status, {"DesiredState": desired, "Slot": 1})]) is None


def set_state(store: Store, state: str) -> StoreError | None:
    task = store.get("task", "t1")
    return run(store, [Update("task", "t1", task.version, status={**task.status, "State": state})])


def set_desired(store: Store, desired: str) -> StoreError | None:
    task = store.get("task", "t1")
    return run(store, [Update("task", "t1", task.version, extra={**task.extra, "DesiredState": desired})])


def test_the_whole_life_forward_is_accepted() -> None:
    store = Store()
    make(store)
    for state in ("pending", "assigned", "accepted", "preparing", "starting", "running", "failed"):
        assert set_state(store, state) is None, state
    assert store.get("task", "t1").status["State"] == "failed"


@pytest.mark.parametrize(
    ("before", "after"),
    [("running", "pending"), ("failed", "running"), ("shutdown", "complete"), ("assigned", "new")],
)
def test_a_state_never_moves_back(before: str, after: str) -> None:
    store = Store()
    make(store, state=before)
    error = set_state(store, after)
    assert isinstance(error, InvalidObject)
    assert error.message == f"task t1: state cannot move back from {before} to {after}"
    assert store.get("task", "t1").status["State"] == before  # the batch changed nothing


def test_the_same_state_again_is_fine_a_new_message_for_instance() -> None:
    store = Store()
    make(store, state="pending")
    task = store.get("task", "t1")
    status = {**task.status, "Err": "no suitable node (1 node not available for new tasks)"}
    assert run(store, [Update("task", "t1", task.version, status=status)]) is None


def test_a_late_report_in_a_batch_rejects_the_batch_whole() -> None:
    store = Store()
    make(store, state="failed")
    other = Create("task", "t2", {}, {"State": "new"}, {"DesiredState": "running"})
    task = store.get("task", "t1")
    stale = Update("task", "t1", task.version, status={**task.status, "State": "running"})
    assert isinstance(run(store, [other, stale]), InvalidObject)
    assert store.count("task") == 1


def test_desired_state_moves_forward_only() -> None:
    store = Store()
    make(store, desired="ready")
    assert set_desired(store, "running") is None
    assert set_desired(store, "shutdown") is None
    error = set_desired(store, "running")
    assert isinstance(error, InvalidObject)
    assert error.message == "task t1: desired state cannot move back from shutdown to running"
    assert set_desired(store, "remove") is None


def test_desired_state_must_be_one_an_orchestrator_can_ask_for() -> None:
    store = Store()
    error = run(store, [Create("task", "t1", {}, {"State": "new"}, {"DesiredState": "pending"})])
    assert isinstance(error, InvalidObject)
    assert error.message == (
        'invalid desired state "pending": want one of ready, running, complete, shutdown, remove'
    )
    assert set(DESIRED_TASK_STATES) <= set(TASK_STATES)


def test_an_unknown_state_is_refused_with_its_own_words() -> None:
    store = Store()
    make(store, state="running")
    error = set_state(store, "exploded")
    assert isinstance(error, InvalidObject)
    assert error.message == 'invalid task state "exploded"'
