"""A node that restarts comes back with incarnation 0 and no state, joins through one peer, and is
seen alive again by every node, at an incarnation above the one its former self had there.

The agent keeps no gossip state across a restart (as memberlist's nodes), so the cluster may still
hold its former self alive, suspect, dead or left, at incarnation 0 or above, and the former
self's leave or a suspicion of it may still be spreading when the new process joins. Seeded and
replayable: every case runs over 10 seeds.
"""

from __future__ import annotations

import dataclasses

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberState
from nodeagent.gossip.simcluster import GossipCluster
from nodeagent.sim import LinkProfile

SEEDS = range(1, 11)
NODE, PEER = "node-4", "node-2"
N = 7
# How long everyone may take to see the new process alive. Most nodes hear its alive within a few
# gossip rounds; one that missed it and holds it dead or left (so neither probes nor gossips to
# it) is probed by the new process within n-1 slots of the staggered schedule, answers the ack
# with its claim, and gets the alive back. The push-pull (5 s with default()) would repair any
# view eventually; the bound is well below it, so the test fails if only the push-pull helps.
BOUND_S = N * GossipConfig.default().probe_interval + 0.25


def _stop(cluster: GossipCluster, how: str, rng_gap: float) -> None:
    if how == "left":  # a graceful stop: the agent gossips its leave, then exits
        cluster.leave(NODE)
        cluster.run_for(1.0)
        cluster.crash(NODE)
        cluster.run_for(1.0)
    elif how == "leave spreading":  # restarted while its leave is still on the way
        cluster.leave(NODE)
        cluster.run_for(rng_gap * 0.05)
        cluster.crash(NODE)
    elif how == "dead":  # killed, declared dead everywhere, then started again
        cluster.crash(NODE)
        cluster.run_for(3.0)
    elif how == "suspected":  # killed and back while the others suspect it
        cluster.crash(NODE)
        cluster.run_for(0.3 + rng_gap * 0.4)
    else:  # "fast": back before anyone noticed
        cluster.crash(NODE)
        cluster.run_for(rng_gap * 0.05)


def _held(cluster: GossipCluster) -> dict[str, tuple[MemberState, int]]:
    out = {}
    for observer in cluster.live():
        member = cluster.swim(observer).member(NODE)
        assert member is not None
        out[observer] = (member.state, member.incarnation)
    return out


def _time_until_alive_everywhere(cluster: GossipCluster, above: dict[str, int], limit: float) -> float:
    """Until every running node holds NODE alive, above the incarnation ``above`` gives for it."""
    start = cluster.sim.now
    while cluster.sim.now - start <= limit:
        if all(
            (m := cluster.swim(o).member(NODE)) is not None and m.state is MemberState.ALIVE
            and m.incarnation > above.get(o, -1)
            for o in cluster.live()
        ):
            return cluster.sim.now - start
        cluster.run_for(0.01)
    return float("inf")


def _wrong(before: dict[str, tuple[MemberState, int]]) -> dict[str, int]:
    """The observers that held the former self suspect, dead or left, and at which incarnation."""
    return {o: inc for o, (state, inc) in before.items() if state is not MemberState.ALIVE}


@pytest.mark.parametrize("how", ["left", "leave spreading", "dead", "suspected", "fast"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_restarted_node_is_alive_again_everywhere_with_a_higher_incarnation(how: str, seed: int) -> None:
    cluster = GossipCluster(N, seed, GossipConfig.default())
    cluster.run_until(3.0)
    gap = cluster.sim.fork_rng("gap").random()
    _stop(cluster, how, gap)
    before = _held(cluster)
    if how in ("left", "dead"):
        want = MemberState.LEFT if how == "left" else MemberState.DEAD
        assert {state for state, _ in before.values()} == {want}
    # The new process: incarnation 0, no state, one peer to join through.
    cluster.restart(NODE, seeds=[PEER], incarnation=0)
    # Within the bound every node holds it alive, and those that held it suspect, dead or left
    # hold it above that incarnation: stale claims about the former self (its leave, a
    # suspicion, a death) cannot win over the new process.
    took = _time_until_alive_everywhere(cluster, _wrong(before), BOUND_S)
    assert took <= BOUND_S, (how, seed, _held(cluster))
    # And it stays so. By then (push-pulls included) every node, whatever it held (alive at 0
    # included), holds it above that incarnation.
    cluster.run_for(10.0)
    assert cluster.converged()
    assert _time_until_alive_everywhere(cluster, {o: inc for o, (_, inc) in before.items()}, 0.0) == 0.0
    assert cluster.swim("node-1").stats.dropped_invalid == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_a_fast_restart_outbids_a_former_self_at_a_higher_incarnation(seed: int) -> None:
    # The former self had raised its incarnation (a metadata change) before it was killed; the new
    # process starts at 0 while every node still holds it alive at 1 with other metadata.
    cluster = GossipCluster(N, seed, GossipConfig.default())
    cluster.run_until(2.0)
    meta = cluster.swim(NODE).meta
    cluster.set_meta(NODE, dataclasses.replace(meta, labels=(("zone", "b"),)))
    spread = 2 * cluster.config.push_pull_interval
    _time_until_alive_everywhere(cluster, {o: 0 for o in cluster.live() if o != NODE}, spread)
    assert {inc for _, inc in _held(cluster).values()} == {1}
    cluster.crash(NODE)
    cluster.run_for(0.02)
    cluster.restart(NODE, seeds=[PEER], incarnation=0)
    # Gossip brings the new record to most nodes at once; one that missed it still holds the
    # former self alive, and gets the new one by push-pull (5 s).
    took = _time_until_alive_everywhere(cluster, {o: 1 for o in cluster.live()}, spread)
    assert took <= spread
    # The new process's metadata (the former labels are gone) is what everyone holds.
    for observer in cluster.live():
        member = cluster.swim(observer).member(NODE)
        assert member is not None and member.meta == meta and member.incarnation == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_restarts_under_loss_come_back_at_the_latest_by_the_push_pull(seed: int) -> None:
    # 10% packet loss: an alive can miss a node; a stale claim it then spreads reaches the
    # restarted node, which answers it; the push-pull (5 s) is the last resort.
    config = GossipConfig.default()
    cluster = GossipCluster(N, seed, config, link=LinkProfile(loss=0.1, latency=0.002))
    cluster.run_until(3.0)
    cluster.leave(NODE)
    cluster.run_for(0.02)
    cluster.crash(NODE)
    cluster.restart(NODE, seeds=[PEER], incarnation=0)
    took = _time_until_alive_everywhere(cluster, {}, config.push_pull_interval)
    assert took <= config.push_pull_interval
    cluster.run_for(10.0)
    assert cluster.converged()


def test_a_restart_replays_the_same_trace_for_the_same_seed() -> None:
    def run() -> list[str]:
        cluster = GossipCluster(5, 3, GossipConfig.default(), trace=True, trace_messages=True)
        cluster.run_until(2.0)
        cluster.leave(NODE)
        cluster.run_for(0.01)
        cluster.crash(NODE)
        cluster.restart(NODE, seeds=[PEER])
        cluster.run_for(2.0)
        return cluster.trace_lines or []

    first = run()
    assert any(f"restart {NODE}" in line for line in first)
    assert run() == first
