"""swarmlet_tasks: the store's tasks by service and state, from the leader only."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from manager.state.store import Create, Store, Update, encode_batch
from manager.swarm_metrics import SwarmManagerMetrics


def _store() -> Store:
    store = Store()
    ops = [Create("service", "svc1", {"Name": "web"}, {}, {}),
           *(Create("task", f"t{i}", {}, {"State": "running"}, {"ServiceID": "svc1", "Slot": i})
             for i in range(1, 4))]
    assert store.apply(1, encode_batch(ops, now="2026-11-22T10:00:00Z")).ok
    return store


def _samples(store: Store, leader: bool) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    runtime = SimpleNamespace(store=store, shell=SimpleNamespace(is_leader=leader))
    registry.register(SwarmManagerMetrics(runtime))
    found = {}
    for family in registry.collect():
        if family.name == "swarmlet_tasks":
            for sample in family.samples:
                found[(sample.labels["service"], sample.labels["state"])] = sample.value
    return found


def test_the_leader_counts_tasks_by_service_and_state_and_follows_a_change() -> None:
    store = _store()
    assert _samples(store, leader=True) == {("web", "running"): 3.0}
    t1 = store.get("task", "t1")
    update = Update("task", "t1", t1.version, status={"State": "shutdown"})
    assert store.apply(2, encode_batch([update], now="2026-11-22T10:00:01Z")).ok
    assert _samples(store, leader=True) == {("web", "running"): 2.0, ("web", "shutdown"): 1.0}


def test_a_follower_exposes_the_family_without_series() -> None:
    registry = CollectorRegistry()
    runtime = SimpleNamespace(store=_store(), shell=SimpleNamespace(is_leader=False))
    registry.register(SwarmManagerMetrics(runtime))
    text = generate_latest(registry).decode()
    assert "# TYPE swarmlet_tasks gauge" in text
    assert "swarmlet_tasks{" not in text
    assert 'swarm_manager_tasks_total{state="running"} 3.0' in text
