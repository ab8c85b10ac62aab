"""The component template: dirty keys from watches, wake-ups, the one conflict-retry helper, and
both harnesses (the simulator's and the asyncio one that runs only on the leader)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

import pytest

from manager.component import (
    MAX_CONFLICT_RETRIES,
    Component,
    ComponentMetrics,
    ComponentRunner,
    ConflictsExhausted,
    DirectProposer,
    DirtyKey,
    ManagerHarness,
    Reconciled,
    SimHarness,
    StoreView,
    run_now,
    write_reconciled,
)
from manager.state.store import Create, Op, Store, Update, UpdateOutOfSequence
from nodeagent.sim import Simulator

NODE = {"Name": "", "Role": "worker", "Availability": "active", "Labels": {}}


class Labeller(Component):
    """Puts label ``seen=<n>`` on every node, where n counts its reconciles; wakes at ``wake_at``."""

    name = "labeller"
    kinds = frozenset({"node"})

    def __init__(self, wake_at: float | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[frozenset[DirtyKey], float]] = []
        self.wake_at = wake_at

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        self.calls.append((dirty, now))
        ops: list[Op] = []
        for kind, id_ in sorted(dirty):
            node = view.maybe(kind, id_)
            if node is None or node.spec["Labels"].get("seen") == "yes":
                continue
            spec = copy.deepcopy(node.spec)
            spec["Labels"]["seen"] = "yes"
            ops.append(Update("node", node.id, node.version, spec=spec))
        wake = self.wake_at if self.wake_at is not None and now < self.wake_at else None
        return Reconciled(ops, wake)


def make_store(*ids: str) -> tuple[Store, DirectProposer]:
    store = Store()
    write = DirectProposer(store, lambda: 0.0)
    if ids:
        run_now(write([Create("node", i, NODE) for i in ids]))
    return store, write


def test_a_conflict_is_retried_by_re_reading_and_reconciling_again() -> None:
    store, write = make_store("n1")
    component = Labeller()
    conflicts = {"left": 1}

    async def racing_write(ops: Sequence[Op]) -> Any:
        if conflicts["left"]:
            conflicts["left"] -= 1
            # Another writer gets in first: n1's version moves on, so this batch is refused.
            node = store.get("node", "n1")
            await write([Update("node", "n1", node.version, status={"State": "ready"})])
        return await write(ops)

    metrics = ComponentMetrics()
    run_now(
        write_reconciled(
            component, StoreView(store), frozenset({("node", "n1")}), lambda: 1.0, racing_write, metrics
        )
    )
    assert len(component.calls) == 2  # reconciled again on the fresh version
    node = store.get("node", "n1")
    assert node.spec["Labels"] == {"seen": "yes"} and node.status == {"State": "ready"}
    assert metrics.conflicts.labels("labeller")._value.get() == 1


def test_conflicts_every_time_give_up_and_keep_the_keys_dirty() -> None:
    store, _ = make_store("n1")

    async def always_conflicts(ops: Sequence[Op]) -> Any:
        raise UpdateOutOfSequence()

    runner = ComponentRunner(Labeller(), store, lambda: 0.0)
    runner.open(lambda: None)
    assert runner.dirty == {("node", "n1")}  # opening marks every watched object dirty
    with pytest.raises(ConflictsExhausted):
        run_now(runner.reconcile_once(always_conflicts))
    assert runner.dirty == {("node", "n1")}
    assert len(runner.component.calls) == MAX_CONFLICT_RETRIES  # type: ignore[attr-defined]
    runner.close()


def test_sim_harness_reconciles_on_commits_pokes_and_timers_on_virtual_time() -> None:
    sim = Simulator(1)
    store, _ = make_store("n1")
    component = Labeller(wake_at=7.25)
    harness = SimHarness(component, sim, store)
    harness.run()
    sim.run_until(1.0)
    assert store.get("node", "n1").spec["Labels"] == {"seen": "yes"}
    assert component.calls[0] == (frozenset({("node", "n1")}), 0.0)
    # A commit by someone else at t=2: only that object is dirty in the next pass, at t=2.
    sim.call_at(2.0, lambda: run_now(harness.write([Create("node", "n2", NODE)])))
    # A poke at t=3 (an observation from outside the store): a pass at t=3 with that key.
    sim.call_at(3.0, component.poke, ("node", "n9"))
    sim.run_until(10.0)
    times = [(sorted(d), t) for d, t in component.calls]
    assert ([("node", "n2")], 2.0) in times
    assert ([("node", "n9")], 3.0) in times
    assert ([], 7.25) in times  # the wake-up it asked for, to the instant
    assert store.get("node", "n2").spec["Labels"] == {"seen": "yes"}
    harness.stop()
    calls = len(component.calls)
    run_now(harness.write([Create("node", "n3", NODE)]))
    sim.run_until(20.0)
    assert len(component.calls) == calls  # stopped: no more passes


def test_manager_harness_runs_only_on_the_leader() -> None:
    store, write = make_store("n1")
    component = Labeller()
    leading = {"now": False}

    async def scenario() -> None:
        harness = ManagerHarness(
            component, store, write, is_leader=lambda: leading["now"], check_every=0.01, retry_after=0.01
        )
        task = asyncio.create_task(harness.run())
        await asyncio.sleep(0.05)
        assert component.calls == []  # a follower never reconciles
        leading["now"] = True
        for _ in range(100):
            await asyncio.sleep(0.01)
            if store.get("node", "n1").spec["Labels"]:
                break
        assert store.get("node", "n1").spec["Labels"] == {"seen": "yes"}
        await write([Create("node", "n2", NODE)])  # a commit wakes it
        for _ in range(100):
            await asyncio.sleep(0.01)
            if store.get("node", "n2").spec["Labels"]:
                break
        assert store.get("node", "n2").spec["Labels"] == {"seen": "yes"}
        leading["now"] = False
        await asyncio.sleep(0.05)
        calls = len(component.calls)
        await write([Create("node", "n3", NODE)])
        await asyncio.sleep(0.05)
        assert len(component.calls) == calls and not store.get("node", "n3").spec["Labels"]
        harness.stop()
        await asyncio.wait_for(task, 1.0)

    asyncio.run(scenario())
