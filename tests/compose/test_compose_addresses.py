"""Each node on its own address: the real docker CLI at any node, `swarmlet env`, node add and rm."""

from __future__ import annotations

import re

from deploy.addresses import node_addr, parse_name
from tests.compose.helpers import docker_cli, nodes, status_json, swarmlet, wait_for

NAMES = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def block_of(addr: str) -> int:
    return int(addr.split(".")[1])


def docker_node_ls(addr: str) -> list[str]:
    """`docker -H tcp://ADDR:2375 node ls`, the real CLI's lines (header first)."""
    proc = docker_cli(f"tcp://{addr}:2375", "node", "ls", timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_every_node_has_its_own_address_in_the_projects_block(cluster: str) -> None:
    found = nodes()
    assert sorted(found) == NAMES
    block = block_of(str(found["manager1"].addr))
    assert block != 0  # the default project's block is never the tests'
    for name, node in found.items():
        assert node.addr == node_addr(block, *parse_name(name)), name
        assert node.docker_host == f"tcp://{node.addr}:2375"
    # `swarmlet up` showed the addresses and the leader's DOCKER_HOST line.
    for name, node in found.items():
        assert re.search(rf"^{name}\s+{re.escape(str(node.addr))}\s+tcp://", cluster, re.M), cluster
    assert re.search(rf"^export DOCKER_HOST=tcp://127\.{block}\.1\.\d+:2375$", cluster, re.M), cluster


def test_docker_cli_at_manager2_marks_manager2_and_shows_the_stable_hostnames(cluster: str) -> None:
    addr = nodes()["manager2"].addr
    assert addr
    lines = wait_for("5 nodes in docker node ls",
                     lambda: (ls := docker_node_ls(addr)) and len(ls) == 6 and ls, timeout=30, interval=0.5)
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE",
                                "VERSION"]
    marked = [line for line in lines[1:] if line.split()[1] == "*"]
    assert len(marked) == 1 and marked[0].split()[2] == "manager2", lines
    hostnames = sorted(line.split()[2] if line.split()[1] == "*" else line.split()[1] for line in lines[1:])
    assert hostnames == NAMES


def test_env_prints_the_leaders_docker_host_or_the_named_nodes(cluster: str) -> None:
    leader = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    found = nodes()
    assert swarmlet("env").stdout == f"export DOCKER_HOST=tcp://{found[leader].addr}:2375\n"
    assert swarmlet("env", "worker2").stdout == f"export DOCKER_HOST=tcp://{found['worker2'].addr}:2375\n"
    unknown = swarmlet("env", "worker9", check=False)
    assert unknown.returncode == 1 and "No such node: worker9" in unknown.stderr


def test_node_add_then_rm_a_worker(cluster: str) -> None:
    block = block_of(str(nodes()["manager1"].addr))
    added = swarmlet("node", "add", timeout=120)
    addr = f"127.{block}.2.3"
    assert added.stdout.startswith(f"worker3 ({addr}) joined the swarm as a worker in "), added.stdout
    assert added.stdout.endswith(f"export DOCKER_HOST=tcp://{addr}:2375\n")
    try:
        rows = {r["hostname"]: r for r in status_json()}
        assert rows["worker3"]["status"] == "Ready" and rows["worker3"]["role"] == "worker"
        assert nodes()["worker3"].addr == addr
        # Its own engine answers there, as a worker's: Swarm's 503 for a cluster request.
        lines = docker_cli(f"tcp://{addr}:2375", "node", "ls", timeout=30)
        assert lines.returncode == 1 and "This node is not a swarm manager" in lines.stderr
    finally:
        removed = swarmlet("node", "rm", "worker3", timeout=120)
    assert removed.stdout.strip() == f"Removed worker3 ({addr})"
    assert "worker3" not in nodes()
    assert "worker3" not in {r["hostname"] for r in status_json()}  # `docker node rm` was done too
    assert len(docker_node_ls(str(nodes()["manager1"].addr))) == 6
