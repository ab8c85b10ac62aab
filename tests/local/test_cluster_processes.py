"""Managers and workers as processes on 127.0.0.x: what `docker node ls` would show as nodes fail.

Three managers (the first bootstraps the cluster) and two workers join with Swarm-shaped tokens.
Then: a stopped worker shows Down everywhere within 2 s; a killed leader is replaced and shown
Unreachable, and rejoins as a follower when restarted; with two of three managers gone the last
one has no quorum and refuses a write with Swarm's message, and accepts it once one is back; a
wrong or missing token stops the joining node with exit code 3 and leaves the cluster unchanged.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import START_S, Cluster, NodeProc, wait_until

from manager.ca.tokens import rotate_token
from manager.controlapi import ControlError, NodeRow, cluster_info, list_nodes, update_node

NO_LEADER = (
    "The swarm does not have a leader. It's possible that too few managers are online. "
    "Make sure more than half of the managers are online."
)


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(3)
    c.add_worker("worker1")
    c.add_worker("worker2")
    try:
        yield c
    finally:
        c.stop_all()


def _rows(m: NodeProc) -> dict[str, NodeRow]:
    return {r.hostname: r for r in list_nodes(m.target, timeout=1.0)}


def _all_ready(c: Cluster) -> bool:
    for m in c.managers():
        rows = _rows(m)
        if sorted(rows) != ["manager1", "manager2", "manager3", "worker1", "worker2"]:
            return False
        if any(r.status != "Ready" for r in rows.values()):
            return False
        if sorted(r.manager_status for r in rows.values()) != ["", "", "Leader", "Reachable", "Reachable"]:
            return False
        if cluster_info(m.target, timeout=1.0)["raft_voters"] != 3:
            return False
    return True


def _leader_name(m: NodeProc) -> str | None:
    info = cluster_info(m.target, timeout=1.0)
    return info["leader"] if info["quorum"] else None  # type: ignore[return-value]


@pytest.mark.slow
def test_node_status_follows_failures_and_quorum(cluster: Cluster) -> None:
    c = cluster
    c.start_all()
    try:
        wait_until(lambda: _all_ready(c), START_S, 0.1, "5 nodes Ready with one leader")
        managers = c.managers()
        rows = _rows(managers[0])
        assert rows["worker1"].role == "worker" and rows["manager2"].role == "manager"
        assert rows["worker1"].availability == "Active" and rows["worker1"].engine_version

        # A worker is killed: every manager shows it Down within 3 s. The waits themselves are
        # only a liveness bound (never Down fails them); the bound is on the time measured.
        c.nodes["worker2"].kill(signal.SIGKILL)
        stopped = time.monotonic()
        for m in managers:
            wait_until(
                lambda m=m: _rows(m)["worker2"].status == "Down", 10, 0.05, f"worker2 Down on {m.name}"
            )
        took = time.monotonic() - stopped
        print(f"worker2 Down at every manager {took:.3f} s after SIGKILL")
        # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy
        # loop): min 1.30 s, median 1.39 s, max 1.54 s; 5 later runs at load average 7 to 10: 1.22
        # to 1.56 s. The bound is twice the worst of those (it was 2.0 s, 1.3 times the worst: too
        # tight; bench/loaded_test_timings.py measures again).
        assert took < 3.0, f"worker2 shown Down only after {took:.2f} s"

        # The leader is killed: a new leader; the old one is shown Unreachable; back as a follower.
        old_name = _leader_name(managers[0])
        assert old_name is not None
        old = c.nodes[old_name]
        survivors = [m for m in managers if m is not old]
        old.kill(signal.SIGKILL)
        killed = time.monotonic()
        new_name = wait_until(
            lambda: (
                all(_leader_name(m) not in (None, old_name) for m in survivors) and _leader_name(survivors[0])
            ),
            5,
            0.02,
            "a new leader",
        )
        failover = time.monotonic() - killed
        print(f"new leader {new_name} {failover:.3f} s after the old one was killed")
        # Followers notice a dead leader after their election timeout (0.4 to 0.8 s) at worst
        # (a refused connection tells them sooner); the election after that must take under 1 s.
        # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy
        # loop): min 0.042 s, median 0.078 s, max 0.131 s (5 later runs at load average 7 to 10:
        # max 0.072 s); the bound is 14 times that worst.
        assert failover < 1.8, f"new leader after {failover:.2f} s"
        wait_until(
            lambda: _rows(survivors[0])[old_name].manager_status == "Unreachable",
            5,
            0.05,
            "old leader Unreachable",
        )
        old.start()
        wait_until(
            lambda: (
                _rows(c.nodes[str(new_name)])[old_name].status == "Ready"
                and _rows(c.nodes[str(new_name)])[old_name].manager_status == "Reachable"
            ),
            15,
            0.1,
            "the old leader Ready and Reachable again",
        )
        wait_until(
            lambda: cluster_info(old.target)["raft_role"] == "follower", 3, 0.05, "old leader a follower"
        )
        assert _leader_name(old) == new_name

        # Two of three managers stop: no quorum, writes fail with Swarm's words; one back, they work.
        last = managers[0]
        gone = [m for m in managers if m is not last]
        for m in gone:
            m.kill(signal.SIGKILL)
        wait_until(lambda: not cluster_info(last.target, timeout=1.0)["quorum"], 5, 0.05, "quorum lost")
        before = _rows(last)["worker1"]
        with pytest.raises(ControlError) as err:
            update_node(last.target, "worker1", labels_add={"tier": "front"})
        assert str(err.value) == NO_LEADER
        assert _rows(last)["worker1"].labels == before.labels
        gone[0].start()

        def write_works() -> bool:
            update_node(last.target, "worker1", labels_add={"tier": "front"}, timeout=3.0)
            return True

        wait_until(write_works, 20, 0.2, "a write once quorum is back")
        # node ls reads the answering manager's own store, which applies the write a moment later
        # when it is a follower.
        wait_until(
            lambda: _rows(last)["worker1"].labels == {"tier": "front"}, 3, 0.05, "the label in node ls"
        )
    except AssertionError:
        print(c.logs())
        raise


@pytest.mark.slow
def test_wrong_or_missing_token_is_refused_and_changes_nothing(tmp_path: Any) -> None:
    c = Cluster(tmp_path)
    (m,) = c.add_managers(1)
    try:
        m.start()
        wait_until(lambda: "manager1" in _rows(m), START_S, 0.1, "the first manager registered")

        def settled() -> Any:
            # The leader writes its own Node once more after it registered (the root its
            # certificate presents, checked about once a second): wait until the rows hold still.
            first = _rows(m)
            time.sleep(2.0)
            return first if _rows(m) == first else None

        before = wait_until(settled, START_S, 0.1, "manager1's row settled")
        # This cluster's CA digest with a secret that is not one of its tokens' (a token of
        # another CA is refused earlier, before it is sent: tests/local/test_mtls_processes.py).
        wrong = c.add_worker("intruder", token=rotate_token(c.credentials.worker_token))
        missing = c.add_worker("tokenless", token=None)
        for node in (wrong, missing):
            node.start()
            assert node.proc is not None
            assert node.proc.wait(20) == 3
            assert "A valid join token is necessary to join this cluster" in node.log_path.read_text()
        assert _rows(m) == before
    finally:
        c.stop_all()
