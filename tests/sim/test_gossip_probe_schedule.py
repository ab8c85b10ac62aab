"""The staggered probe schedule on simulated clusters: who probes whom, slot by slot.

With no loss there are no indirect or fallback pings, so every unreliable ``Ping`` delivered is a
direct probe, sent one link latency before it arrives; its slot is ``floor(sent / probe_interval)``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter, defaultdict

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberState
from nodeagent.gossip.messages import Compound, IndirectPing, Ping
from nodeagent.gossip.simcluster import GossipCluster, RunParams, measure
from nodeagent.sim import LinkProfile

LATENCY = 0.0005


class ProbeLog:
    """Direct probes by slot: ``slots[s]`` lists (prober, target)."""

    def __init__(self, cluster: GossipCluster) -> None:
        self.interval = cluster.config.probe_interval
        self.names = {node.address: name for name, node in cluster.nodes.items()}
        self.slots: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self.indirect = 0
        cluster.delivery_observers.append(self.on_deliver)

    def on_deliver(self, now: float, sender: str, receiver: str, message: object, reliable: bool) -> None:
        parts = message.parts if isinstance(message, Compound) else (message,)
        for part in parts:
            if isinstance(part, IndirectPing):
                self.indirect += 1
            elif isinstance(part, Ping) and not reliable:
                slot = math.floor((now - LATENCY) / self.interval + 1e-9)
                self.slots[slot].append((self.names[sender], part.target))

    def probed(self, slot: int) -> Counter[str]:
        return Counter(target for _, target in self.slots.get(slot, []))


def _slot_now(cluster: GossipCluster) -> int:
    return math.floor(cluster.sim.now / cluster.config.probe_interval)


def _assert_exactly_once(log: ProbeLog, first: int, last: int, live: list[str]) -> None:
    for slot in range(first, last):
        counts = log.probed(slot)
        assert counts == Counter(live), f"slot {slot}: {sorted(counts.items())}"


@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize(("n", "config"), [(7, "default"), (30, "default"), (64, "lan")])
def test_with_agreeing_views_every_member_is_probed_exactly_once_per_interval(
    seed: int, n: int, config: str
) -> None:
    cfg = GossipConfig.default() if config == "default" else GossipConfig.lan()
    cluster = GossipCluster(n, seed, cfg, link=LinkProfile(latency=LATENCY), converged=True)
    log = ProbeLog(cluster)
    first = _slot_now(cluster) + 1  # the first slot is only partly run
    rounds = 2 if n < 64 else 1
    cluster.run_for((rounds * (n - 1) + 2) * cfg.probe_interval)
    last = _slot_now(cluster)
    assert log.indirect == 0
    _assert_exactly_once(log, first, last, sorted(cluster.nodes))
    # And each node still visits every other member once every n - 1 slots (SWIM's round robin).
    visits: dict[str, list[str]] = defaultdict(list)
    for slot in range(first, first + n - 1):
        for prober, target in log.slots[slot]:
            visits[prober].append(target)
    for prober, targets in visits.items():
        assert sorted(targets) == sorted(set(cluster.nodes) - {prober})


@pytest.mark.parametrize("seed", range(1, 5))
def test_a_cluster_built_by_joining_settles_into_the_schedule(seed: int) -> None:
    cfg = GossipConfig.default()
    cluster = GossipCluster(12, seed, cfg, link=LinkProfile(latency=LATENCY))
    log = ProbeLog(cluster)
    cluster.run_until(5.0)
    assert cluster.converged()
    first = _slot_now(cluster) + 2
    cluster.run_for(30 * cfg.probe_interval)
    _assert_exactly_once(log, first, _slot_now(cluster), sorted(cluster.nodes))


@pytest.mark.parametrize("seed", range(1, 7))
def test_schedule_copes_with_a_member_leaving_crashing_and_rejoining_mid_round(seed: int) -> None:
    rng = random.Random(seed)
    cfg = GossipConfig.default()
    cluster = GossipCluster(20, seed, cfg, link=LinkProfile(latency=LATENCY), converged=True)
    log = ProbeLog(cluster)
    cluster.run_for(rng.uniform(1.0, 2.0))  # somewhere in the middle of a 19-slot round
    leaver, victim = rng.sample(sorted(cluster.nodes), 2)
    cluster.leave(leaver)
    cluster.run_for(rng.uniform(0.0, 0.5))
    cluster.crash(victim)
    crashed_slot = _slot_now(cluster)
    cluster.run_for(4.0)
    live = sorted(set(cluster.nodes) - {leaver, victim})
    for observer in live:
        view = cluster.view(observer)
        assert (view[leaver], view[victim]) == (MemberState.LEFT, MemberState.DEAD)
        assert all(view[name] is MemberState.ALIVE for name in live)
    # Until the views agree again some members are probed twice in a slot and some not at all.
    # The crashed node's probers each miss an ack and, by Lifeguard, sit out a few slots; they are
    # also the successive probers of the member after it in the order, which can so miss up to
    # about five slots. Nobody goes longer unprobed.
    for name in live:
        slots = [s for s in range(crashed_slot, _slot_now(cluster)) if log.probed(s)[name]]
        gaps = [b - a for a, b in zip([crashed_slot, *slots], [*slots, _slot_now(cluster)], strict=True)]
        assert max(gaps) <= 6, (name, gaps)
    # Once they agree, exactly one probe per member per slot again.
    settled = _slot_now(cluster) + 1
    cluster.run_for(25 * cfg.probe_interval)
    _assert_exactly_once(log, settled, _slot_now(cluster), live)
    # The crashed node comes back (a join, mid-round); it is scheduled like everyone else.
    cluster.restart(victim)
    cluster.run_for(3.0)
    assert cluster.view(live[0])[victim] is MemberState.ALIVE
    settled = _slot_now(cluster) + 1
    cluster.run_for(25 * cfg.probe_interval)
    _assert_exactly_once(log, settled, _slot_now(cluster), sorted([*live, victim]))


def test_a_crash_is_first_suspected_within_about_two_intervals() -> None:
    # Probed by the next slot's prober (at most interval * (1 + 2/n) later), suspected one
    # interval after that: the bound the staggered schedule adds. 30 nodes, 30 crashes.
    params = RunParams(nodes=30, seeds=30, kill=1, duration=10.0, config="default", broadcasts=0)
    figures = measure(params)
    interval = GossipConfig.default().probe_interval
    assert figures["false_positives"] == 0 and figures["undetected"] == 0
    assert figures["first_suspect_s"]["max"] <= interval * (2 + 2 / 30) + 0.01


@pytest.mark.parametrize("seed", range(1, 4))
def test_the_independent_schedule_still_detects_crashes(seed: int) -> None:
    cfg = dataclasses.replace(GossipConfig.default(), probe_schedule="independent")
    cluster = GossipCluster(9, seed, cfg, link=LinkProfile(loss=0.05, latency=0.002))
    cluster.run_until(3.0)
    victims = random.Random(seed).sample(sorted(cluster.nodes), 2)
    for name in victims:
        cluster.crash(name)
    cluster.run_for(8.0)
    assert cluster.converged(victims)
