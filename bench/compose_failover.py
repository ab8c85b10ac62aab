"""Failure detection on a running compose cluster, measured from the host.

For each round: kill the leader's container and time how long until every other manager reports
the same new leader (Raft) and the old one Unreachable; start it again and wait until it is a
Ready follower. Then stop a worker's container and time until every live manager shows it Down.

With ``--pause`` the leader's container is paused (``docker pause``) instead of killed, and
unpaused after. The two differ in what the followers can know: a killed process's port refuses
connections, so the followers' shells find out at once and tell their cores
(``report_leader_unreachable``); a paused one refuses nothing (its kernel still accepts
connections), so only the election timeout (0.4 to 0.8 s after the last heartbeat) notices.
``--both`` runs a kill and a pause in each round.

    make up                                  # or .venv/bin/swarmlet up
    .venv/bin/python bench/compose_failover.py --rounds 5 [--pause | --both] [--no-worker]

Leader times run from the moment `docker kill` / `docker pause` returned, so they include
detection (the call itself took the printed "call" time before that); the worker time runs
from the moment the stop was asked for (the agent leaves gracefully on SIGTERM).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _poll import seconds_until

from deploy.backends import load_backend
from deploy.backends.base import NodeHandle, use_cluster_tls
from manager.controlapi.client import cluster_info, list_nodes


def _managers(nodes: list[NodeHandle]) -> dict[str, str]:
    return {n.hostname: str(n.control_addr) for n in nodes if n.role == "manager" and n.control_addr}


def leader_round(backend, managers: dict[str, str], fault: str = "kill") -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Kill (or pause) the leader; return (seconds to a new leader seen by every other manager,
    seconds to the old one shown Unreachable, seconds the docker call took)."""
    info = cluster_info(next(iter(managers.values())))
    old = str(info["leader"])
    others = [addr for host, addr in managers.items() if host != old]
    victim = next(n for n in backend.nodes() if n.hostname == old)
    called = time.monotonic()
    backend.chaos(fault, victim)
    call_took = time.monotonic() - called

    def leader_at(addr: str) -> object:
        try:
            return cluster_info(addr, timeout=0.5).get("leader")
        except Exception:  # this one may be slow to answer: the other may know
            return None

    def new_leader() -> bool:
        seen = {leader_at(a) for a in others}
        return len(seen) == 1 and seen.isdisjoint((None, "", old))

    elected = seconds_until(new_leader, 15)

    def unreachable() -> bool:
        rows = list_nodes(others[0], timeout=0.5)
        return any(r.hostname == old and r.manager_status == "Unreachable" for r in rows)

    shown = seconds_until(unreachable, 15) + elected
    backend.chaos("unpause" if fault == "pause" else "start", victim)

    def ready_again() -> bool:
        rows = list_nodes(others[0], timeout=0.5)
        return any(r.hostname == old and r.status == "Ready" and r.manager_status == "Reachable"
                   for r in rows)

    seconds_until(ready_again, 30)
    return elected, shown, call_took


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

    took = seconds_until(down_everywhere, 15) + stop_took  # from the moment the stop was asked for
    backend.chaos("start", worker)
    seconds_until(lambda: all(r.status == "Ready" for r in list_nodes(next(iter(managers.values())))), 30)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", action="store_true", help="pause the leader instead of killing it")
    parser.add_argument("--both", action="store_true", help="kill and pause the leader in each round")
    parser.add_argument("--no-worker", action="store_true", help="skip the worker rounds")
    args = parser.parse_args()
    faults = ("kill", "pause") if args.both else ("pause",) if args.pause else ("kill",)
    use_cluster_tls()  # the managers' 2377 takes mutual TLS: an operator certificate of the cluster's CA
    backend = load_backend()
    managers = _managers(backend.nodes())
    results: dict[str, list[float]] = {}
    for i in range(args.rounds):
        line = []
        for fault in faults:
            e, s, call = leader_round(backend, managers, fault)
            managers = _managers(backend.nodes())  # published ports change when a container restarts
            results.setdefault(f"{fault}: new leader", []).append(e)
            results.setdefault(f"{fault}: old leader Unreachable", []).append(s)
            line.append(f"{fault}: new leader {e:.3f} s (call {call:.3f} s), "
                        f"old leader Unreachable {s:.3f} s")
        if not args.no_worker:
            d = worker_round(backend, managers)
            results.setdefault("worker Down everywhere", []).append(d)
            line.append(f"worker Down everywhere {d:.3f} s")
        print(f"round {i + 1}: " + "; ".join(line), flush=True)
    for name, xs in results.items():
        print(f"{name}: median {statistics.median(xs):.3f} s, max {max(xs):.3f} s over {len(xs)} rounds")


if __name__ == "__main__":
    main()
