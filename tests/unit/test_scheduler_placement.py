"""Placement: spread, placement preferences, batch accounting, pre-assigned tasks, determinism."""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Sequence

from manager.component import StoreView
from manager.scheduler import (
    ASSIGNED_MESSAGE,
    PREASSIGNED_MESSAGE,
    Cluster,
    Decisions,
    Pending,
    decision_ops,
    schedule,
)
from manager.scheduler.build import make_node, make_service, make_task, task_template
from manager.state.store import Create, Store, encode_batch
from manager.state.store.objects import StoredObject


def run(
    nodes: Sequence[StoredObject],
    services: Sequence[StoredObject],
    pending: Sequence[StoredObject],
    existing: Sequence[StoredObject] = (),
) -> Decisions:
    return schedule(Cluster(nodes, [*existing, *pending], {s.id: s for s in services}), pending)


def tasks_of(service: StoredObject, count: int, prefix: str = "t") -> list[StoredObject]:
    return [make_task(f"{prefix}{i:03}", service, slot=i) for i in range(1, count + 1)]


def per_node(decisions: Decisions) -> Counter[str]:
    return Counter(decisions.assignments.values())


# ---- spread ------------------------------------------------------------------------------------


def test_replicas_spread_evenly() -> None:
    nodes = [make_node(f"n{i}") for i in range(3)]
    service = make_service("s", replicas=7)
    decisions = run(nodes, [service], tasks_of(service, 7))
    assert per_node(decisions) == {"n0": 3, "n1": 2, "n2": 2}  # the extra one by node ID


def test_fewest_tasks_of_the_service_first_then_fewest_in_total() -> None:
    nodes = [make_node(f"n{i}") for i in range(3)]
    service, other = make_service("s"), make_service("o")
    existing = [
        make_task("s-old", service, node_id="n0", state="running"),
        make_task("o-1", other, node_id="n1", state="running"),
        make_task("o-2", other, node_id="n1", state="running"),
        make_task("o-3", other, node_id="n2", state="running"),
    ]
    decisions = run(nodes, [service, other], tasks_of(service, 3), existing=existing)
    # n2 (0 of s, 1 in total), n1 (0 of s, 2 in total), then n0 and n2 tie at one each: n0 by ID.
    assert decisions.assignments == {"t001": "n2", "t002": "n1", "t003": "n0"}


def test_drained_nodes_get_nothing_and_spread_continues_on_the_rest() -> None:
    nodes = [make_node("n0"), make_node("n1", availability="drain"), make_node("n2")]
    service = make_service("s")
    decisions = run(nodes, [service], tasks_of(service, 4))
    assert per_node(decisions) == {"n0": 2, "n2": 2}


# ---- placement preferences -----------------------------------------------------------------------


def zoned(*zones: str | None) -> list[StoredObject]:
    return [
        make_node(f"n{i}", labels={} if zone is None else {"zone": zone}) for i, zone in enumerate(zones)
    ]


def zones_of(decisions: Decisions, nodes: Sequence[StoredObject]) -> Counter[str]:
    zone = {n.id: n.spec["Labels"].get("zone", "-") for n in nodes}
    return Counter(zone[n] for n in decisions.assignments.values())


def test_preference_balances_label_values_before_nodes() -> None:
    nodes = zoned("a", "a", "a", "a", "b")  # zone b has one node, zone a four
    service = make_service("s", task_template(preferences=["node.labels.zone"]))
    decisions = run(nodes, [service], tasks_of(service, 4))
    assert zones_of(decisions, nodes) == {"a": 2, "b": 2}
    assert per_node(decisions)["n4"] == 2  # the lone b node takes half


def test_nodes_without_the_label_form_their_own_group() -> None:
    nodes = zoned("a", "b", None, None)
    service = make_service("s", task_template(preferences=["node.labels.zone"]))
    decisions = run(nodes, [service], tasks_of(service, 6))
    assert zones_of(decisions, nodes) == {"a": 2, "b": 2, "-": 2}


def test_existing_tasks_count_towards_their_branch() -> None:
    nodes = zoned("a", "b", "c")
    service = make_service("s", task_template(preferences=["node.labels.zone"]))
    existing = [make_task(f"old{i}", service, node_id="n0", state="running") for i in range(2)]
    decisions = run(nodes, [service], tasks_of(service, 4), existing=existing)
    assert zones_of(decisions, nodes) == {"b": 2, "c": 2}


