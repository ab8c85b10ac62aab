"""python-on-whales (which drives the docker CLI) against swarmlet node processes.

What a user of the library notices: the swarm's join token, the nodes' hostnames and roles, a
label set and read back, a node drained and made active again, a worker promoted and demoted.
Skipped without the docker CLI or the library.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from _docker_cli import DOCKER, requires_docker
from _procs_manager import START_S, Cluster, running, wait_until

pytestmark = requires_docker


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 3, ["worker1"]) as c:
        yield c


@pytest.mark.slow
def test_python_on_whales_round_trip(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    whales = pytest.importorskip("python_on_whales")
    m2 = cluster.managers()[1]
    client = whales.DockerClient(host=f"tcp://{m2.host}:2375", config=str(tmp_path / "docker-config"),
                                 client_call=[str(DOCKER)])

    def settled() -> Any:
        try:
            nodes = client.node.list()
        except whales.DockerException:
            return None
        managers = [n for n in nodes if n.manager_status is not None]
        leaders = [n for n in managers if n.manager_status.leader]
        ready = all(n.status.state == "ready" for n in nodes)
        return nodes if len(nodes) == 4 and len(managers) == 3 and len(leaders) == 1 and ready else None

    try:
        nodes = wait_until(settled, timeout=START_S, what="4 Ready nodes, 3 managers, a leader")
    except AssertionError:
        raise AssertionError(cluster.logs()) from None
    assert sorted(n.description.hostname for n in nodes) == ["manager1", "manager2", "manager3", "worker1"]
    roles = {n.description.hostname: n.spec.role for n in nodes}
    assert roles == {"manager1": "manager", "manager2": "manager", "manager3": "manager", "worker1": "worker"}

    # The swarm: `docker info`'s Swarm section and `docker swarm join-token -q`.
    swarm = client.info().swarm
    assert swarm.local_node_state == "active" and swarm.control_available is True
    assert swarm.managers == 3 and swarm.nodes == 4
    token = client.swarm.join_token("worker")
    assert token.startswith("SWMTKN-1-") and token == client.swarm.join_token("worker")
    assert client.swarm.join_token("manager") != token

    # A label round trip and availability, through a follower or the leader alike.
    worker = client.node.inspect("worker1")
    worker.update(labels_add={"zone": "a"}, availability="drain")
    worker.reload()
    assert worker.spec.labels == {"zone": "a"} and worker.spec.availability == "drain"
    client.node.update("worker1", availability="active", rm_labels=["zone"])
    worker.reload()
    assert worker.spec.labels == {} and worker.spec.availability == "active"

    # Promote and demote: the worker becomes a Reachable manager, then a worker again.
    client.node.promote("worker1")

    def reachability() -> str:
        status = client.node.inspect("worker1").manager_status
        return status.reachability if status is not None else ""

    wait_until(lambda: reachability() == "reachable", timeout=10, what="worker1 a reachable manager")
    client.node.demote("worker1")
    wait_until(lambda: client.node.inspect("worker1").manager_status is None, timeout=15,
               what="worker1 a worker again")
    assert client.node.inspect("worker1").spec.role == "worker"
