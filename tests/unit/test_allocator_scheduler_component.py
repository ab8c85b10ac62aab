"""The allocator (new -> pending) and the scheduler component (pending -> assigned, or why not)."""

from __future__ import annotations

from _orch import World

from manager.allocator import Allocator
from manager.component import StoreView
from manager.scheduler.component import SchedulerComponent


def test_the_allocator_moves_new_wanted_tasks_to_pending() -> None:
    w = World()
    sid = w.service("web")
    fresh = w.task(sid, slot=1, state="new")
    unwanted = w.task(sid, slot=2, state="new", desired="shutdown")
    w.run(Allocator(), {("task", fresh), ("task", unwanted)})
    task = w.store.get("task", fresh)
    assert (task.status["State"], task.status["Message"]) == ("pending", "pending task scheduling")
    assert w.store.get("task", unwanted).status["State"] == "new"


def test_the_scheduler_assigns_and_a_stuck_task_costs_no_write_until_a_node_frees_up() -> None:
    w = World(nodes=["n1"])
    sid = w.service("web", max_replicas=1, mode={"Replicated": {"Replicas": 2}})
    a = w.task(sid, slot=1, state="pending")
    b = w.task(sid, slot=2, state="pending")
    sched = SchedulerComponent()
    sched.start(StoreView(w.store), w.now)
    w.run(sched, {("task", a), ("task", b)})
    assert w.store.get("task", a).status["State"] == "assigned"
    assert w.store.get("task", a).extra["NodeID"] == "n1"
    stuck = w.store.get("task", b)
    assert stuck.status["Err"] == "no suitable node (max replicas per node limit exceed)"
    assert w.run(sched, {("task", b), ("scheduler", "retry")}).ops == []  # same words: no write
    w.set_task(a, state="failed", desired="shutdown")  # the node's replica ends
    w.run(sched, {("task", a), ("scheduler", "retry")})
    assert w.store.get("task", b).status["State"] == "assigned"


def test_the_scheduler_places_at_most_max_tasks_per_pass() -> None:
    w = World()
    sid = w.service("web", mode={"Replicated": {"Replicas": 5}})
    ids = [w.task(sid, slot=i, state="pending") for i in range(1, 6)]
    sched = SchedulerComponent(max_tasks=2)
    result = w.run(sched, {("task", i) for i in ids})
    assert len(result.ops) == 2 and result.next_wakeup == w.now
    w.run(sched, set())
    w.run(sched, set())
    assert all(w.store.get("task", i).status["State"] == "assigned" for i in ids)


def test_a_held_task_is_allocated_only_once_released() -> None:
    w = World()
    sid = w.service("web")
    held = w.task(sid, slot=1, state="new", desired="ready")
    w.run(Allocator(), {("task", held)})
    assert w.store.get("task", held).status["State"] == "new"
    w.set_task(held, desired="running")  # the orchestrator releases it after the delay
    w.run(Allocator(), {("task", held)})
    assert w.store.get("task", held).status["State"] == "pending"


def test_every_node_gets_an_ingress_address_and_one_on_each_network_its_tasks_use() -> None:
    from manager.allocator.networks import allocate_network, ingress_network_spec, state_from_view
    from manager.state.store import Create

    w = World(nodes=["n1", "n2"])
    for network_id, spec in (("ingress", ingress_network_spec()),
                             ("back", {"Name": "back", "Driver": "overlay", "Labels": {},
                                       "IPAM": {"Driver": "default", "Config": []}})):  # fmt: skip
        extra = allocate_network(network_id, spec, state_from_view(StoreView(w.store)))
        w.apply([Create("network", network_id, spec, {}, extra)])
    w.run(Allocator(), {("nodes", "")})

    def addresses(node: str) -> dict[str, list[str]]:
        found = w.store.get("node", node).extra.get("Attachments") or []
        return {a["Network"]["ID"]: list(a["Addresses"]) for a in found}

    # As a real Swarm: the ingress-sbox endpoint first, before any VIP (10.0.0.2 on one node).
    assert addresses("n1") == {"ingress": ["10.0.0.2/24"]} and addresses("n2") == {"ingress": ["10.0.0.3/24"]}
    sid = w.service("web")
    w.apply([Create("task", "tb", {"ContainerSpec": {"Image": "nginx"}},
                    {"State": "running", "Message": "started"},
                    {"ServiceID": sid, "DesiredState": "running", "NodeID": "n1",
                     "NetworksAttachments": [{"Network": {"ID": "back"}, "Addresses": ["10.0.1.2/24"]}]})])
    w.run(Allocator(), {("node", "n1")})
    assert addresses("n1") == {"ingress": ["10.0.0.2/24"], "back": ["10.0.1.3/24"]}  # its lb-back endpoint
    assert w.run(Allocator(), {("node", "n1")}).ops == []  # kept: no write
    w.set_task("tb", state="shutdown", desired="shutdown")
    w.run(Allocator(), {("node", "n1")})
    assert addresses("n1") == {"ingress": ["10.0.0.2/24"]}  # the node no longer carries back
