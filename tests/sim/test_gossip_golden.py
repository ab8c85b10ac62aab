"""Golden traces of small gossip scenarios: protocol changes show up as a diff in review.

Each scenario runs three nodes on the simulator and compares its trace (member state changes as
each node sees them, and the faults) with tests/sim/golden/gossip/<scenario>.txt. After an
intended change, regenerate the files and review the diff:

    SWARMLET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/sim/test_gossip_golden.py
    # or: .venv/bin/python tests/sim/test_gossip_golden.py --rewrite
"""

from __future__ import annotations

import difflib
import os
import pathlib
import sys
from collections.abc import Callable

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberState
from nodeagent.gossip.simcluster import GossipCluster

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
def test_golden_trace(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    got = render(name)
    if os.environ.get("SWARMLET_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    want = path.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden", "now"))
        pytest.fail(f"trace of {name} changed (SWARMLET_UPDATE_GOLDEN=1 to accept):\n{diff}")


if __name__ == "__main__":
    if "--rewrite" not in sys.argv[1:]:
        print(__doc__)
        sys.exit(2)
    for scenario in sorted(SCENARIOS):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / f"{scenario}.txt").write_text(render(scenario))
        print(f"wrote {GOLDEN / scenario}.txt")
