"""The global orchestrator follows its nodes: joins, Down, drain, pause, labels and constraints."""

from __future__ import annotations

import itertools
import random

from _orch import World

from manager.orchestrator import GlobalOrchestrator
from manager.scheduler.build import make_node
from manager.state.store import Create
from manager.state.store.objects import thaw

_SEEDS = itertools.count(1)  # a fresh orchestrator per pass must not repeat IDs


def orch() -> GlobalOrchestrator:
    return GlobalOrchestrator(random.Random(next(_SEEDS)))


def nodes_of(w: World, sid: str) -> list[str]:
    return sorted(str(t.extra.get("NodeID")) for t in w.live(sid))


def test_one_task_per_ready_active_node_with_its_node_set() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}})
    w.run(orch())
    assert nodes_of(w, sid) == ["n1", "n2", "n3"]
    for t in w.tasks(sid):
        assert "Slot" not in t.extra
        assert t.extra["Annotations"] == {"Name": f"agent.{t.extra['NodeID']}.{t.id}"}
    w.run(orch())
    assert len(w.tasks(sid)) == 3


def test_follows_nodes_joining_leaving_draining_and_pausing() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}})
    w.run(orch())
    node = make_node("n4")
    w.apply([Create("node", "n4", thaw(node.spec), thaw(node.status), thaw(node.extra))])
    w.set_node("n1", state="down")
    w.set_node("n2", availability="drain")
    w.set_node("n3", availability="pause")
    w.run(orch())
    assert nodes_of(w, sid) == ["n3", "n4"]  # paused keeps its task; Down and drained lose theirs
    shut = {str(t.extra["NodeID"]) for t in w.tasks(sid) if t.extra["DesiredState"] == "shutdown"}
    assert shut == {"n1", "n2"}
    w.delete("node", "n4")
    w.set_node("n2", availability="active")
    w.run(orch())
    assert nodes_of(w, sid) == ["n2", "n3"]
    # The removed node's task is deleted (swarmkit's deleteTask on EventDeleteNode), so its last
    # reported state is counted nowhere; the Down node's task is kept, shut down.
    on = {str(t.extra["NodeID"]) for t in w.tasks(sid)}
    assert "n4" not in on and "n1" in on


def test_follows_labels_through_the_constraints() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}}, constraints=["node.labels.disk==ssd"])
    w.run(orch())
    assert nodes_of(w, sid) == []
    w.set_node("n2", labels={"disk": "ssd"})
    w.set_node("n3", labels={"disk": "ssd"})
    w.run(orch())
    assert nodes_of(w, sid) == ["n2", "n3"]
    w.set_node("n2", labels={})
    w.run(orch())
    assert nodes_of(w, sid) == ["n3"]


def test_a_stopped_task_restarts_on_its_own_node() -> None:
    w = World()
    sid = w.service("agent", mode={"Global": {}}, restart={"Condition": "any", "Delay": 0})
    w.run(orch())
    (on_n1,) = [t for t in w.tasks(sid) if t.extra["NodeID"] == "n1"]
    w.set_task(on_n1.id, state="failed")
    w.run(orch())
    assert nodes_of(w, sid) == ["n1", "n2", "n3"]
    assert w.store.get("task", on_n1.id).extra["DesiredState"] == "shutdown"
