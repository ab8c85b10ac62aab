"""The linearizability checker against a brute-force oracle on many random small histories.

    .venv/bin/python bench/check_property.py [--histories 20000] [--seed 0]

The histories and the oracle are those of tests/unit/test_check_property.py (which runs a few
thousand of them in CI): 2-5 processes, up to 12 operations, register and kv models alternating,
from a real execution, about half perturbed. History i is drawn from seed ``--seed + i``, so a
disagreement is reproduced by its seed alone. Prints the disagreements (with their seeds), the
count by verdict and the wall time; exits 1 when the checker and the oracle disagree at all.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time

_ROOT = pathlib.Path(__file__).resolve().parent.parent
# This checkout's checker (not an installed one), and the test module holding the oracle.
sys.path.insert(0, str(_ROOT / "tests" / "unit"))
sys.path.insert(0, str(_ROOT))

from test_check_property import compare  # noqa: E402  (a test module: not in a package)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--histories", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first history")
    args = parser.parse_args()
    by_verdict: collections.Counter[str] = collections.Counter()
    disagreements: list[int] = []
    started = time.perf_counter()
    for seed in range(args.seed, args.seed + args.histories):
        checked, expected = compare(seed)
        by_verdict["linearizable" if expected else "not linearizable"] += 1
        if checked != expected:
            disagreements.append(seed)
            print(f"seed {seed}: checker says {checked}, brute force says {expected}")
    elapsed = time.perf_counter() - started
    print(
        f"{args.histories} histories (seeds {args.seed}-{args.seed + args.histories - 1}):"
        f" {by_verdict['linearizable']} linearizable, {by_verdict['not linearizable']} not"
        f" (by the brute force); {len(disagreements)} disagreement(s); {elapsed:.1f} s"
    )
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
