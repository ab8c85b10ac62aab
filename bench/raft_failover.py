"""Failover time: a leader crashes; how long until a new leader commits an entry of its own term.

    .venv/bin/python bench/raft_failover.py --managers 3 --seeds 200

Runs the fault campaign with leader-targeted crashes only (the crashed manager restarts after
0.3 to 2 s; at most a minority is down at once, so a new leader can always be elected) and the
default Raft timing, then prints the failover percentiles as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "proto")]

from manager.state.raft.campaign import run_campaign  # noqa: E402
from manager.state.raft.simcluster import SimOptions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    summary = run_campaign(SimOptions(managers=args.managers, faults=("crash",)), args.seeds, args.first_seed)
    print(json.dumps({
        "managers": summary["managers"],
        "runs": summary["runs"],
        "leader_crashes": summary["failover_s"]["count"],
        "failover_s": summary["failover_s"],
        "violations": len(summary["violations"]),
        "wall_s": summary["wall_s"],
    }))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
