"""Services on an overlay network, end to end with the real docker CLI.

One manager and two workers run as ``python -m nodeagent``. `docker network create -d overlay`
makes a network (VNI and subnet from the managers' IPAM); a web service and a busybox client join
it; the allocator gives each task an address there; the agents publish them in the network
database and the client fetches the web page by the service's name, through the embedded DNS,
the service's VIP and the tunnel between nodes. A client on another overlay gets no answer.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import START_S, Cluster, running, wait_until

pytestmark = requires_docker


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 1, ["worker1", "worker2"]) as c:
        yield c



@pytest.mark.slow
def test_a_task_reaches_a_service_by_name_over_the_overlay(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    manager = cluster.managers()[0].host

    def ready() -> bool:
        done = docker(tmp_path, manager, "node", "ls", "--format", "{{.Status}}")
        return done.returncode == 0 and done.stdout.split() == ["Ready"] * 3

    wait_until(ready, timeout=START_S, what="3 nodes Ready")
    for network in ("appnet", "othernet"):
        done = docker(tmp_path, manager, "network", "create", "-d", "overlay", network)
        assert done.returncode == 0, done.stderr
    done = docker(tmp_path, manager, "service", "create", "-d", "--name", "web", "--network", "appnet",
                  "--replicas", "2", "nginx:1.25")
    assert done.returncode == 0, done.stderr
    fetch = "sleep 2" + "; wget -qO- http://web/; sleep 1" * 8 + "; sleep 600"
    for name, network in (("client", "appnet"), ("stranger", "othernet")):
        done = docker(tmp_path, manager, "service", "create", "-d", "--name", name, "--network", network,
                      "busybox", "sh", "-c", fetch)
        assert done.returncode == 0, done.stderr

    def logs(service: str) -> str:
        done = docker(tmp_path, manager, "service", "logs", "--raw", service)
        return done.stdout + done.stderr  # a task's stderr lines come out on the CLI's stderr

    # Slack: both pages arrive within ~4 s here (tasks start, publish, resolve); 30 s bound.
    # The fetches go through the service's VIP: round robin over its two tasks.
    def both_tasks_answered() -> bool:
        text = logs("client")
        return "image nginx:1.25, task web.1." in text and "image nginx:1.25, task web.2." in text

    wait_until(both_tasks_answered, timeout=30, what="pages of both web tasks fetched over the overlay")
    inspect = docker(tmp_path, manager, "network", "inspect", "appnet", "--format", "{{json .IPAM.Config}}")
    subnet = inspect.stdout.strip()
    assert '"Subnet":"10.0.' in subnet, subnet
    stranger = wait_until(lambda: logs("stranger"), timeout=30, what="the stranger's first lines")
    assert "image nginx" not in stranger
    assert "bad address 'web'" in stranger or "can't connect" in stranger, stranger
