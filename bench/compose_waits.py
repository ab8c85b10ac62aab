"""The compose tests' waits nearest their bounds, from the log the tests write.

Run the compose tests with SWARMLET_WAIT_LOG naming a file (tests/compose/helpers.py appends one
JSON line per `wait_for`, `swarmlet` and docker CLI run: the test, what, seconds taken, bound),
then sum it up here: each wait's worst share of its bound, highest first. A wait that takes more
than a third of its bound on a loaded machine is the next flake on a slower one.

    SWARMLET_WAIT_LOG=/tmp/waits.jsonl .venv/bin/pytest tests/compose
    .venv/bin/python bench/compose_waits.py /tmp/waits.jsonl [--top 25]
"""

from __future__ import annotations

import argparse
import json
import pathlib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=pathlib.Path, help="wait logs (JSON lines)")
    parser.add_argument("--top", type=int, default=25, help="how many waits to print (default 25)")
    args = parser.parse_args()
    worst: dict[tuple[str, str, str], dict[str, float]] = {}
    for log in args.logs:
        for line in log.read_text().splitlines():
            row = json.loads(line)
            key = (row["test"].rsplit("::", 1)[-1], row["kind"], row["what"])
            seen = worst.setdefault(key, {"took": 0.0, "bound": float(row["bound"]), "runs": 0, "failed": 0})
            seen["runs"] += 1
            seen["failed"] += 0 if row["ok"] else 1
            if row["took"] / row["bound"] > seen["took"] / seen["bound"]:
                seen["took"], seen["bound"] = float(row["took"]), float(row["bound"])
    ranked = sorted(worst.items(), key=lambda kv: kv[1]["took"] / kv[1]["bound"], reverse=True)
    print(f"{'share':>6} {'took':>8} {'bound':>6} {'runs':>5} {'failed':>6}  test: what")
    for (test, kind, what), seen in ranked[: args.top]:
        share = seen["took"] / seen["bound"]
        figures = f"{share:6.0%} {seen['took']:8.2f} {seen['bound']:6.0f} {seen['runs']:5.0f}"
        print(f"{figures} {seen['failed']:6.0f}  {test}: {kind} {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
