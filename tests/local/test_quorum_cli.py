"""The real docker CLI against a swarm that loses its leader, then its quorum.

Three managers and a worker run as processes. The leader's process is killed: another manager's
``docker node ls`` shows it Unreachable and a new Leader. Then two of the three managers are
stopped, twice: once the survivor is the leader (it still lists itself Leader and refuses
``docker node update`` with swarmkit's "node lost leader status"), once a follower (Swarm's
"The swarm does not have a leader..."). Both are gRPC ``Unknown``, so Docker's 500. After the
managers come back, the label that was refused is absent: the refused write changed nothing.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator

import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import START_S, Cluster, NodeProc, running, wait_until

from manager.controlapi import cluster_info
from manager.state.raft.shell import NO_LEADER_MESSAGE

pytestmark = requires_docker

LOST = ("Error response from daemon: rpc error: code = Unknown desc = raft: failed to process the request: "
        "node lost leader status")
NO_LEADER = f"Error response from daemon: rpc error: code = Unknown desc = {NO_LEADER_MESSAGE}"


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 3, ["worker1"]) as c:
        yield c


def statuses(tmp: pathlib.Path, host: str) -> dict[str, str] | None:
    """Hostname -> MANAGER STATUS, as ``docker node ls`` on ``host`` prints them."""
    done = docker(tmp, host, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
    if done.returncode != 0:
        return None
    found = {}
    for line in done.stdout.splitlines():
        host, _, status = line.partition(" ")
        found[host] = status
    return found


def leader_of(tmp: pathlib.Path, cluster: Cluster, asked: NodeProc) -> NodeProc | None:
    got = statuses(tmp, asked.host)
    if not got:
        return None
    leaders = [name for name, status in got.items() if status == "Leader"]
    if len(leaders) != 1 or list(got.values()).count("Reachable") != 2:
        return None
    return cluster.nodes[leaders[0]]


def labels(tmp: pathlib.Path, host: str) -> dict[str, str] | None:
    done = docker(tmp, host, "node", "inspect", "--format", "{{json .Spec.Labels}}", "worker1")
    return json.loads(done.stdout) if done.returncode == 0 else None


def knows_no_leader(node: NodeProc) -> bool:
    """Whether the manager's Raft knows no leader (a leader stepped down by check-quorum)."""
    return not cluster_info(node.target, timeout=2.0)["quorum"]


def voters_everywhere(cluster: Cluster) -> bool:
    """Whether every manager's Raft counts all three managers as voters."""
    return all(cluster_info(m.target, timeout=2.0)["raft_voters"] == 3 for m in cluster.managers())


def lose_quorum(tmp: pathlib.Path, cluster: Cluster, survivor: NodeProc, words: str) -> None:
    others = [m for m in cluster.managers() if m is not survivor]
    for m in others:
        m.kill()
    # Check-quorum steps a leader without a majority down within two election timeouts (0.8 s
    # at time scale 1), so that the refused write is never proposed; wait for that end state.
    wait_until(lambda: knows_no_leader(survivor), timeout=30, what=f"{survivor.name} without a leader")
    listed = statuses(tmp, survivor.host)  # reads are local: still served
    print(survivor.name, listed)
    assert listed is not None and listed.get(survivor.name) == ("Leader" if words == LOST else "Reachable")
    start = time.monotonic()
    refused = docker(tmp, survivor.host, "node", "update", "--label-add", "x=y", "worker1")
    print(refused.stderr, f"{time.monotonic() - start:.2f} s")
    assert (refused.returncode, refused.stderr.strip()) == (1, words)
    assert labels(tmp, survivor.host) == {}
    form = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
    info = docker(tmp, survivor.host, "info", "--format", form)
    assert info.stdout.strip() == "active true"
    for m in others:
        m.start()
    wait_until(lambda: leader_of(tmp, cluster, survivor), timeout=START_S, what="quorum back: a Leader")
    for m in cluster.managers():  # the refused write changed nothing
        def read(host: str = m.host) -> tuple[dict[str, str]] | None:
            got = labels(tmp, host)
            return None if got is None else (got,)

        assert wait_until(read, timeout=30, what=f"worker1 on {m.name}") == ({},), m.name


@pytest.mark.slow
def test_leader_killed_then_quorum_lost(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    m1, m2, m3 = cluster.managers()
    try:
        first = wait_until(lambda: leader_of(tmp_path, cluster, m2), timeout=START_S,
                           what="a Leader, 2 Reachable")
    except AssertionError:
        raise AssertionError(cluster.logs()) from None
    # Managers list Reachable as soon as they join Raft as learners; wait until the leader has
    # made them voters (within a second here), or the two left could not elect anyone.
    wait_until(lambda: voters_everywhere(cluster), timeout=30, what="three voters on every manager")
    first.kill()
    asked = m2 if first is not m2 else m3

    seen: list[object] = []

    def failed_over() -> dict[str, str] | None:
        got = statuses(tmp_path, asked.host)
        seen[:] = [got]
        if not got or got.get(first.name) != "Unreachable":
            return None
        return got if list(got.values()).count("Leader") == 1 else None

    try:
        got = wait_until(failed_over, timeout=30, what="the old leader Unreachable, a new Leader")
    except AssertionError:
        raise AssertionError(f"{first.name} killed, {asked.name} lists {seen}\n{cluster.logs()}") from None
    print(got)
    assert got[first.name] == "Unreachable" and got["worker1"] == ""
    first.start()
    leader = wait_until(lambda: leader_of(tmp_path, cluster, asked), timeout=START_S, what="3 managers again")

    # The survivor was the leader: it still lists itself Leader, and refuses writes.
    lose_quorum(tmp_path, cluster, leader, LOST)
    # The survivor was a follower: Swarm's no-leader message.
    leader = wait_until(lambda: leader_of(tmp_path, cluster, m1), timeout=30, what="a Leader")
    follower = next(m for m in cluster.managers() if m is not leader)
    lose_quorum(tmp_path, cluster, follower, NO_LEADER)
