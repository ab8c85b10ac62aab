"""The gossip benchmarks of docs/gossip.md: prints one JSON line of figures per scenario.

    .venv/bin/python bench/gossip_suite.py [SCENARIO ...]     # default: every scenario, in order
    .venv/bin/python bench/gossip_suite.py lan-1000-loss10-independent   # memberlist's probing

Each scenario is a `swarmlet sim gossip` campaign (the same code path as the command); wall_s is
this machine's wall-clock time for the whole campaign, so it depends on the load.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from nodeagent.gossip.simcluster import RunParams, measure

SCENARIOS: dict[str, RunParams] = {
    # Emulator default, 7 nodes, no loss: all_dead_s p99 must be at most 1.5 s.
    "emulator-7": RunParams(nodes=7, seeds=400, kill=1, duration=20.0, config="default", broadcasts=2),
    # The same with two crashes per run: a second crash close to the first is slower to detect
    # (the dead node is still picked as a relay, its missing nack costs the prober local health).
    "emulator-7-two-crashes": RunParams(nodes=7, seeds=200, kill=2, duration=20.0, config="default",
                                        broadcasts=2),
    "emulator-7-loss10": RunParams(nodes=7, seeds=200, kill=1, loss=0.1, duration=20.0, config="default",
                                   broadcasts=2),
    # How much delay the emulator default tolerates (a loaded machine delays agents' replies).
    "emulator-7-jitter30": RunParams(nodes=7, seeds=50, kill=1, loss=0.05, jitter_ms=30.0, duration=30.0,
                                     config="default", broadcasts=0),
    "emulator-7-jitter60": RunParams(nodes=7, seeds=50, kill=1, loss=0.05, jitter_ms=60.0, duration=30.0,
                                     config="default", broadcasts=0),
    # Dissemination with lan() timing against Serf's convergence figures (1.4 s / 2.0 s / 2.2 s).
    "lan-30": RunParams(nodes=30, seeds=40, kill=0, duration=20.0, config="lan", broadcasts=5),
    "lan-1000": RunParams(nodes=1000, seeds=5, kill=2, duration=40.0, config="lan", broadcasts=4),
    # 10% loss, 1,000 nodes, 20 seeds: no false positive; all_dead_s p99 at most 15 s.
    "lan-1000-loss10": RunParams(nodes=1000, seeds=20, loss=0.1, kill=2, duration=60.0, config="lan",
                                 broadcasts=1),
    # 10,000 nodes for 30 virtual seconds: must finish within 10 minutes of wall time.
    "lan-10000": RunParams(nodes=10000, seeds=1, kill=2, duration=30.0, config="lan", broadcasts=3),
}

# memberlist's independent probing, for comparison with the staggered schedule (docs/gossip.md's
# "before" column). Run by name only: they are not part of the default run.
COMPARISONS: dict[str, RunParams] = {
    f"{name}-independent": dataclasses.replace(params, probe_schedule="independent")
    for name, params in SCENARIOS.items()
}


def main(argv: list[str]) -> int:
    """Run the named scenarios (all by default) and print their figures."""
    known = {**SCENARIOS, **COMPARISONS}
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    for name in names:
        started = time.perf_counter()

        def progress(seed: int, figures: dict[str, object], name: str = name) -> None:
            print(json.dumps({"scenario": name, "seed": seed, **figures}), file=sys.stderr, flush=True)

        result = measure(known[name], on_seed=progress)
        result["wall_s"] = round(time.perf_counter() - started, 3)
        print(json.dumps({"scenario": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
