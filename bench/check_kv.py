"""Linearizability checker on 10,000-operation, 10-process kv histories.

    .venv/bin/python bench/check_kv.py [--seeds 5] [--ops 10000] [--processes 10] [--keys 10]

Each seed generates a realistic history (concurrent operations against a simulated linearizable
store, random delays, some info and failed operations), checks it, then checks a copy with an
injected stale read, which must be reported. Prints the time of each check.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import random
import sys
import time

# Measure this checkout's checker, not whichever one the virtualenv has installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from manager.check import check_history
from manager.check.synth import SynthConfig, generate, inject_stale_read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--p-info", type=float, default=0.01)
    args = parser.parse_args()
    config = SynthConfig(operations=args.ops, processes=args.processes, keys=args.keys, p_info=args.p_info)
    print(f"{args.ops} operations, {args.processes} processes, {args.keys} keys, p_info {args.p_info}")
    print(f"{'seed':>4} {'outcomes':<44} {'valid: s':>9} {'anomaly: s':>11} verdicts")
    worst = 0.0
    for seed in range(args.seeds):
        events = generate(random.Random(seed), config)
        counts = collections.Counter(e["type"] for e in events if e["type"] != "invoke")
        failed_cas = sum(1 for e in events if e["type"] == "fail" and e["f"] == "cas")
        outcomes = f"ok {counts['ok']} fail {counts['fail']} (cas {failed_cas}) info {counts['info']}"
        started = time.perf_counter()
        good = check_history(events, "kv")
        valid_s = time.perf_counter() - started
        bad_events, _ = inject_stale_read(events, random.Random(seed))
        started = time.perf_counter()
        bad = check_history(bad_events, "kv")
        anomaly_s = time.perf_counter() - started
        worst = max(worst, valid_s, anomaly_s)
        verdicts = f"{'ok' if good.ok else 'WRONG'}/{'caught' if not bad.ok else 'MISSED'}"
        print(f"{seed:>4} {outcomes:<44} {valid_s:>9.2f} {anomaly_s:>11.2f} {verdicts}")
    print(f"slowest check: {worst:.2f} s")


if __name__ == "__main__":
    main()
