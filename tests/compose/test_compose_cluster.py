"""What a user sees of a compose cluster: bring-up, node failures, leader loss, quorum loss."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from deploy.backends.base import NodeHandle
from manager.controlapi.client import NodeRow, list_nodes
from tests.compose.helpers import NODE_CPUS, NODE_MEMORY, backend, status_json, swarmlet, wait_for

NO_LEADER = (
    "The swarm does not have a leader. It's possible that too few managers are online. "
    "Make sure more than half of the managers are online."
)


def nodes() -> list[NodeHandle]:
    return backend().nodes()


def node(hostname: str) -> NodeHandle:
    return next(n for n in nodes() if n.hostname == hostname)


def rows_at(manager: str) -> dict[str, NodeRow]:
    """hostname -> row, as the manager ``manager`` sees the cluster."""
    addr = node(manager).control_addr
    assert addr, f"{manager} publishes no control port"
    return {r.hostname: r for r in list_nodes(addr, timeout=2.0)}


def all_ready() -> bool:
    rows = status_json()
    return len([r for r in rows if r["status"] == "Ready"]) == 5 and any(
        r["manager_status"] == "Leader" for r in rows
    )


@pytest.fixture
def healthy(cluster: str) -> Iterator[None]:
    """Each test starts, and leaves, with every node running and the cluster whole.

    The timeouts of this file's waits (15 to 30 s) are liveness bounds, many times what the
    awaited thing takes; the one speed claim is the worker's time to Down, bounded below.
    """
    wait_for("5 Ready nodes and a leader", all_ready, timeout=30, interval=0.5)
    yield
    for n in nodes():
        if n.state == "paused":
            swarmlet("chaos", "unpause", n.hostname)
        elif n.state != "running":
            swarmlet("chaos", "start", n.hostname)
    wait_for("the cluster to heal", all_ready, timeout=30, interval=0.5)


def test_up_prints_five_ready_nodes_and_one_leader(cluster: str) -> None:
    assert "5 nodes Ready" in cluster
    rows = status_json()
    assert len(rows) == 5
    assert all(r["status"] == "Ready" and r["availability"] == "Active" for r in rows)
    assert sorted(r["role"] for r in rows) == ["manager"] * 3 + ["worker"] * 2
    assert [r["manager_status"] for r in rows].count("Leader") == 1
    table = swarmlet("status").stdout
    assert "MANAGER STATUS" in table and table.count(" * ") == 1


def test_stopped_worker_is_down_within_2s_at_every_live_manager(healthy: None) -> None:
    worker = next(n for n in nodes() if n.role == "worker")
    # The managers' addresses are looked up once, before: each look-up runs `docker compose ps`,
    # whose time (0.3 to 0.8 s on a loaded machine) is not the cluster's.
    addrs = {n.hostname: n.control_addr for n in nodes() if n.role == "manager" and n.control_addr}
    assert sorted(addrs) == ["manager1", "manager2", "manager3"]
    swarmlet("chaos", "stop", worker.hostname)
    stopped = time.monotonic()
    for manager, addr in addrs.items():

        def down_there(a: str = addr) -> bool:
            return {r.hostname: r for r in list_nodes(a, timeout=2.0)}[worker.hostname].status == "Down"

        # Only a liveness bound (a worker never shown Down fails here); the bound is below.
        wait_for(f"{worker.hostname} Down at {manager}", down_there, timeout=15, interval=0.05)
    took = time.monotonic() - stopped
    print(f"{worker.hostname} Down at every manager {took:.3f} s after `swarmlet chaos stop` returned")
    # Measured under load (2 cores, one kept busy by a Python busy loop, two other 5-node clusters
    # up), this very quantity over 15 stops: min 0.011 s, median 0.029 s, max 0.090 s (the agent
    # leaves gracefully on SIGTERM); the bound is 22 times that worst.
    assert took < 2.0, f"{worker.hostname} shown Down at every manager only after {took:.2f} s"
    swarmlet("chaos", "start", worker.hostname)
    wait_for(f"{worker.hostname} Ready again", lambda: rows_at("manager1")[worker.hostname].status == "Ready",
             timeout=15)


def test_killed_leader_is_replaced_and_comes_back_as_follower(healthy: None) -> None:
    old = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    swarmlet("chaos", "kill", old)
    others = [m for m in ("manager1", "manager2", "manager3") if m != old]

    def new_leader() -> str | None:
        rows = rows_at(others[0])
        leader = [h for h, r in rows.items() if r.manager_status == "Leader"]
        unreachable = rows[old].manager_status == "Unreachable"
        return leader[0] if leader and leader[0] != old and unreachable else None

    killed = time.monotonic()
    # 15 s is a liveness bound only. Measured under load (as above, bench/compose_failover.py,
    # 12 rounds): new leader max 0.025 s, old one Unreachable median 0.58 s, max 1.06 s.
    leader = wait_for("a new leader, and the old one Unreachable", new_leader, timeout=15)
    print(f"new leader {leader}, {old} Unreachable: {time.monotonic() - killed:.3f} s after the kill")
    assert leader in others
    swarmlet("chaos", "start", old)

    def follower_again() -> bool:
        row = rows_at(leader)[old]
        return row.status == "Ready" and row.manager_status == "Reachable"

    wait_for(f"{old} Ready and Reachable", follower_again, timeout=20)


def test_without_quorum_writes_fail_with_swarms_message(healthy: None) -> None:
    from manager.controlapi.client import ControlError, update_node

    survivor = "manager1"
    for m in ("manager2", "manager3"):
        swarmlet("chaos", "stop", m)
    target = node(survivor).control_addr
    assert target
    worker = next(n.hostname for n in nodes() if n.role == "worker")

    def refused() -> bool:
        try:
            update_node(target, worker, labels_add={"zone": "a"}, timeout=5.0)
        except ControlError as e:
            return str(e) == NO_LEADER
        return False

    wait_for("the write to be refused with Swarm's no-leader message", refused, timeout=20, interval=0.5)
    swarmlet("chaos", "start", "manager2")

    def accepted() -> bool:
        update_node(target, worker, labels_add={"zone": "b"}, timeout=5.0)
        return True

    wait_for("the write to succeed once a second manager is back", accepted, timeout=30, interval=0.5)
    labels = rows_at(survivor)[worker].labels
    assert labels and labels.get("zone") == "b"


def _forget_down_nodes() -> None:
    """`docker node rm` the rows the re-created workers left behind (Down, under the same names),
    so that the next tests find the five nodes they started with and nothing else."""
    from deploy import engine

    host = next(n.docker_host for n in nodes() if n.hostname == "manager1")
    assert host
    for row in engine.list_nodes(host):
        if (row.get("Status") or {}).get("State") == "down":
            engine.remove_node(host, str(row["ID"]))


def test_workers_that_find_managers_by_mdns_join(healthy: None) -> None:
    # The session cluster's declared capacity (conftest.py) is kept through the re-ups.
    capacity = ("--cpus", str(NODE_CPUS), "--memory", NODE_MEMORY)
    try:
        up = swarmlet("up", "--discover", "mdns", "--timeout", "60", *capacity)
        assert "5 nodes Ready" in up.stdout
        running = [n for n in nodes() if n.role == "worker" and n.state == "running"]
        assert sorted(n.hostname for n in running) == ["worker1", "worker2"]
        for n in running:  # the same named workers, started with --discover=mdns and no --join
            command = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Cmd}}", n.ref],
                                     capture_output=True, text=True, check=True).stdout
            assert "--discover=mdns" in command and "--join" not in command, command
        ready = {r["hostname"] for r in status_json() if r["role"] == "worker" and r["status"] == "Ready"}
        assert ready == {n.hostname for n in running}
    finally:
        swarmlet("up", "--timeout", "60", *capacity)  # back to workers that join by name
        wait_for("the five nodes Ready again", all_ready, timeout=60, interval=0.5)
        wait_for("the replaced workers' rows Down", lambda: len(rows := status_json()) > 5 and len(
            [r for r in rows if r["status"] == "Down"]) == len(rows) - 5, timeout=30, interval=0.5)
        _forget_down_nodes()
        wait_for("five rows again", lambda: len(status_json()) == 5, timeout=30, interval=0.5)
