"""Reconciliation on a compose cluster: a worker killed under a service, until its tasks run elsewhere.

    .venv/bin/python bench/compose_reschedule.py --up --project resched --rounds 5
    .venv/bin/python bench/compose_reschedule.py --project swarmlet          # a cluster that is up

Each round: a service of 4 nginx replicas (``--restart-delay`` as given; Swarm's default, 5 s,
when not) runs; a worker that runs some of its tasks is killed (``docker kill``, as `swarmlet
chaos kill`); the managers' Engine API is asked every 20 ms until the node is Down (detection)
and until 4 tasks desired running run on live nodes (replaced). Times run from the moment the
kill returned. Then the worker is started again and the round waits until it is Ready and its
old tasks are reported shut down. "Beyond" is replaced - detection - restart delay: what the
orchestrator, scheduler and agents add to what Swarm's rules ask for (a real Swarm waits the
restart delay too: only a drained node's tasks are replaced at once).

For comparison, a real Swarm in Docker-in-Docker on this machine kind took 19.8 s from the
kill to the replacements running (its heartbeat period is 5 s; issue 10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

from _poll import seconds_until

from deploy.backends.compose import ComposeBackend


def _get(host: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{host}/v1.47{path}", timeout=2) as answer:
        return json.loads(answer.read())


def one_round(backend: ComposeBackend, host: str, service: str) -> tuple[str, float, float]:
    """Kill a worker running tasks of ``service``: (its name, seconds to Down, seconds to replaced)."""
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in _get(host, "/nodes")}
    tasks = _get(host, f'/tasks?filters={{"service":["{service}"],"desired-state":["running"]}}')
    on = [nodes[t["NodeID"]] for t in tasks if t.get("NodeID") and t["Status"]["State"] == "running"]
    victim = next(n for n in backend.nodes() if n.role == "worker" and n.hostname in on)
    backend.chaos("kill", victim)
    # Timed from here, when the kill returned (the call itself looks the container up first).

    def down() -> bool:
        return any(n["Description"]["Hostname"] == victim.hostname and n["Status"]["State"] == "down"
                   for n in _get(host, "/nodes"))  # fmt: skip

    def replaced() -> bool:
        rows = _get(host, f'/tasks?filters={{"service":["{service}"],"desired-state":["running"]}}')
        live = [t for t in rows if t.get("NodeID") and nodes.get(t["NodeID"]) != victim.hostname
                and t["Status"]["State"] == "running"]  # fmt: skip
        return len(live) == 4

    start = time.monotonic()
    seconds_until(down, 30)
    detected = time.monotonic() - start
    seconds_until(replaced, 60)
    took = time.monotonic() - start
    backend.chaos("start", victim)

    def healed() -> bool:
        back = any(n["Description"]["Hostname"] == victim.hostname and n["Status"]["State"] == "ready"
                   for n in _get(host, "/nodes"))  # fmt: skip
        rows = _get(host, f'/tasks?filters={{"service":["{service}"]}}')
        old = [t for t in rows if nodes.get(t.get("NodeID", "")) == victim.hostname]
        return back and all(t["Status"]["State"] not in ("running", "assigned") for t in old)

    seconds_until(healed, 60, 0.2)
    return victim.hostname, detected, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default="swarmlet", help="the compose project (default swarmlet)")
    parser.add_argument("--up", action="store_true", help="bring the project up first and remove it after")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--restart-delay", default=None, metavar="DURATION",
                        help="the service's --restart-delay (default: Swarm's, 5s)")
    args = parser.parse_args()
    swarmlet = [sys.executable, "-m", "deploy.cli", "--project", args.project]
    if args.up:
        subprocess.run([*swarmlet, "up"], check=True, capture_output=True)
    backend = ComposeBackend(project=args.project)
    manager = next(n for n in backend.nodes() if n.hostname == "manager1")
    host = f"{manager.addr}:2375"
    docker = ["docker", "-H", f"tcp://{host}"]
    delay = ["--restart-delay", args.restart_delay] if args.restart_delay else []
    delay_s = float(args.restart_delay.rstrip("s")) if args.restart_delay else 5.0
    service = "resched"
    try:
        subprocess.run([*docker, "service", "create", "-d", "--name", service, "--replicas", "4", *delay,
                        "nginx:1.25"], check=True, capture_output=True)  # fmt: skip
        seconds_until(lambda: len([t for t in _get(host, f'/tasks?filters={{"service":["{service}"]}}')
                           if t["Status"]["State"] == "running"]) == 4, 60, 0.2)  # fmt: skip
        downs, replaced, beyond = [], [], []
        for i in range(args.rounds):
            victim, d, r = one_round(backend, host, service)
            downs.append(d)
            replaced.append(r)
            beyond.append(r - d - delay_s)
            print(f"round {i + 1}: {victim} killed: Down after {d:.2f} s, 4 tasks running on live nodes "
                  f"after {r:.2f} s ({beyond[-1]:+.2f} s beyond detection + {delay_s:g} s restart delay)",
                  flush=True)  # fmt: skip
        for name, xs in (("Down", downs), ("replaced", replaced), ("beyond", beyond)):
            print(f"{name}: median {statistics.median(xs):.2f} s, max {max(xs):.2f} s over {len(xs)} rounds")
    finally:
        subprocess.run([*docker, "service", "rm", service], capture_output=True, check=False)
        if args.up:
            subprocess.run([*swarmlet, "down"], check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
