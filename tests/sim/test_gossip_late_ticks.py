"""Nodes whose loop wakes a little after each deadline, as a real shell's asyncio loop does.

The simulator's shell ticks each core exactly at its deadline; a real one (nodeagent.gossip.shell)
runs the tick some microseconds to milliseconds later and reads a shared clock that is wall time
(an offset of about 1.8e9 s). The core used to count the next probe tick from the late moment, so
every tick sat out a slot: each node probed every other slot, and with n - 1 even only half its
peers. In a five-node compose cluster whose nodes started at different times, a worker restarted
and then killed was probed by nobody and never suspected (docs/gossip.md). These runs stagger
the nodes' starts as compose does, and wake every node ``WAKE_DELAY`` late.
"""

from __future__ import annotations

from collections import Counter

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberEvent, MemberState, UserMessage
from nodeagent.gossip.messages import Compound, Ping
from nodeagent.gossip.simcluster import GossipCluster

WAKE_DELAY = 0.001
WALL_OFFSET = 1_800_000_000.37
N = 5
VICTIM = "node-5"


def _staggered_cluster(seed: int) -> GossipCluster:
    cfg = GossipConfig.default()
    cluster = GossipCluster(N, seed, cfg, wake_delay=WAKE_DELAY, clock_offset=WALL_OFFSET)
    rng = cluster.sim.fork_rng("test")
    for i in range(2, N + 1):
        cluster.crash(f"node-{i}")
    for i in range(2, N + 1):  # compose starts the containers one after another
        cluster.run_for(rng.uniform(0.2, 0.9))
        cluster.restart(f"node-{i}", seeds=["node-1"])
    cluster.run_for(8.0)
    assert cluster.converged()
    return cluster


@pytest.mark.parametrize("seed", range(1, 61))
def test_a_node_restarted_then_killed_is_suspected_and_declared_dead(seed: int) -> None:
    # The compose incident: the worker is restarted (it leaves, the new process joins through the
    # three managers at once), then killed 15 s later. With the old tick rule 6 of these 60 seeds
    # never suspected it.
    cluster = _staggered_cluster(seed)
    rng = cluster.sim.fork_rng("test/restart")
    cluster.leave(VICTIM)
    cluster.run_for(1.0)
    cluster.crash(VICTIM)
    cluster.run_for(rng.uniform(0.5, 0.8))
    cluster.restart(VICTIM, seeds=["node-1", "node-2", "node-3"])
    cluster.run_for(15.0)
    assert cluster.converged()
    cluster.crash(VICTIM)
    crashed_at = cluster.sim.now
    suspected: list[float] = []

    def observe(now: float, observer: str, event: MemberEvent | UserMessage) -> None:
        if isinstance(event, MemberEvent) and event.name == VICTIM and event.state is MemberState.SUSPECT:
            suspected.append(now)

    cluster.observers.append(observe)
    cluster.run_for(3.0)
    # Probed within about one interval of the crash, suspected one interval later (plus the wake delays).
    assert suspected and suspected[0] - crashed_at < 2 * cluster.config.probe_interval + 0.05
    for observer in sorted(set(cluster.nodes) - {VICTIM}):
        assert cluster.view(observer)[VICTIM] is MemberState.DEAD, observer


@pytest.mark.parametrize("seed", range(1, 9))
def test_late_ticks_still_probe_every_member_once_per_slot(seed: int) -> None:
    cluster = _staggered_cluster(seed)
    interval = cluster.config.probe_interval
    names = {node.address: name for name, node in cluster.nodes.items()}
    by_prober: dict[str, list[str]] = {}

    def on_deliver(now: float, sender: str, receiver: str, message: object, reliable: bool) -> None:
        parts = message.parts if isinstance(message, Compound) else (message,)
        for part in parts:
            if isinstance(part, Ping) and not reliable:
                by_prober.setdefault(names[sender], []).append(part.target)

    cluster.delivery_observers.append(on_deliver)
    rounds = 6
    cluster.run_for(rounds * (N - 1) * interval)
    assert sorted(by_prober) == sorted(cluster.nodes)
    for prober, targets in by_prober.items():
        # One probe per slot (no slot sat out), and every other member as often as any other.
        assert abs(len(targets) - rounds * (N - 1)) <= 1, prober
        counts = Counter(targets)
        assert set(counts) == set(cluster.nodes) - {prober}, (prober, counts)
        assert max(counts.values()) - min(counts.values()) <= 1, (prober, counts)
