"""Failover time: a leader crashes; how long until a new leader commits an entry of its own term.

    .venv/bin/python bench/raft_failover.py --managers 3 --seeds 200

Runs the fault campaign with leader-targeted crashes only (the crashed manager restarts after
0.3 to 2 s; at most a minority is down at once, so a new leader can always be elected) and the
default Raft timing, once for each way a crash can look to the other managers, and prints one
JSON line per way:

* ``refusing`` (``docker kill``): the dead process's port refuses connections, so the followers'
  shells find out within a round trip and tell their cores (``report_leader_unreachable``);
* ``silent`` (``docker pause``, a cut cable): nothing is refused; only the election timeout
  notices that the heartbeats stopped.
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
    parser.add_argument("--crashes", choices=("refusing", "silent", "both"), default="both",
                        help="how a crash looks to the peers (default: a row for each)")
    args = parser.parse_args()
    kinds = ("refusing", "silent") if args.crashes == "both" else (args.crashes,)
    failed = False
    for kind in kinds:
        options = SimOptions(managers=args.managers, faults=("crash",), crashes=kind)
        summary = run_campaign(options, args.seeds, args.first_seed)
        failed = failed or bool(summary["violations"])
        print(json.dumps({
            "managers": summary["managers"],
            "crashes": kind,
            "runs": summary["runs"],
            "leader_crashes": summary["failover_s"]["count"],
            "failover_s": summary["failover_s"],
            "violations": len(summary["violations"]),
            "wall_s": summary["wall_s"],
        }), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
