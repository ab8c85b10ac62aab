"""The web view's picture and timeline sentences, from store objects (no server, no cluster)."""

from __future__ import annotations

import dataclasses

from manager.scheduler.build import GIB, make_node, make_service, make_task, task_template
from manager.state.store.objects import StoredObject, freeze
from manager.state.store.watch import Change
from manager.web.model import ChangeDescriber, Facts, cluster_state, fault_changes, fault_text, node_colour


def _manager(node_id: str, hostname: str) -> StoredObject:
    node = make_node(node_id, hostname=hostname, role="manager")
    extra = dict(node.extra)
    extra["ManagerStatus"] = {"Reachability": "reachable", "Addr": "10.0.0.1:2377"}
    return dataclasses.replace(node, extra=freeze(extra))


def test_node_colours_say_what_a_user_acts_on() -> None:
    assert node_colour("ready", "active") == "ready"
    assert node_colour("ready", "drain") == "drain"
    assert node_colour("ready", "pause") == "drain"
    assert node_colour("down", "drain") == "down"  # down wins: the node is gone
    assert node_colour("disconnected", "active") == "down"
    assert node_colour("unknown", "active") == "unknown"


def test_the_picture_has_a_column_per_node_managers_first_and_the_leader_marked() -> None:
    nodes = [make_node("w1", hostname="worker1"), make_node("w2", hostname="worker2", state="down"),
             _manager("m2", "manager2"), _manager("m1", "manager1")]  # fmt: skip
    service = make_service("s1", task_template(), name="web")
    tasks = [make_task("t1", service, slot=1, node_id="w1", state="running"),
             make_task("t2", service, slot=2, node_id="w1", state="shutdown")]  # fmt: skip
    facts = Facts(self_id="m1", self_hostname="manager1", raft_role="leader", leader_id="m1", term=4,
                  gossip={"w1": "alive", "w2": "dead", "m2": "alive"},
                  views={"w1": {"ok": True, "members": {"m1": "alive", "w2": "suspect"}, "health": 0,
                                "faults": []},
                         "w2": {"ok": False, "error": "10.0.0.3:7946 does not answer"}})  # fmt: skip
    state = cluster_state(nodes, tasks, {service.id: service}, facts)

    assert [n["hostname"] for n in state["nodes"]] == ["manager1", "manager2", "worker1", "worker2"]
    assert state["leader"] == {"id": "m1", "hostname": "manager1"} and state["term"] == 4
    by_name = {n["hostname"]: n for n in state["nodes"]}
    assert [n["hostname"] for n in state["nodes"] if n["leader"]] == ["manager1"]
    assert by_name["worker2"]["colour"] == "down" and by_name["worker2"]["gossip"] == "dead"
    # Only live tasks are drawn; the shut-down one is the timeline's.
    assert [t["name"] for t in by_name["worker1"]["tasks"]] == ["web.1"]
    assert by_name["worker1"]["view"]["members"] == [
        {"id": "m1", "hostname": "manager1", "state": "alive"},
        {"id": "w2", "hostname": "worker2", "state": "suspect"},
    ]
    assert not by_name["worker2"]["view"]["ok"] and "does not answer" in by_name["worker2"]["view"]["error"]
    # The serving manager's own view comes from its gossip, not from a fetch.
    assert {m["hostname"]: m["state"] for m in by_name["manager1"]["view"]["members"]} == {
        "worker1": "alive", "worker2": "dead", "manager2": "alive"}


def test_a_pending_task_carries_swarms_reason_and_the_explanation_per_node() -> None:
    nodes = [make_node("w1", hostname="worker1", memory=GIB),
             make_node("w2", hostname="worker2", availability="drain")]
    service = make_service("s1", task_template(memory=2 * GIB), name="big")
    task = make_task("t1", service)
    facts = Facts(self_id="m1", self_hostname="manager1", raft_role="follower", leader_id="", term=2)
    state = cluster_state(nodes, [task], {service.id: service}, facts)

    assert state["leader"] is None
    [pending] = state["pending"]
    assert pending["name"] == "big.1"
    assert pending["err"].startswith("no suitable node")
    reasons = {r["hostname"]: r for r in pending["explain"]}
    assert not reasons["worker1"]["fits"] and "memory" in reasons["worker1"]["reasons"][0]
    assert reasons["worker2"]["reasons"] == ["node availability is drain"]
    assert reasons["worker2"]["fixes"] == ["docker node update --availability active worker2"]


def test_the_timeline_tells_transitions_once_and_skips_noise() -> None:
    describer = ChangeDescriber()
    worker = make_node("w1", hostname="worker1")
    describer.prime([worker])
    service = make_service("s1", task_template(), name="web")

    def change(action: str, obj: StoredObject, index: int = 1) -> list[str]:
        return [e.text for e in describer.describe(Change(index, action, obj.kind, obj))]

    assert change("create", service) == ["service web created"]
    assert change("update", worker) == []  # a heartbeat's rewrite: nothing a user sees
    down = dataclasses.replace(worker, status=freeze({"State": "down", "Message": "heartbeat failure"}))
    assert change("update", down) == ["worker1 is down (heartbeat failure)"]
    assert change("update", down) == []
    assert change("update", worker) == ["worker1 is ready"]
    drained = dataclasses.replace(worker, spec=freeze({**worker.spec, "Availability": "drain"}))
    assert change("update", drained) == ["worker1 availability drain"]

    assert change("create", make_task("t1", service)) == ["task web.1 pending"]
    assert change("update", make_task("t1", service, node_id="w1", state="assigned")) == [
        "task web.1 assigned on worker1"]
    assert change("update", make_task("t1", service, node_id="w1", state="preparing")) == []  # a step
    assert change("update", make_task("t1", service, node_id="w1", state="running")) == [
        "task web.1 running on worker1"]
    assert change("remove", drained) == ["worker1 removed from the swarm"]
    assert change("create", make_node("m2", hostname="manager2", role="manager")) == [
        "manager2 joined as a manager"]


NAMES = {"id2": "manager2", "10.0.0.3": "manager2", "10.0.0.3:7946": "manager2", "id5": "worker2"}


def test_a_rule_is_told_in_swarmlet_chaos_words_with_its_peers_by_hostname() -> None:
    cut = {"peers": ["manager2", "10.0.0.3:7946", "10.0.0.3"], "partition": True}
    assert fault_text(cut, NAMES) == "cut from manager2"
    slow = {"peers": [], "delay": 0.2, "drop": 0.1, "duplicate": 0.0, "partition": False}
    assert fault_text(slow, NAMES) == "delay 200ms, loss 10% to every peer"


def test_changed_faults_become_timeline_events_and_the_first_look_tells_nothing() -> None:
    cut = {"peers": ["manager2", "10.0.0.3"], "partition": True}
    before = {"id5": {"ok": True, "faults": []}}
    after = {"id5": {"ok": True, "faults": [cut]}}
    [event] = fault_changes(before, after, NAMES)
    assert (event.kind, event.text, event.node, event.level) == \
        ("fault", "worker2: cut from manager2", "id5", "warn")
    [healed] = fault_changes(after, before, NAMES)
    assert healed.text == "worker2: links healed"
    assert fault_changes({}, after, NAMES) == []  # nothing known before: no change to tell
    assert fault_changes(after, {"id5": {"ok": False, "error": "gone"}}, NAMES) == []