def test_tasks_on_ineligible_nodes_still_count_for_their_branch() -> None:
    # As swarmkit's decision tree: zone a has 2 tasks on a drained node; the even-out target is
    # computed over every node's tasks, so zone b gets the two new ones, not one each.
    nodes = [
        make_node("a1", labels={"zone": "a"}, availability="drain"),
        make_node("a2", labels={"zone": "a"}),
        make_node("b1", labels={"zone": "b"}),
    ]
    service = make_service("s", task_template(preferences=["node.labels.zone"]))
    existing = [make_task(f"old{i}", service, node_id="a1", state="running") for i in range(2)]
    decisions = run(nodes, [service], tasks_of(service, 2), existing=existing)
    assert per_node(decisions) == {"b1": 2}


def test_a_full_branch_leaves_its_share_to_the_others() -> None:
    nodes = [
        make_node("a1", labels={"zone": "a"}, cpus=1),
        make_node("b1", labels={"zone": "b"}, cpus=8),
        make_node("b2", labels={"zone": "b"}, cpus=8),
    ]
    service = make_service("s", task_template(cpus=1, preferences=["node.labels.zone"]))
    decisions = run(nodes, [service], tasks_of(service, 6))
    assert per_node(decisions) == {"a1": 1, "b1": 3, "b2": 2}


def test_preferences_are_hierarchical() -> None:
    nodes = [
        make_node(f"{dc}{rack}{i}", labels={"dc": dc, "rack": rack})
        for dc, racks in (("east", "xy"), ("west", "z"))
        for rack in racks
        for i in range(2)
    ]
    service = make_service("s", task_template(preferences=["node.labels.dc", "node.labels.rack"]))
    decisions = run(nodes, [service], tasks_of(service, 8))
    by_dc = Counter(n[:4] for n in decisions.assignments.values())
    by_rack = Counter(n[:5] for n in decisions.assignments.values())
    assert by_dc == {"east": 4, "west": 4}  # the datacenters first...
    assert by_rack == {"eastx": 2, "easty": 2, "westz": 4}  # ...then racks within each
    assert set(per_node(decisions).values()) == {1, 2}


def test_engine_label_preferences_and_unknown_descriptors() -> None:
    nodes = [make_node(f"n{i}", engine_labels={"zone": "ab"[i % 2]}) for i in range(4)]
    service = make_service("s", task_template(preferences=["engine.labels.zone", "bogus.thing"]))
    decisions = run(nodes, [service], tasks_of(service, 2))
    assert sorted(decisions.assignments.values()) == ["n0", "n1"]  # one per engine zone


# ---- batches -------------------------------------------------------------------------------------


def test_later_groups_see_earlier_decisions_in_the_same_batch() -> None:
    nodes = [make_node("n0", cpus=2), make_node("n1", cpus=2)]
    first = make_service("a", task_template(cpus=1))
    second = make_service("b", task_template(cpus=1.5))
    pending = [*tasks_of(first, 2, "a"), *tasks_of(second, 2, "b")]
    decisions = run(nodes, [first, second], pending)
    assert per_node(decisions) == {"n0": 1, "n1": 1}  # service a: one per node, half of each left
    assert decisions.assignments.keys() == {"a001", "a002"}
    assert decisions.still_pending["b001"].err == "no suitable node (insufficient resources on 2 nodes)"


def test_one_group_per_service_and_spec_version() -> None:
    nodes = [make_node("n0")]
    service = make_service("s", task_template(max_replicas=1))
    old = make_task("t1", service, slot=1, spec_version=1)
    new = make_task("t2", service, slot=2, spec_version=2)
    decisions = run(nodes, [service], [new, old])
    assert decisions.assignments == {"t1": "n0"}  # version 1 goes first, version 2 sees it
    assert decisions.still_pending["t2"].err == "no suitable node (max replicas per node limit exceed)"


