"""Seeded properties of simulated gossip clusters: what must hold whatever the seed."""

from __future__ import annotations

import dataclasses
import random

import pytest

from nodeagent.gossip.codec import MAX_STREAM_BYTES, GossipCodec
from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberState, UserMessage
from nodeagent.gossip.simcluster import GossipCluster, RunParams, measure
from nodeagent.sim import LinkProfile

SEEDS = range(1, 11)


def _states(cluster: GossipCluster, target: str) -> set[MemberState]:
    return {cluster.view(observer)[target] for observer in cluster.live() if observer != target}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_crashed_node_ends_dead_everywhere_and_no_live_node_stays_dead(seed: int) -> None:
    rng = random.Random(seed)
    cluster = GossipCluster(9, seed, GossipConfig.default(), link=LinkProfile(loss=0.05, latency=0.002))
    cluster.run_until(3.0)
    assert cluster.converged()
    victims = rng.sample(sorted(cluster.nodes), 3)
    for name in victims:
        cluster.run_for(rng.random() * 2.0)
        cluster.crash(name)
    cluster.run_for(10.0)
    for name in victims:
        assert _states(cluster, name) == {MemberState.DEAD}
    for name in cluster.live():
        assert _states(cluster, name) == {MemberState.ALIVE}, name
    assert cluster.converged(victims)
    assert all(cluster.swim(n).stats.dropped_invalid == 0 for n in cluster.live())


@pytest.mark.parametrize("seed", SEEDS)
def test_views_converge_after_a_partition_heals(seed: int) -> None:
    rng = random.Random(seed)
    cluster = GossipCluster(8, seed, GossipConfig.default())
    cluster.run_until(3.0)
    names = sorted(cluster.nodes)
    rng.shuffle(names)
    cut = rng.randrange(1, len(names))
    small, big = sorted((names[:cut], names[cut:]), key=len)
    cluster.partition(small, big)
    cluster.run_for(5.0 + rng.random() * 10.0)
    # The healthy side has given up on the other (a lone node, missing every ack, stretches its own
    # timeouts, as Lifeguard means it to, so it is slower to give up on the rest).
    assert all(cluster.view(observer)[lost] is MemberState.DEAD for observer in big for lost in small)
    cluster.heal()
    cluster.run_for(15.0)
    assert cluster.converged()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_restarted_node_rejoins_with_a_higher_incarnation(seed: int) -> None:
    cluster = GossipCluster(6, seed, GossipConfig.default())
    cluster.run_until(3.0)
    cluster.crash("node-4")
    cluster.run_for(3.0)
    assert _states(cluster, "node-4") == {MemberState.DEAD}
    dead_inc = cluster.swim("node-1").member("node-4").incarnation  # type: ignore[union-attr]
    cluster.restart("node-4")
    cluster.run_for(3.0)
    assert cluster.converged()
    assert cluster.swim("node-1").member("node-4").incarnation > dead_inc  # type: ignore[union-attr]


def test_a_node_that_leaves_is_left_everywhere_not_dead() -> None:
    cluster = GossipCluster(6, 3, GossipConfig.default())
    cluster.run_until(3.0)
    cluster.leave("node-2")
    cluster.run_for(1.0)
    cluster.crash("node-2")  # the agent exits after its goodbye
    cluster.run_for(5.0)
    assert _states(cluster, "node-2") == {MemberState.LEFT}


def test_a_broadcast_reaches_every_node_once_despite_loss() -> None:
    cluster = GossipCluster(40, 9, GossipConfig.default(), link=LinkProfile(loss=0.1), converged=True)
    got: dict[str, int] = {}

    def count(now: float, observer: str, event: object) -> None:
        if isinstance(event, UserMessage) and event.topic == "netdb":
            got[observer] = got.get(observer, 0) + 1

    cluster.observers.append(count)
    cluster.run_until(1.0)
    cluster.broadcast("node-7", "netdb", b"endpoint table update")
    cluster.run_for(5.0)
    assert set(got) == set(cluster.nodes) - {"node-7"}
    assert set(got.values()) == {1}


@pytest.mark.parametrize("seed", [1, 2])
def test_same_seed_same_trace_event_for_event(seed: int) -> None:
    def run(s: int) -> list[str]:
        cluster = GossipCluster(5, s, GossipConfig.default(), link=LinkProfile(loss=0.1, jitter=0.003),
                                trace=True, trace_messages=True)
        cluster.run_until(2.0)
        cluster.crash("node-2")
        cluster.partition(["node-1"], ["node-3", "node-4", "node-5"])
        cluster.run_for(2.0)
        cluster.heal()
        cluster.run_for(3.0)
        return cluster.trace_lines or []

    first = run(seed)
    assert len(first) > 100
    assert run(seed) == first
    assert run(seed + 10) != first


def test_the_codec_carries_every_message_of_a_real_run() -> None:
    # Every message crosses the network as protobuf bytes and back, as it would between processes.
    cluster = GossipCluster(5, 4, GossipConfig.default(), codec=GossipCodec(MAX_STREAM_BYTES))
    cluster.run_until(2.0)
    assert cluster.converged()
    cluster.broadcast("node-1", "netdb", b"\x00\xff")
    cluster.crash("node-5")
    cluster.run_for(3.0)
    assert cluster.converged(["node-5"])


def test_measure_reports_what_the_command_prints() -> None:
    result = measure(RunParams(nodes=7, seeds=3, kill=2, duration=10.0, broadcasts=2))
    assert result["false_positives"] == 0 and result["undetected"] == 0
    assert 0 < result["all_dead_s"]["p50"] <= result["all_dead_s"]["p99"] <= result["all_dead_s"]["max"]
    assert result["first_suspect_s"]["max"] <= result["all_dead_s"]["max"]
    assert result["dissemination_999_s"]["p50"] > 0
    assert result["msgs_per_node_per_s"] > 0


def test_invalid_campaign_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--loss"):
        RunParams(loss=1.5)
    with pytest.raises(ValueError, match="--kill"):
        RunParams(nodes=3, kill=2)


def test_changed_metadata_reaches_every_node() -> None:
    cluster = GossipCluster(6, 2, GossipConfig.default())
    cluster.run_until(2.0)
    meta = cluster.swim("node-3").meta
    cluster.set_meta("node-3", dataclasses.replace(meta, labels=(("zone", "b"),), role="manager"))
    cluster.run_for(1.0)
    for observer in cluster.live():
        member = cluster.swim(observer).member("node-3")
        assert member is not None and member.meta.role == "manager" and member.meta.labels == (("zone", "b"),)
