"""`swarmlet sim gossip`: SWIM membership on the deterministic simulator, measured.

With ``--json`` it prints one JSON object (the fields docs/gossip.md describes); without, a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's flags."""
    parser.add_argument("--nodes", type=int, default=7, help="cluster size (default 7)")
    parser.add_argument("--seeds", type=int, default=1, help="independent runs, seeds 1..N (default 1)")
    parser.add_argument("--first-seed", type=int, default=1, help="seed of the first run (default 1)")
    parser.add_argument("--loss", type=float, default=0.0, help="packet loss on every link, 0..1")
    parser.add_argument("--latency-ms", type=float, default=0.5, help="one-way link latency (default 0.5)")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="extra one-way delay, uniform in [0, jitter) (default 0)")
    parser.add_argument("--kill", type=int, default=0,
                        help="nodes that crash at random times after convergence")
    parser.add_argument("--duration", type=float, default=30.0, help="virtual seconds to run (default 30)")
    parser.add_argument("--config", choices=("lan", "default"), default="default",
                        help="lan: memberlist's DefaultLANConfig timing; default: the emulator's")
    parser.add_argument("--broadcasts", type=int, default=3,
                        help="user broadcasts timed per seed (default 3)")
    parser.add_argument("--start", choices=("converged", "join"), default="converged",
                        help="start as a long-converged cluster (default) or join through one seed")
    parser.add_argument("--probe-schedule", choices=("staggered", "independent"), default="staggered",
                        help="staggered: one prober per member per interval; independent: memberlist's")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the campaign and print its figures; exit 2 on invalid flags."""
    from nodeagent.gossip.simcluster import RunParams, measure

    try:
        params = RunParams(
            nodes=args.nodes, seeds=args.seeds, loss=args.loss, latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms, kill=args.kill,
            duration=args.duration, config=args.config, broadcasts=args.broadcasts, start=args.start,
            first_seed=args.first_seed, probe_schedule=args.probe_schedule,
        )
    except ValueError as exc:
        print(f"swarmlet sim gossip: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result = measure(params)
    result["wall_s"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


def _print_table(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}={'-' if v is None else v}" for k, v in value.items())
        print(f"{key:<22} {value}")
