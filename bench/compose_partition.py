"""A partitioned leader on a running cluster, measured from the host (issue 11's 2-s goal).

For each round: `swarmlet chaos partition LEADER --from OTHER_MANAGERS` (through the same code
the command runs: each agent is told its rules on its gossip port), then time how long until
both other managers name the same new leader, and until the old one answers a write with
"node lost leader status"; then `swarmlet chaos heal` and time until every manager shows five
Ready nodes and one leader.

    .venv/bin/swarmlet --project bench up             # or any cluster; --backend local works too
    SWARMLET_PROJECT=bench .venv/bin/python bench/compose_partition.py --rounds 5

Times run from the moment the last agent took its rules (the command's own time, printed as
"call", comes before that).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from _poll import seconds_until

from deploy.backends import load_backend
from deploy.backends.base import NodeHandle, use_cluster_tls
from deploy.linkfaults import plan
from manager.controlapi.client import list_nodes
from nodeagent.transport.faults import get_link_faults, set_link_faults

LOST = "raft: failed to process the request: node lost leader status"


def _tell(nodes: list[NodeHandle], action: str, node: str | None, peers: list[str]) -> None:
    """What `swarmlet chaos ACTION NODE --from PEERS` does."""
    running = {n.hostname: n for n in nodes if n.state == "running" and n.admin_addr}
    current = {h: get_link_faults(str(n.admin_addr)) for h, n in running.items()}
    for hostname, rules in plan(action, node, peers, None, current).items():
        set_link_faults(str(running[hostname].admin_addr), rules)


def one_round(nodes: list[NodeHandle]) -> tuple[float, float, float, float]:
    """(call, new leader at both other managers, old leader refusing a write, whole after heal)."""
    managers = {n.hostname: str(n.control_addr) for n in nodes if n.role == "manager" and n.control_addr}
    rows = {r.hostname: r for r in list_nodes(next(iter(managers.values())), timeout=2.0)}
    old = next(h for h, r in rows.items() if r.manager_status == "Leader")
    others = [h for h in managers if h != old]
    worker = next(h for h, r in rows.items() if not r.manager_status)
    began = time.monotonic()
    _tell(nodes, "partition", old, others)
    call = time.monotonic() - began

    def new_leader() -> bool:
        seen = set()
        for host in others:
            leaders = [h for h, r in ((r.hostname, r) for r in list_nodes(managers[host], timeout=1.0))
                       if r.manager_status == "Leader"]
            seen.update(leaders)
        return len(seen) == 1 and old not in seen

    engine = next(n.docker_host for n in nodes if n.hostname == old)

    def refused() -> bool:
        # As a user asks it: the docker CLI against the old leader's Engine API.
        answer = subprocess.run(["docker", "-H", str(engine), "node", "update", "--label-add", "bench=cut",
                                 worker], capture_output=True, text=True, timeout=30, check=False)
        return answer.returncode == 1 and LOST in answer.stderr

    elected = seconds_until(new_leader, 15)
    refusing = seconds_until(refused, 15, 0.1)
    healed_at = time.monotonic()
    _tell(nodes, "heal", None, [])

    def whole() -> bool:
        for addr in managers.values():
            rs = list_nodes(addr, timeout=1.0)
            if len(rs) != len(nodes) or any(r.status != "Ready" for r in rs):
                return False
            if [r.manager_status for r in rs].count("Leader") != 1:
                return False
        return True

    seconds_until(whole, 60, 0.1)
    return call, elected, refusing, time.monotonic() - healed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    use_cluster_tls()  # the agents' 7946 and the managers' 2377 take mutual TLS: an operator's certificate
    results = []
    for i in range(args.rounds):
        nodes = load_backend().nodes()
        call, elected, refusing, whole = one_round(nodes)
        results.append((elected, refusing, whole))
        print(f"round {i + 1}: call {call:.3f} s, new leader {elected:.3f} s, old refuses {refusing:.3f} s, "
              f"whole after heal {whole:.3f} s", flush=True)
        time.sleep(2.0)
    for name, column in zip(("new leader", "old refuses", "whole after heal"), zip(*results, strict=True),
                            strict=True):
        print(f"{name}: median {statistics.median(column):.3f} s, max {max(column):.3f} s")


if __name__ == "__main__":
    main()
