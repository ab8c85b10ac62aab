"""Raft fault campaign figures: violations over many seeds, failover times, throughput of the run.

    .venv/bin/python bench/raft_campaign.py --managers 3 --seeds 1000 [--faults ...] [--out FILE]

Prints the campaign's JSON (the same as `swarmlet sim raft --json`) and, with --out, writes it there.
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
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--faults", default="crash,restart,partition,loss,duplicate,reorder")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f and f != "none")
    summary = run_campaign(SimOptions(managers=args.managers, faults=faults), args.seeds, args.first_seed)
    text = json.dumps(summary)
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