def test_preassigned_tasks_are_checked_on_their_node_only() -> None:
    nodes = [make_node("n0"), make_node("n1", availability="drain"), make_node("n2", cpus=1)]
    glob = make_service("g", task_template(cpus=2))
    pending = [make_task(f"g-{n.id}", glob, node_id=n.id, slot=0) for n in nodes]
    pending.append(make_task("g-gone", glob, node_id="gone", slot=0))
    decisions = run(nodes, [glob], pending)
    assert decisions.assignments == {"g-n0": "n0"}
    assert decisions.still_pending == {
        "g-n1": Pending("pending task scheduling", "1 node not available for new tasks"),
        "g-n2": Pending("pending task scheduling", "insufficient resources on 1 node"),
    }  # swarmkit's bare explanation for a pre-assigned task; the task on a gone node is left alone


def test_only_pending_tasks_meant_to_run_are_scheduled() -> None:
    nodes = [make_node("n0")]
    service = make_service("s")
    running = make_task("run", service, node_id="n0", state="running")
    unwanted = make_task("stop", service, desired="shutdown")
    job = make_task("job", service, desired="complete")
    decisions = run(nodes, [service], [running, unwanted, job])
    assert decisions.assignments == {"job": "n0"}
    assert decisions.still_pending == {}


def test_same_input_same_placement_whatever_the_order() -> None:
    rng = random.Random(7)
    nodes = [
        make_node(f"n{i:02}", labels={"zone": "abc"[i % 3]}, cpus=rng.choice([1, 2, 4])) for i in range(12)
    ]
    services = [
        make_service("p", task_template(cpus=0.5, preferences=["node.labels.zone"])),
        make_service("q", task_template(max_replicas=2)),
        make_service("r", task_template(constraints=["node.labels.zone!=a"])),
    ]
    pending = [t for s in services for t in tasks_of(s, 15, s.id)]
    first = run(nodes, services, pending)
    for seed in range(3):
        shuffled_nodes, shuffled_tasks = nodes[:], pending[:]
        random.Random(seed).shuffle(shuffled_nodes)
        random.Random(seed).shuffle(shuffled_tasks)
        assert run(shuffled_nodes, services, shuffled_tasks) == first


# ---- inputs from a store, decisions as ops --------------------------------------------------------


def create(obj: StoredObject) -> Create:
    spec, status, extra = (copy.deepcopy(part) for part in (obj.spec, obj.status, obj.extra))
    return Create(obj.kind, obj.id, spec, status, extra)


def test_schedule_reads_a_store_view_and_returns_ops() -> None:
    store = Store()
    service = make_service("s", task_template(max_replicas=1), replicas=2)
    node = make_node("n0")
    tasks = tasks_of(service, 2)
    ops = [
        create(node),
        Create("service", service.id, copy.deepcopy(service.spec)),
        *(create(t) for t in tasks),
    ]
    assert store.apply(1, encode_batch(ops, now="2026-11-28T00:00:00Z")).ok
    view = StoreView(store)  # what the component template hands a reconcile
    stored = view.find("task")
    decisions = schedule(view, stored)
    assert decisions.assignments == {"t001": "n0"}
    updates = decision_ops(stored, decisions, "2026-11-28T00:00:01Z")
    assert [(u.id, u.version) for u in updates] == [("t001", 1), ("t002", 1)]
    assert updates[0].status == {
        "State": "assigned", "Timestamp": "2026-11-28T00:00:01Z", "Message": ASSIGNED_MESSAGE,
    }  # fmt: skip
    assert updates[0].extra is not None and updates[0].extra["NodeID"] == "n0"
    assert updates[1].extra is None and updates[1].status is not None
    assert updates[1].status["Err"] == "no suitable node (max replicas per node limit exceed)"
    assert store.apply(2, encode_batch(updates, now="2026-11-28T00:00:01Z")).ok
    # Nothing changed: the still-pending task already shows its Err, so no write at all.
    again = view.find("task")
    assert decision_ops(again, schedule(view, again), "2026-11-28T00:00:02Z") == []


def test_confirmed_preassigned_task_gets_swarmkits_message() -> None:
    node = make_node("n0")
    glob = make_service("g")
    task = make_task("g1", glob, node_id="n0", slot=0)
    (update,) = decision_ops([task], run([node], [glob], [task]), "2026-11-28T00:00:01Z")
    assert update.status is not None and update.status["Message"] == PREASSIGNED_MESSAGE
