"""Orchestration throughput: replicas placed by the real components, in the simulator.

    .venv/bin/python bench/orchestrator.py [--nodes 1000] [--tasks 1000,3000,10000]
                                           [--per-service N] [--seed 1] [--profile]

For each task count N, a fresh simulated cluster (``manager.orchestrator.simcluster``) of
``--nodes`` ready nodes runs the real replicated orchestrator, task reaper, allocator and
scheduler, each in its simulator harness on the real store, with fake agents that report an
assigned task running 50 ms (virtual) later. Then services totalling N replicas are created at
once (``--per-service`` replicas each; default: one service of N). Printed per N:

* virtual time until every task runs (the components' passes take no virtual time; the agents'
  50 ms reports and the chunking of large batches into passes of 1,000 operations do);
* wall time until every task is assigned, and until every task runs;
* tasks placed per second of wall time (N / time to all assigned);
* passes and batches per component, and the store digest (the same seed gives the same digest).

Deterministic: the seed fixes every ID and every placement.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from manager.orchestrator.common import parse_timestamp
from manager.orchestrator.simcluster import SimCluster
from manager.scheduler.build import GIB, make_node, task_template


def run(nodes: int, tasks: int, per_service: int, seed: int) -> dict[str, object]:
    """One measured run; returns its figures."""
    cluster = SimCluster(
        seed,
        [make_node(f"node{i:05d}", cpus=8, memory=32 * GIB) for i in range(nodes)],
    )
    template = task_template(cpus=0.01, memory=16 * 1024**2)
    started = time.perf_counter()
    t0 = cluster.sim.now
    services = []
    left = tasks
    while left > 0:
        count = min(per_service, left)
        spec = {"Name": f"svc{len(services):04d}", "TaskTemplate": template,
                "Mode": {"Replicated": {"Replicas": count}}}  # fmt: skip
        services.append(cluster.create_service(spec))
        left -= count
    store = cluster.store
    states: dict[str, object] = {}

    def seen() -> None:
        for change in watch.poll():
            if change.action == "remove":
                states.pop(change.object.id, None)
            else:
                states[change.object.id] = change.object.status.get("State")

    watch = store.watch(["task"], on_change=seen)
    assigned_at = None
    while cluster.sim.step():
        values = list(states.values())
        if len(values) < tasks:
            continue
        if assigned_at is None and all(s in ("assigned", "running") for s in values):
            assigned_at = time.perf_counter() - started
        if all(s == "running" for s in values):
            break
        if cluster.sim.now - t0 > 600:
            raise RuntimeError("did not converge in 600 virtual seconds")
    wall = time.perf_counter() - started
    # Converged at the first agent report that made the last task run: find it exactly.
    virtual = max(parse_timestamp(t.updated_at) for t in store.find("task")) - t0
    assigned = assigned_at if assigned_at is not None else wall
    return {
        "tasks": tasks,
        "services": len(services),
        "virtual_s": round(virtual, 3),
        "wall_assigned_s": round(assigned, 3),
        "wall_running_s": round(wall, 3),
        "placed_per_s": round(tasks / assigned),
        "passes": {h.component.name: h.passes for h in cluster.harnesses if h.passes},
        "batches": cluster.write.batches,
        "digest": cluster.digest(),
    }


def main() -> None:
    """Parse the flags, run each task count, print one block per count."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", default="1000,3000,10000")
    parser.add_argument("--per-service", type=int, default=0, help="replicas per service (0: one service)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="profile the largest run")
    args = parser.parse_args()
    counts = [int(c) for c in args.tasks.split(",")]
    print(f"{args.nodes} nodes, seed {args.seed}")
    for count in counts:
        per_service = args.per_service or count
        if args.profile and count == max(counts):
            profiler = cProfile.Profile()
            profiler.enable()
            figures = run(args.nodes, count, per_service, args.seed)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            figures = run(args.nodes, count, per_service, args.seed)
        print(
            f"{count:>6} tasks in {figures['services']} service(s): all running at virtual "
            f"{figures['virtual_s']} s; wall {figures['wall_assigned_s']} s to all assigned "
            f"({figures['placed_per_s']} tasks placed/s), {figures['wall_running_s']} s to all running; "
            f"{figures['batches']} batches; passes {figures['passes']}; digest {figures['digest']}"
        )


if __name__ == "__main__":
    main()
