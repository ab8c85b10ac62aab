"""Failure detection on a running compose cluster, measured from the host.

For each round: kill the leader's container and time how long until another manager reports a
new leader (Raft) and the old one Unreachable; start it again and wait until it is a Ready
follower. Then stop a worker's container and time until every live manager shows it Down.

    make up                                  # or .venv/bin/swarmlet up
    .venv/bin/python bench/compose_failover.py --rounds 5

Leader times run from the moment `docker kill` returned, so they include detection; the worker
time runs from the moment the stop was asked for (the agent leaves gracefully on SIGTERM).
"""

from __future__ import annotations

import argparse
import statistics
import time

from deploy.backends import load_backend
from deploy.backends.base import NodeHandle
from manager.controlapi.client import cluster_info, list_nodes


def _managers(nodes: list[NodeHandle]) -> dict[str, str]:
    return {n.hostname: str(n.control_addr) for n in nodes if n.role == "manager" and n.control_addr}


def _wait(probe, timeout: float, interval: float = 0.02) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if probe():
                return time.monotonic() - start
        except Exception:  # a manager may be restarting: ask again
            pass
        time.sleep(interval)
    raise TimeoutError(f"not within {timeout} s")


def leader_round(backend, managers: dict[str, str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Kill the leader; return (seconds to a new leader, seconds to old one shown Unreachable)."""
    info = cluster_info(next(iter(managers.values())))
    old = str(info["leader"])
    others = [addr for host, addr in managers.items() if host != old]
    victim = next(n for n in backend.nodes() if n.hostname == old)
    backend.chaos("kill", victim)

    def leader_at(addr: str) -> object:
        try:
            return cluster_info(addr, timeout=0.5).get("leader")
        except Exception:  # this one may be slow to answer: the other may know
            return None

    def new_leader() -> bool:
        return any(leader_at(a) not in (None, old) for a in others)

    elected = _wait(new_leader, 15)

    def unreachable() -> bool:
        rows = list_nodes(others[0], timeout=0.5)
        return any(r.hostname == old and r.manager_status == "Unreachable" for r in rows)

    shown = _wait(unreachable, 15) + elected
    backend.chaos("start", victim)

    def ready_again() -> bool:
        rows = list_nodes(others[0], timeout=0.5)
        return any(r.hostname == old and r.status == "Ready" and r.manager_status == "Reachable"
                   for r in rows)

    _wait(ready_again, 30)
    return elected, shown


def worker_round(backend, managers: dict[str, str]) -> float:  # type: ignore[no-untyped-def]
    """Stop a worker; seconds from asking for the stop until every manager shows it Down."""
    worker = next(n for n in backend.nodes() if n.role == "worker")
    before_stop = time.monotonic()
    backend.chaos("stop", worker)
    stop_took = time.monotonic() - before_stop

    def down_everywhere() -> bool:
        return all(
            any(r.hostname == worker.hostname and r.status == "Down" for r in list_nodes(a, timeout=0.5))
            for a in managers.values()
        )

    took = _wait(down_everywhere, 15) + stop_took  # from the moment the stop was asked for
    backend.chaos("start", worker)
    _wait(lambda: all(r.status == "Ready" for r in list_nodes(next(iter(managers.values())))), 30)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backend = load_backend()
    managers = _managers(backend.nodes())
    elected, shown, down = [], [], []
    for i in range(args.rounds):
        e, s = leader_round(backend, managers)
        managers = _managers(backend.nodes())  # published ports change when a container restarts
        d = worker_round(backend, managers)
        elected.append(e)
        shown.append(s)
        down.append(d)
        print(f"round {i + 1}: new leader {e:.3f} s, old leader Unreachable {s:.3f} s, "
              f"worker Down everywhere {d:.3f} s", flush=True)
    results = (("new leader", elected), ("old leader Unreachable", shown), ("worker Down everywhere", down))
    for name, xs in results:
        print(f"{name}: median {statistics.median(xs):.3f} s, max {max(xs):.3f} s over {len(xs)} rounds")


if __name__ == "__main__":
    main()
