"""The durations the tests in tests/local bound, measured on a loaded machine.

Runs ``pytest tests/local -s`` several times while ``--busy`` processes each keep a core busy,
collects the durations the tests print, and gives each one's distribution. The bounds in
tests/local (and their comments) come from this; run it again after a change of timing:

    .venv/bin/python bench/loaded_test_timings.py --runs 6 --busy 1
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

# What each test prints -> the name of the duration it bounds.
PATTERNS = {
    "worker Down at every manager (SIGKILL)": r"worker2 Down at every manager ([\d.]+) s",
    "new leader, whole cluster (SIGKILL)": r"new leader \w+ ([\d.]+) s after the old one was killed",
    "gossip: crash known dead by all": r"crash detected as dead by all 4 survivors after ([\d.]+) s",
    "SIGTERM to exit": r"SIGTERM to exit: ([\d.]+) s",
    "new leader during writes (SIGKILL)": r"failover: new leader ([\d.]+) s",
    "paused leader replaced": r"paused leader replaced after ([\d.]+) s",
    "failovers in turn": r"failovers: (.*)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs of tests/local (default 6)")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes meanwhile (default 1)")
    args = parser.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    samples: dict[str, list[float]] = {name: [] for name in PATTERNS}
    try:
        for run in range(args.runs):
            start = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "tests/local", "-q", "-s", "-p",
                                   "no:cacheprovider"], capture_output=True, text=True, check=False)
            for name, pattern in PATTERNS.items():
                for found in re.findall(pattern, proc.stdout):
                    samples[name] += [float(x) for x in re.findall(r"[\d.]+(?= s|$)", found)]
            print(f"run {run + 1}: exit {proc.returncode}, {time.monotonic() - start:.0f} s", flush=True)
            if proc.returncode != 0:  # say what failed, with the assertion's message
                for line in proc.stdout.splitlines():
                    if line.startswith(("FAILED", "ERROR", "E   ")):
                        print("   ", line[:300], flush=True)
    finally:
        for burner in burners:
            burner.kill()
    for name, xs in samples.items():
        if xs:
            print(f"{name}: n={len(xs)} min {min(xs):.3f} s, median {statistics.median(xs):.3f} s, "
                  f"max {max(xs):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
