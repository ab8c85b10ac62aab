"""Node liveness's pure decision, the Cluster spec's timing, and the manager's apply path."""

from __future__ import annotations

import logging
from typing import Any

import prometheus_client
import pytest

from manager.dispatcher.liveness import GRACE_MULTIPLIER, Beat, NodeLiveness, decide, heartbeat_period
from manager.runtime import running_cluster_spec
from manager.state.machine import StoreMachine
from manager.state.raft.config import RaftConfig
from manager.state.store import Create, Store, StoredObject, encode_batch

T0 = "2026-11-29T00:00:00Z"


def node(
    node_id: str, state: str = "ready", *, manager: bool = False, addr: str = "10.0.0.2", message: str = ""
) -> StoredObject:
    store = Store()
    extra: dict[str, Any] = {}
    if manager:
        extra["ManagerStatus"] = {"Leader": False, "Reachability": "reachable", "Addr": f"{addr}:2377"}
    spec = {"Name": "", "Role": "manager" if manager else "worker", "Availability": "active", "Labels": {}}
    op = Create("node", node_id, spec, {"State": state, "Message": message, "Addr": addr}, extra)
    store.apply(1, encode_batch([op], now=T0))
    return store.get("node", node_id)


def run(nodes: list[StoredObject], now: float, beats: dict[str, Beat], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "self_id": "leader",
        "grace": 1.5,
        "leader_since": 0.0,
        "gone": frozenset(),
        "contacts": {},
        "reach_window": 0.8,
    }
    args.update(kw)
    return decide(nodes, now=now, beats=beats, **args)


@pytest.mark.parametrize(
    ("now", "down"),
    [(11.499, False), (11.5, True), (12.0, True)],
)
def test_a_node_is_down_once_its_grace_has_run_out(now: float, down: bool) -> None:
    ops, wake = run([node("w1")], now, {"w1": Beat(10.0)})
    assert bool(ops) == down
    if down:
        assert ops[0].status == {"State": "down", "Message": "heartbeat failure", "Addr": "10.0.0.2"}
        assert wake is None
    else:
        assert wake == 11.5  # asks to be woken exactly when the grace runs out


UNKNOWN = {"State": "unknown", "Message": 'Node moved to "unknown" state due to leadership change in cluster',
           "Addr": "10.0.0.2"}


def test_a_new_leader_moves_the_nodes_it_has_not_heard_from_to_unknown() -> None:
    # swarmkit's markNodesUnknown: the sessions were with the old leader. The node has twice
    # the usual grace (2 x 1.5 s) from the leadership's start to find the new leader.
    ops, wake = run([node("w1")], 20.0, {"w1": Beat(1.0)}, leader_since=19.0)
    assert [o.status for o in ops] == [UNKNOWN] and wake == 22.0
    unknown = node("w1", "unknown", message=UNKNOWN["Message"])
    assert run([unknown], 21.9, {"w1": Beat(1.0)}, leader_since=19.0) == ([], 22.0)  # nothing more to write
    ops, _ = run([unknown], 21.0, {"w1": Beat(20.8)}, leader_since=19.0)  # it found the new leader
    assert [o.status for o in ops] == [{"State": "ready", "Message": "", "Addr": "10.0.0.2"}]
    ops, _ = run([unknown], 23.0, {"w1": Beat(20.8)}, leader_since=19.0)  # it beat once, then fell silent
    assert [o.status["State"] for o in ops] == ["down"] and ops[0].status["Message"] == "heartbeat failure"
    ops, wake = run([unknown], 22.0, {"w1": Beat(1.0)}, leader_since=19.0)  # it never did
    assert [o.status for o in ops] == [
        {"State": "down", "Message": 'heartbeat failure for node in "unknown" state', "Addr": "10.0.0.2"}]
    assert wake is None


