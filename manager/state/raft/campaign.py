"""The Raft fault campaign: many seeded runs of :class:`RaftSimCluster`, summed up.

Every run's history goes through the linearizability checker; every run also checks election
safety, log matching, leader completeness, state machine safety and liveness after healing
(see :mod:`manager.state.raft.simcluster`). A violation names its seed, so ``--first-seed S --seeds 1``
replays it exactly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from manager.state.raft.simcluster import RaftSimCluster, RunResult, SimOptions

__all__ = ["percentile", "run_campaign"]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
    return ordered[int(min(rank, len(ordered))) - 1]


def _figures(times: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(times, 0.50), 4),
        "p99": round(percentile(times, 0.99), 4),
        "max": round(max(times, default=0.0), 4),
        "count": len(times),
    }


def _checker() -> Callable[[list[dict[str, Any]]], tuple[bool, str]]:
    from manager.check.linearizable import check_history

    def check(history: list[dict[str, Any]]) -> tuple[bool, str]:
        result = check_history(history)
        return result.ok, result.explanation

    return check


def run_campaign(
    options: SimOptions,
    seeds: int,
    first_seed: int = 1,
    *,
    on_run: Callable[[RunResult], None] | None = None,
) -> dict[str, Any]:
    """Run seeds first_seed .. first_seed + seeds - 1 and return the campaign's figures.

    Fields: managers, runs, ops, violations (each with its seed and what broke),
    failover_s {p50, p99, max, count} (leader crash until a new leader commits an entry of its
    term), failover_s_by_crash (the same for "refusing" and "silent" crashes apart),
    history_digest (equal digests: equal histories), wall_s, and a few totals.
    """
    started = time.perf_counter()
    check = _checker()
    violations: list[dict[str, Any]] = []
    failovers: list[float] = []
    by_crash: dict[str, list[float]] = {"refusing": [], "silent": []}
    digest = hashlib.sha256()
    ops = 0
    totals: dict[str, int] = {}
    reads = {"log": 0, "index": 0}
    for seed in range(first_seed, first_seed + seeds):
        result = RaftSimCluster(seed, options).run(check)
        ops += result.ops
        failovers.extend(result.failovers)
        for kind, times in result.failovers_by_crash.items():
            by_crash.setdefault(kind, []).extend(times)
        reads[result.read_mode] += 1
        for key, value in result.stats.items():
            totals[key] = totals.get(key, 0) + value
        for line in result.history:
            digest.update(json.dumps(line, sort_keys=True).encode())
        for text in result.violations:
            violations.append({"seed": seed, "violation": text})
        if on_run is not None:
            on_run(result)
    return {
        "managers": options.managers,
        "runs": seeds,
        "first_seed": first_seed,
        "faults": list(options.faults),
        "ops": ops,
        "violations": violations,
        "failover_s": _figures(failovers),
        "failover_s_by_crash": {kind: _figures(times) for kind, times in sorted(by_crash.items())},
        "runs_by_read_path": reads,
        "totals": totals,
        "history_digest": digest.hexdigest()[:16],
        "wall_s": round(time.perf_counter() - started, 3),
    }
