"""Promote and demote on real processes: 3 managers and a worker as ``python -m nodeagent``.

The worker is promoted through the control API (as ``docker node promote`` would): it starts its
manager role in-process, joins Raft as a learner, is promoted to voter and shows Reachable (and its
Engine API answers the cluster routes, until it is demoted). It then
takes writes, votes in the election after the old leader is killed, and comes back as a manager
after a restart although its command line says ``--role worker``. Demoting it makes it a worker
again, with 3 voters, its Raft data gone and its session kept. A demotion that would leave no
reachable majority is refused in swarmkit's words; demoting the leader hands its leadership over
first. Time limits are generous: the machine is small and shared.
"""

from __future__ import annotations

import pathlib
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import START_S, Cluster, NodeProc, free_port, wait_until

from manager.controlapi import ControlError, NodeRow, cluster_info, list_nodes, remove_node, update_node


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(3)
    worker = c.add_worker("worker1")
    # Where its manager role will listen once promoted (a worker's --cluster-port is unused until then).
    worker.port = free_port(worker.host)
    worker.args += ["--cluster-port", str(worker.port)]
    try:
        yield c
    finally:
        c.stop_all()


def _rows(m: NodeProc) -> dict[str, NodeRow]:
    return {r.hostname: r for r in list_nodes(m.target, timeout=1.0)}


def _info(m: NodeProc) -> dict[str, Any]:
    return cluster_info(m.target, timeout=1.0)


def _leader(nodes: list[NodeProc]) -> NodeProc | None:
    """The node all of ``nodes`` agree leads (with quorum), or None."""
    names = set()
    for m in nodes:
        info = _info(m)
        if not info["quorum"]:
            return None
        names.add(str(info["leader"]))
    if len(names) != 1:
        return None
    return next(m for m in nodes if m.name in names)


def _voters(m: NodeProc) -> int:
    return int(_info(m)["raft_voters"])


def _serves(m: NodeProc) -> bool:
    try:
        _info(m)
    except ControlError:
        return False
    return True


def _engine_status(node: NodeProc, path: str = "/v1.41/nodes") -> int:
    """The HTTP status the node's Engine API (port 2375) answers ``GET path`` with."""
    try:
        with urllib.request.urlopen(f"http://{node.host}:2375{path}", timeout=2.0) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _settled(c: Cluster, managers: list[NodeProc], voters: int) -> bool:
    leader = _leader(managers)
    if leader is None or _voters(leader) != voters:
        return False
    rows = _rows(leader)
    return all(r.status == "Ready" for r in rows.values()) and all(
        (r.manager_status in ("Leader", "Reachable")) == (r.role == "manager") for r in rows.values()
    )


