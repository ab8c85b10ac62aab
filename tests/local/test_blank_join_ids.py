"""A blank engine joined with the real ``docker swarm join`` takes the node ID the CA chose.

Three nodes start with ``--no-swarm``: node1 is the swarm's first manager (``docker swarm init``),
node2 joins with the worker token and node3 with the manager token. Each joined node is listed by
``docker node ls`` under its certificate's CN, which its own ``docker info`` says too, never under
the ID it ran with while blank. node2 then leaves (``swarm leave --force``), is removed (``docker
node rm``) and joins again: it is Ready under a new ID, as in Swarm, where every join gets its ID
from the CA (the node used to keep its ID and be refused as removed). Skipped with no docker binary.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest
from _docker_cli import docker, docker_info, node_table, requires_docker
from _procs_manager import Cluster, NodeProc, wait_until

from nodeagent import tls
from nodeagent.identity import is_id

pytestmark = requires_docker

TIME_SCALE = 0.5


def _info(tmp: pathlib.Path, node: NodeProc, field: str) -> str:
    return docker_info(tmp, node.host, field)


def _listed(tmp: pathlib.Path, manager: NodeProc) -> dict[str, tuple[str, ...]]:
    """hostname -> (ID, STATUS, MANAGER STATUS) from ``docker node ls``."""
    return node_table(tmp, manager.host, "ID", "Status", "ManagerStatus")


def _certificate_cn(tmp: pathlib.Path, node: NodeProc) -> str:
    held = tls.NodeCredentials.load(tmp / node.name)
    assert held is not None, f"{node.name} holds no certificate"
    return held.identity.node_id


def _node_id_file(tmp: pathlib.Path, node: NodeProc) -> str:
    return (tmp / node.name / "node_id").read_text().strip()


@pytest.mark.slow
def test_a_blank_node_joins_under_the_id_its_certificate_names_and_a_new_one_after_rm(
    blank_engines: Callable[..., Cluster], tmp_path: pathlib.Path
) -> None:
    blanks = blank_engines("node1", "node2", "node3", time_scale=TIME_SCALE)
    n1, n2, n3 = (blanks.nodes[f"node{i}"] for i in range(1, 4))
    try:
        blank_ids = {node.name: _node_id_file(tmp_path, node) for node in (n2, n3)}
        init = docker(tmp_path, n1.host, "swarm", "init", "--advertise-addr", n1.host)
        assert init.returncode == 0, init.stderr + blanks.logs()
        worker_token = docker(tmp_path, n1.host, "swarm", "join-token", "-q", "worker").stdout.strip()
        manager_token = docker(tmp_path, n1.host, "swarm", "join-token", "-q", "manager").stdout.strip()
        remote = f"{n1.host}:{n1.port}"

        done = docker(tmp_path, n2.host, "swarm", "join", "--token", worker_token, remote)
        assert (done.returncode, done.stdout.strip()) == (0, "This node joined a swarm as a worker."), \
            done.stderr + blanks.logs()
        done = docker(tmp_path, n3.host, "swarm", "join", "--token", manager_token, remote)
        assert (done.returncode, done.stdout.strip()) == (0, "This node joined a swarm as a manager."), \
            done.stderr + blanks.logs()

        def all_ready() -> dict[str, tuple[str, ...]] | None:
            found = _listed(tmp_path, n1)
            states = {name: row[1:] for name, row in found.items()}
            wanted = {"node1": ("Ready", "Leader"), "node2": ("Ready", ""), "node3": ("Ready", "Reachable")}
            return found if states == wanted else None

        listed = wait_until(all_ready, timeout=30, what="node ls: node2 Ready, node3 Reachable")
        for node in (n2, n3):
            cn = _certificate_cn(tmp_path, node)
            # The ID the CA chose: listed by the managers, said by the node, kept in its data dir.
            assert is_id(cn) and listed[node.name][0] == cn
            assert cn != blank_ids[node.name]
            assert _info(tmp_path, node, "Swarm.NodeID") == cn
            assert _node_id_file(tmp_path, node) == cn
        first_id = listed["node2"][0]

        # node2 leaves, is removed, and joins again: a new ID from the CA, Ready again.
        done = docker(tmp_path, n2.host, "swarm", "leave", "--force")
        assert (done.returncode, done.stdout.strip()) == (0, "Node left the swarm."), done.stderr
        assert _info(tmp_path, n2, "Swarm.NodeID") == ""
        assert _node_id_file(tmp_path, n2) != first_id  # forgotten with the swarm
        wait_until(lambda: _listed(tmp_path, n1).get("node2", ("", ""))[1] == "Down", timeout=30,
                   what="node2 Down")
        done = docker(tmp_path, n1.host, "node", "rm", "node2")
        assert done.returncode == 0, done.stderr
        done = docker(tmp_path, n2.host, "swarm", "join", "--token", worker_token, remote)
        assert (done.returncode, done.stdout.strip()) == (0, "This node joined a swarm as a worker."), \
            done.stderr + blanks.logs()
        again = wait_until(lambda: (row := _listed(tmp_path, n3).get("node2")) and row[1] == "Ready" and row,
                           timeout=30, what="node2 Ready again, listed by the second manager")
        second_id = _certificate_cn(tmp_path, n2)
        assert again[0] == second_id != first_id
        assert _info(tmp_path, n2, "Swarm.NodeID") == second_id
        assert first_id not in {row[0] for row in _listed(tmp_path, n1).values()}
    except AssertionError:
        print(blanks.logs())
        raise