def test_a_new_leader_leaves_down_nodes_down_and_gossip_still_downs_at_once() -> None:
    ops, wake = run([node("w1", "down")], 20.0, {}, leader_since=19.0)  # never resurrected without a beat
    assert ops == [] and wake is None
    ops, _ = run([node("w1")], 20.0, {}, leader_since=19.0, gone=frozenset({"w1"}))
    assert [o.status["State"] for o in ops] == ["down"] and ops[0].status["Message"] == "heartbeat failure"


def test_a_heartbeat_makes_a_node_ready_at_its_new_address() -> None:
    ops, _ = run([node("w1", "down")], 5.0, {"w1": Beat(4.9, "10.0.0.9")})
    assert ops[0].status == {"State": "ready", "Message": "", "Addr": "10.0.0.9"}


def test_gossip_dead_is_down_at_once_and_the_leader_never_is() -> None:
    nodes = [node("w1"), node("leader", manager=True)]
    ops, _ = run(nodes, 5.0, {"w1": Beat(4.9)}, gone=frozenset({"w1", "leader"}))
    assert [(o.id, o.status and o.status["State"]) for o in ops] == [("w1", "down"), ("leader", None)]
    assert ops[1].extra["ManagerStatus"]["Leader"] is True  # only ManagerStatus changes for the leader


def test_managers_are_reachable_while_raft_hears_from_them() -> None:
    m2 = node("m2", "down", manager=True)  # its session is gone; Raft still hears from it
    ops, wake = run([m2], 5.0, {}, contacts={"m2": 4.5})
    assert ops == [] and wake == 5.3  # reachable until 4.5 + 0.8
    ops, _ = run([m2], 5.3, {}, contacts={"m2": 4.5})
    assert ops[0].extra["ManagerStatus"]["Reachability"] == "unreachable"


def test_the_grace_is_the_cluster_specs_heartbeat_period_times_the_multiplier() -> None:
    store = Store()
    spec = running_cluster_spec(RaftConfig.default(), 0.25)
    store.apply(1, encode_batch([Create("cluster", "c1", spec)], now=T0))
    cluster = store.get("cluster", "c1")
    assert heartbeat_period(cluster, 9.0) == 0.25
    assert heartbeat_period(None, 9.0) == 9.0
    from manager.component import StoreView

    assert NodeLiveness("leader").grace(StoreView(store)) == 0.25 * GRACE_MULTIPLIER


def test_the_cluster_spec_states_the_timing_that_runs() -> None:
    raft = RaftConfig.default().scaled(2.0)
    spec = running_cluster_spec(raft, 1.0)
    assert spec["Raft"]["ElectionTick"] == raft.election_ticks == 8
    assert spec["Raft"]["HeartbeatTick"] == raft.heartbeat_ticks == 2
    assert spec["Raft"]["SnapshotInterval"] == raft.snapshot_every
    assert spec["Raft"]["LogEntriesForSlowFollowers"] == raft.keep_after_snapshot
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 1_000_000_000  # nanoseconds, as Docker


def test_a_failing_watcher_never_fails_a_committed_write(caplog: pytest.LogCaptureFixture) -> None:
    registry = prometheus_client.CollectorRegistry()
    store = Store()
    machine = StoreMachine(store, registry)

    def broken() -> None:
        raise RuntimeError("watcher bug")

    store.watch(["node"], on_change=broken)
    told: list[int] = []
    store.watch(["node"], on_change=lambda: told.append(store.applied_index))
    spec = {"Name": "", "Role": "worker", "Availability": "active", "Labels": {}}
    with caplog.at_level(logging.ERROR, logger="manager.state.machine"):
        result = machine.apply(1, encode_batch([Create("node", "n1", spec)], now=T0))
    assert result.ok and store.get("node", "n1").version == 1  # the proposer hears success
    assert told == [1]
    assert registry.get_sample_value("swarmlet_store_watch_errors_total") == 1.0
    assert "watcher bug" in caplog.text
