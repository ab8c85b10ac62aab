"""Node liveness on virtual time: the real component, in the simulator's harness, on the real store.

A leader manager and four workers; the workers beat at the period the Cluster spec states (one of
them exactly on the period, the others late by a seeded jitter). Worker ``w1`` stops at virtual
t = 10 s and must be shown Down at exactly 10 s plus the grace the Cluster spec states
(Spec.Dispatcher.HeartbeatPeriod times the grace multiplier), in every run of a seed; a write to
the Cluster spec changes that grace.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from manager.component import SimHarness, run_now
from manager.component.harness import DirectProposer
from manager.dispatcher.liveness import GRACE_MULTIPLIER, NodeLiveness
from manager.runtime import running_cluster_spec
from manager.state.raft.config import RaftConfig
from manager.state.store import Create, Store, Update
from nodeagent.sim import Simulator

LEADER = "m" * 25
WORKERS = [f"w{i}".ljust(25, "x") for i in range(1, 5)]
STOPPED = WORKERS[0]
STOP_AT = 10.0


class Run:
    """One simulated cluster: a store, the liveness component in its harness, beating agents."""

    def __init__(self, seed: int, *, period_change: tuple[float, float] | None = None) -> None:
        self.sim = Simulator(seed)
        self.store = Store()
        self.write = DirectProposer(self.store, self.sim.clock)
        spec = running_cluster_spec(RaftConfig.default(), 0.5)
        nodes = [(LEADER, "manager"), *((w, "worker") for w in WORKERS)]
        ops: list[Any] = [Create("cluster", "c" * 25, spec, {}, {})]
        for node_id, role in nodes:
            node_spec = {"Name": "", "Role": role, "Availability": "active", "Labels": {}}
            ops.append(Create("node", node_id, node_spec, {"State": "ready", "Addr": "10.0.0.1"}, {}))
        run_now(self.write(ops))
        self.liveness = NodeLiveness(LEADER)
        self.harness = SimHarness(self.liveness, self.sim, self.store, self.write)
        self.states: list[tuple[float, str, str]] = []  # (virtual time, node, new state)
        self._last: dict[str, str] = {}
        self._watch = self.store.watch(["node"], on_change=self._observe)
        self.jitter = self.sim.fork_rng("jitter")
        if period_change is not None:
            self.sim.call_at(period_change[0], self._set_period, period_change[1])

    def _observe(self) -> None:
        for change in self._watch.poll():
            state = str(change.object.status.get("State"))
            if self._last.get(change.object.id) != state:
                self._last[change.object.id] = state
                self.states.append((self.sim.now, change.object.id, state))

    def period(self) -> float:
        """What the dispatcher tells agents: the Cluster spec's period."""
        from manager.component import StoreView

        return self.liveness.period(StoreView(self.store))

    def _set_period(self, seconds: float) -> None:
        cluster = self.store.find("cluster")[0]
        spec = copy.deepcopy(cluster.spec)
        spec["Dispatcher"]["HeartbeatPeriod"] = round(seconds * 1e9)
        run_now(self.write([Update("cluster", cluster.id, cluster.version, spec=spec)]))

    def _beat(self, node_id: str) -> None:
        now = self.sim.now
        self.liveness.heartbeat(node_id, now, "10.0.0.1", period=self.period())
        late = 0.0 if node_id == STOPPED else self.jitter.uniform(0.0, 0.05)
        if node_id == STOPPED and now >= STOP_AT:
            return  # w1's agent stops: this was its last heartbeat
        self.sim.call_later(self.period() + late, self._beat, node_id)

    def run(self, until: float) -> None:
        self.harness.run()
        for node_id in [LEADER, *WORKERS]:
            self._beat(node_id)
        self.sim.run_until(until)
        self.harness.stop()

    def down_at(self, node_id: str) -> list[float]:
        return [t for t, n, s in self.states if n == node_id and s == "down"]


def grace_of(store: Store) -> float:
    ns = store.find("cluster")[0].spec["Dispatcher"]["HeartbeatPeriod"]
    return float(ns) / 1e9 * GRACE_MULTIPLIER


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_silent_worker_is_down_exactly_one_grace_after_its_last_heartbeat(seed: int) -> None:
    run = Run(seed)
    run.run(until=20.0)
    grace = grace_of(run.store)
    assert grace == 1.5  # the default spec: 0.5 s period, multiplier 3
    assert run.down_at(STOPPED) == [STOP_AT + grace]  # exactly 11.5 s, and only once
    assert all(not run.down_at(w) for w in WORKERS[1:])  # late by up to 50 ms is not dead
    node = run.store.get("node", STOPPED)
    assert node.status["State"] == "down" and node.status["Message"] == "heartbeat failure"
    # Same seed, same run: the same transitions at the same virtual times, the same store.
    again = Run(seed)
    again.run(until=20.0)
    assert again.states == run.states
    assert again.store.snapshot() == run.store.snapshot()


def test_a_write_to_the_cluster_spec_changes_the_grace() -> None:
    run = Run(3, period_change=(5.0, 1.0))
    run.run(until=20.0)
    grace = grace_of(run.store)
    assert grace == 3.0  # HeartbeatPeriod 1 s now
    assert run.down_at(STOPPED) == [STOP_AT + grace]  # 13 s: the new grace, not the old 1.5 s
    assert all(not run.down_at(w) for w in WORKERS[1:])


def test_a_heartbeat_brings_a_down_node_back() -> None:
    run = Run(5)
    run.sim.call_at(15.0, run._beat, STOPPED)  # w1's agent beats once more at 15 s
    run.run(until=16.0)
    assert run.down_at(STOPPED) == [11.5]
    ups = [t for t, n, s in run.states if n == STOPPED and s == "ready"]
    assert ups == [15.0]  # marked ready at the instant of the heartbeat
