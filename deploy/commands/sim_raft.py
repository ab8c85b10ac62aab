"""`swarmlet sim raft`: a Raft fault campaign on the deterministic simulator.

Clients read, write and cas against random managers while faults come and go; every history is
checked for linearizability and every run for Raft's safety properties. With ``--json`` it prints
one JSON object (docs/raft.md describes the fields); without, a short summary. Exit code 1 when
any run found a violation.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's flags."""
    parser.add_argument("--managers", type=int, choices=(1, 3, 5, 7), default=3, help="managers (default 3)")
    parser.add_argument("--seeds", type=int, default=10, help="independent runs (default 10)")
    parser.add_argument("--first-seed", type=int, default=1, help="seed of the first run (default 1)")
    parser.add_argument(
        "--faults",
        default="crash,restart,partition,loss,duplicate,reorder",
        help="comma-separated faults: crash, restart, pause, partition, loss, duplicate, reorder "
        "(default: all but pause; 'none' for a quiet run)",
    )
    parser.add_argument("--crashes", choices=("mixed", "refusing", "silent"), default="mixed",
                        help="how a crash looks to the other managers: its port refuses connections "
                        "(docker kill), nothing answers at all (a pause, a cut cable), or each crash "
                        "either, half and half (default)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="virtual seconds of faults per run (default 10)")
    parser.add_argument("--reads", choices=("mixed", "log", "index"), default="mixed",
                        help="read path: through the log, through ReadIndex, or chosen per seed (default)")
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients (default 3)")
    parser.add_argument("--codec", action="store_true", help="round-trip every message through protobuf")
    parser.add_argument("--trace", action="store_true",
                        help="print each run's event trace to stderr (use with one seed)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="stretch every Raft timer (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the campaign and print its figures; exit 2 on invalid flags, 1 on violations."""
    from manager.state.raft.campaign import run_campaign
    from manager.state.raft.config import RaftConfig
    from manager.state.raft.simcluster import SimOptions

    names = [f.strip() for f in args.faults.split(",") if f.strip()]
    faults = () if names == ["none"] else tuple(names)
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        if args.duration <= 0:
            raise ValueError(f"--duration must be > 0, got {args.duration}")
        options = SimOptions(
            managers=args.managers,
            faults=faults,
            crashes=args.crashes,
            fault_s=args.duration,
            read_mode=args.reads,
            clients=args.clients,
            codec=args.codec,
            trace=args.trace,
            raft=RaftConfig.default().scaled(args.time_scale),
        )
    except ValueError as exc:
        print(f"swarmlet sim raft: {exc}", file=sys.stderr)
        return 2

    def show_trace(result: Any) -> None:
        if args.trace:
            print(f"# seed {result.seed}", file=sys.stderr)
            for line in result.trace:
                print(line, file=sys.stderr)

    summary = run_campaign(options, args.seeds, args.first_seed, on_run=show_trace)
    if args.json:
        print(json.dumps(summary))
    else:
        fo = summary["failover_s"]
        print(f"managers {summary['managers']}  runs {summary['runs']}  ops {summary['ops']}  "
              f"wall {summary['wall_s']} s")
        print(f"failover p50 {fo['p50']} s  p99 {fo['p99']} s  max {fo['max']} s  "
              f"({fo['count']} leader crashes)")
        for kind, figures in summary["failover_s_by_crash"].items():
            print(f"  {kind} crashes: p50 {figures['p50']} s  p99 {figures['p99']} s  "
                  f"max {figures['max']} s  ({figures['count']})")
        print(f"violations: {len(summary['violations'])}")
        for v in summary["violations"][:20]:
            print(f"  seed {v['seed']}: {v['violation']}")
    return 1 if summary["violations"] else 0