@pytest.mark.slow
def test_promote_then_demote_a_worker_through_raft(cluster: Cluster) -> None:
    c = cluster
    c.start_all()
    try:
        managers = c.managers()
        worker = c.nodes["worker1"]
        wait_until(lambda: _settled(c, managers, 3) and "worker1" in _rows(managers[0]), START_S, 0.1,
                   "settled")
        leader = _leader(managers)
        assert leader is not None
        worker_id = _rows(leader)["worker1"].id

        # Promote: Reachable within 5 s, a voter of 4, answering the control API itself.
        update_node(leader.target, "worker1", role="manager")
        promoted = time.monotonic()
        wait_until(
            lambda: _rows(leader)["worker1"].manager_status == "Reachable", 10, 0.05, "worker1 Reachable"
        )
        took = time.monotonic() - promoted
        print(f"worker1 Reachable {took:.2f} s after the promotion")
        assert took < 5.0, f"worker1 Reachable only after {took:.2f} s"
        row = _rows(leader)["worker1"]
        assert (row.role, row.id) == ("manager", worker_id)  # the same node, now a manager
        wait_until(lambda: _voters(leader) == 4 and _voters(worker) == 4, 15, 0.1, "4 voters")
        assert _rows(worker)["worker1"].is_self
        # The docker CLI pointed at it now gets the cluster routes (a worker answers them 503).
        assert _engine_status(worker) == 200
        assert (pathlib.Path(c.workdir) / "worker1" / "role").read_text().strip() == "manager"

        # A write through the new manager (forwarded to the leader), read back there.
        update_node(worker.target, "manager2", labels_add={"via": "worker1"})
        assert _rows(leader)["manager2"].labels == {"via": "worker1"}

        # The old leader is killed: the three others (worker1 among them) elect a leader; with 4
        # voters that takes worker1's vote.
        leader.kill(signal.SIGKILL)
        survivors = [m for m in [*managers, worker] if m is not leader]
        new_leader = wait_until(lambda: _leader(survivors), 10, 0.05, "a leader among the 3 survivors")
        print(f"new leader {new_leader.name} after the old one was killed")
        leader.start()
        voters4 = [*managers, worker]
        wait_until(lambda: _settled(c, voters4, 4), 20, 0.1, "4 voters again, all Ready")

        # A restart keeps the role: --role worker on the command line, the kept role wins.
        worker.kill(signal.SIGKILL)
        worker.start()
        wait_until(lambda: _serves(worker) and _settled(c, voters4, 4), 20, 0.1, "worker1 back as a manager")
        assert "wins over --role worker" in worker.log_path.read_text()

        # A manager in Raft cannot be removed, even with force: it must be demoted first.
        with pytest.raises(ControlError) as err:
            remove_node(new_leader.target, "worker1", force=True)
        assert str(err.value) == (
            f"rpc error: code = FailedPrecondition desc = node {worker_id} is a cluster manager and is a "
            "member of the raft cluster. It must be demoted to worker before removal"
        )

        # Demote the promoted worker: a worker again with its session, 3 voters, its Raft data gone.
        update_node(new_leader.target, "worker1", role="worker")
        demoted = time.monotonic()
        wait_until(lambda: _settled(c, managers, 3), 15, 0.1, "worker1 demoted, 3 voters")
        wait_until(lambda: not _serves(worker), 10, 0.1, "worker1's manager role stopped")
        print(f"worker1 out of Raft and its manager role stopped {time.monotonic() - demoted:.2f} s after")
        assert _engine_status(worker) == 503
        row = _rows(managers[0])["worker1"]
        assert (row.role, row.manager_status, row.status, row.id) == ("worker", "", "Ready", worker_id)
        kept = pathlib.Path(c.workdir) / "worker1"
        wait_until(
            lambda: not (kept / "manager").exists() and (kept / "role").read_text().strip() == "worker",
            10, 0.1, "worker1's Raft data wiped and its role kept as worker",
        )  # fmt: skip
        time.sleep(2.0)  # still Ready: its agent session goes on
        assert _rows(managers[0])["worker1"].status == "Ready"

        # With one of the three voters gone, demoting another would lose quorum: refused.
        leader = _leader(managers)
        assert leader is not None
        gone, kept_voter = (m for m in managers if m is not leader)
        gone.kill(signal.SIGKILL)
        time.sleep(2.0)  # beyond the election timeout: the leader no longer counts it reachable
        with pytest.raises(ControlError) as err:
            update_node(leader.target, kept_voter.name, role="worker")
        assert str(err.value) == (
            "rpc error: code = FailedPrecondition desc = can't remove member from the raft: "
            "this would result in a loss of quorum"
        )
        assert _rows(leader)[kept_voter.name].role == "manager"
        gone.start()
        wait_until(lambda: _settled(c, managers, 3), 20, 0.1, f"{gone.name} back, 3 voters")

        # Demote the leader: it hands leadership over first and becomes a worker; 2 voters left.
        old_leader = _leader(managers)
        assert old_leader is not None
        update_node(old_leader.target, old_leader.name, role="worker")
        rest = [m for m in managers if m is not old_leader]
        demoted = time.monotonic()
        wait_until(lambda: _settled(c, rest, 2), 15, 0.1, f"{old_leader.name} demoted, 2 voters")
        wait_until(lambda: not _serves(old_leader), 10, 0.1, f"{old_leader.name}'s manager role stopped")
        took = time.monotonic() - demoted
        print(f"leader {old_leader.name} handed over, out of Raft and stopped {took:.2f} s after")
        row = _rows(rest[0])[old_leader.name]
        assert (row.role, row.manager_status, row.status) == ("worker", "", "Ready")
    except BaseException:
        print(c.logs())
        raise
