"""Golden traces of small gossip scenarios: protocol changes show up as a diff in review.

Each scenario runs three nodes on the simulator and compares its trace (member state changes as
each node sees them, and the faults) with tests/sim/golden/gossip/<scenario>.txt. After an
intended change, regenerate the files and review the diff (tests/conftest.py's ``golden``):

    .venv/bin/pytest --update-golden tests/sim/test_gossip_golden.py   # or SWARMLET_UPDATE_GOLDEN=1
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberState
from nodeagent.gossip.simcluster import GossipCluster
from tests.golden import Golden

GOLDEN = pathlib.Path(__file__).parent / "golden" / "gossip"
ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD


def crash() -> GossipCluster:
    """Three nodes join; node-3 crashes; both others declare it dead."""
    c = GossipCluster(3, seed=11, config=GossipConfig.default(), trace=True)
    c.run_until(2.0)
    c.crash("node-3")
    c.run_until(5.0)
    for observer in ("node-1", "node-2"):
        assert c.view(observer)["node-3"] is DEAD
    return c


def false_suspicion_refuted() -> GossipCluster:
    """node-3 is cut off for 3 s (lan timing: 4 s minimum suspicion), then back: it refutes."""
    c = GossipCluster(3, seed=5, config=GossipConfig.lan(), trace=True)
    c.run_until(5.0)
    c.net.isolate(c.nodes["node-3"].address)
    c.run_until(8.0)
    assert SUSPECT in (c.view("node-1")["node-3"], c.view("node-2")["node-3"])
    c.heal()
    c.run_until(12.0)
    assert c.converged()
    assert c.swim("node-3").incarnation >= 1  # it refuted with a higher incarnation
    return c


def partition_and_heal() -> GossipCluster:
    """node-1 | node-2, node-3 for 4 s: each side declares the other dead; after healing they merge."""
    c = GossipCluster(3, seed=7, config=GossipConfig.default(), trace=True)
    c.run_until(2.0)
    c.partition(["node-1"], ["node-2", "node-3"])
    c.run_until(6.0)
    assert c.view("node-1")["node-2"] is DEAD and c.view("node-2")["node-1"] is DEAD
    c.heal()
    c.run_until(16.0)
    assert c.converged()
    return c


SCENARIOS: dict[str, Callable[[], GossipCluster]] = {
    "crash": crash,
    "false_suspicion_refuted": false_suspicion_refuted,
    "partition_and_heal": partition_and_heal,
}


def render(name: str) -> str:
    """The golden text of one scenario."""
    cluster = SCENARIOS[name]()
    doc = (SCENARIOS[name].__doc__ or "").strip()
    lines = [f"# {name}: {doc}", "# time node event", *(cluster.trace_lines or [])]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_trace(name: str, golden: Golden) -> None:
    golden.check(GOLDEN / f"{name}.txt", render(name))
