"""The real docker CLI makes a swarm out of blank engines: init, join-token, join, leave, rotate.

Four nodes start with ``--no-swarm`` (``python -m nodeagent`` on their own 127.x addresses):
each says "Swarm: inactive" until ``docker swarm init`` on node1 makes it the first manager;
node2 and node3 join with the worker token, node4 with the manager token; ``docker node ls``
lists all four. Then node3 leaves (``swarm leave --force``), the managers see it Down and ``node
rm`` removes it; ``join-token --rotate worker`` makes the old token useless, and node3 joins
again with the new one. Skipped when no docker binary is installed.
"""

from __future__ import annotations

import pathlib
import re
import signal
import time
from collections.abc import Callable

import pytest
from _docker_cli import docker, docker_info, node_table, requires_docker
from _procs_manager import Cluster, NodeProc, wait_until

pytestmark = requires_docker

# Timers run at half speed here: a node that left is Down after its grace (3 heartbeat periods).
TIME_SCALE = 0.5


def _state(tmp: pathlib.Path, node: NodeProc) -> str:
    return docker_info(tmp, node.host, "Swarm.LocalNodeState")


def _nodes(tmp: pathlib.Path, manager: NodeProc) -> dict[str, tuple[str, ...]]:
    """hostname -> (STATUS, MANAGER STATUS) from ``docker node ls``."""
    return node_table(tmp, manager.host, "Status", "ManagerStatus")


@pytest.mark.slow
def test_docker_swarm_init_join_leave_rotate(blank_engines: Callable[..., Cluster],
                                             tmp_path: pathlib.Path) -> None:
    blanks = blank_engines("node1", "node2", "node3", "node4", time_scale=TIME_SCALE)
    n1, n2, n3, n4 = (blanks.nodes[f"node{i}"] for i in range(1, 5))
    try:
        refused = docker(tmp_path, n1.host, "node", "ls")
        assert refused.returncode == 1 and "docker swarm init" in refused.stderr

        began = time.monotonic()
        init = docker(tmp_path, n1.host, "swarm", "init", "--advertise-addr", n1.host)
        print(f"swarm init: {time.monotonic() - began:.2f} s\n{init.stdout}{init.stderr}")
        assert init.returncode == 0, init.stderr + blanks.logs()
        assert re.match(r"Swarm initialized: current node \([0-9a-z]{25}\) is now a manager\.", init.stdout)
        assert f"{n1.host}:{n1.port}" in init.stdout
        again = docker(tmp_path, n1.host, "swarm", "init", "--advertise-addr", n1.host)
        assert again.returncode == 1 and "This node is already part of a swarm." in again.stderr

        worker_token = docker(tmp_path, n1.host, "swarm", "join-token", "-q", "worker").stdout.strip()
        manager_token = docker(tmp_path, n1.host, "swarm", "join-token", "-q", "manager").stdout.strip()
        assert worker_token.startswith("SWMTKN-1-") and manager_token.startswith("SWMTKN-1-")
        assert worker_token != manager_token

        remote = f"{n1.host}:{n1.port}"
        for node in (n2, n3):
            began = time.monotonic()
            done = docker(tmp_path, node.host, "swarm", "join", "--token", worker_token, remote)
            print(f"{node.name} join: {time.monotonic() - began:.2f} s {done.stdout}{done.stderr}")
            assert (done.returncode, done.stdout.strip()) == (0, "This node joined a swarm as a worker."), \
                done.stderr + blanks.logs()
        began = time.monotonic()
        done = docker(tmp_path, n4.host, "swarm", "join", "--token", manager_token, remote)
        print(f"node4 join as a manager: {time.monotonic() - began:.2f} s {done.stdout}{done.stderr}")
        assert (done.returncode, done.stdout.strip()) == (0, "This node joined a swarm as a manager."), \
            done.stderr + blanks.logs()

        def four() -> dict[str, tuple[str, ...]] | None:
            found = _nodes(tmp_path, n1)
            wanted = {"node1": ("Ready", "Leader"), "node2": ("Ready", ""), "node3": ("Ready", ""),
                      "node4": ("Ready", "Reachable")}
            return found if found == wanted else None

        listed = wait_until(four, timeout=30, what="node ls: four nodes, node4 Reachable")
        print(docker(tmp_path, n4.host, "node", "ls").stdout)
        assert listed
        assert _state(tmp_path, n2) == "active"

        # A manager is refused without --force (the last of two reachable: quorum would be lost).
        done = docker(tmp_path, n4.host, "swarm", "leave")
        assert done.returncode == 1
        assert done.stderr.strip() == (
            "Error response from daemon: You are attempting to leave the swarm on a node that is "
            "participating as a manager. Removing this node leaves 1 managers out of 2. Without a Raft "
            "quorum your swarm will be inaccessible. The only way to restore a swarm that has lost "
            "consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this "
            "message.")

        # A worker leaves: inactive at once, Down on the managers, then removed.
        done = docker(tmp_path, n3.host, "swarm", "leave", "--force")
        assert (done.returncode, done.stdout.strip()) == (0, "Node left the swarm."), done.stderr
        assert _state(tmp_path, n3) == "inactive"
        began = time.monotonic()
        wait_until(lambda: _nodes(tmp_path, n1).get("node3", ("",))[0] == "Down", timeout=30,
                   what="node3 Down")
        print(f"node3 Down {time.monotonic() - began:.2f} s after it left")
        done = docker(tmp_path, n1.host, "node", "rm", "node3")
        assert done.returncode == 0, done.stderr
        assert "node3" not in _nodes(tmp_path, n1)

        # Rotating the worker token: the old one is refused, the new one works.
        done = docker(tmp_path, n1.host, "swarm", "join-token", "--rotate", "worker")
        print(done.stdout)
        assert done.returncode == 0 and "Successfully rotated worker join token." in done.stdout
        new_token = docker(tmp_path, n1.host, "swarm", "join-token", "-q", "worker").stdout.strip()
        assert new_token != worker_token and new_token[:60] == worker_token[:60]  # same CA digest
        done = docker(tmp_path, n3.host, "swarm", "join", "--token", worker_token, remote)
        assert done.returncode == 1
        assert done.stderr.strip() == ("Error response from daemon: rpc error: code = InvalidArgument desc = "
                                       "A valid join token is necessary to join this cluster")
        assert _state(tmp_path, n3) == "inactive"
        done = docker(tmp_path, n3.host, "swarm", "join", "--token", new_token, remote)
        joined = (0, "This node joined a swarm as a worker.")
        assert (done.returncode, done.stdout.strip()) == joined, done.stderr
        wait_until(lambda: _nodes(tmp_path, n4).get("node3") == ("Ready", ""), timeout=30,
                   what="node3 back, listed by the second manager")

        # The cluster's settings, through the Cluster object; no autolock, so no unlock key.
        done = docker(tmp_path, n1.host, "swarm", "update", "--task-history-limit", "7",
                      "--dispatcher-heartbeat", "3s")
        assert (done.returncode, done.stdout.strip()) == (0, "Swarm updated."), done.stderr
        info = docker(tmp_path, n4.host, "info").stdout
        assert "Task History Retention Limit: 7" in info and "Heartbeat Period: 3 seconds" in info, info
        done = docker(tmp_path, n1.host, "swarm", "unlock-key")
        assert (done.returncode, done.stderr.strip()) == (1, "no unlock key is set")

        # A restart comes back in the swarm the node entered through the Engine API.
        for node in (n1, n2):
            node.kill(signal.SIGTERM)
            node.start()
        wait_until(lambda: _state(tmp_path, n2) == "active", timeout=30, what="node2 back in the swarm")
        wait_until(lambda: _nodes(tmp_path, n1).get("node1") == ("Ready", "Leader")
                   or _nodes(tmp_path, n1).get("node1") == ("Ready", "Reachable"), timeout=30,
                   what="node1 back as a manager")
    except AssertionError:
        print(blanks.logs())
        raise


@pytest.mark.slow
def test_the_last_manager_leaves_and_inits_again(blank_engines: Callable[..., Cluster],
                                                 tmp_path: pathlib.Path) -> None:
    """The last manager is refused without --force in Docker's words; with it the node is blank
    again and a second init makes a new cluster, the node under a new ID."""
    c = blank_engines("solo", time_scale=TIME_SCALE)
    node = c.nodes["solo"]
    try:
        done = docker(tmp_path, node.host, "swarm", "leave")
        assert done.stderr.strip() == "Error response from daemon: This node is not part of a swarm"
        assert docker(tmp_path, node.host, "swarm", "init", "--advertise-addr", node.host).returncode == 0
        first = docker(tmp_path, node.host, "info", "--format", "{{.Swarm.Cluster.ID}}").stdout.strip()
        first_node = docker(tmp_path, node.host, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        done = docker(tmp_path, node.host, "swarm", "leave")
        assert done.returncode == 1
        assert done.stderr.strip() == (
            "Error response from daemon: You are attempting to leave the swarm on a node that is "
            "participating as a manager. Removing the last manager erases all current state of the swarm. "
            "Use `--force` to ignore this message.")
        done = docker(tmp_path, node.host, "swarm", "leave", "--force")
        assert (done.returncode, done.stdout.strip()) == (0, "Node left the swarm."), done.stderr
        assert _state(tmp_path, node) == "inactive"
        assert not (tmp_path / "solo" / "manager").exists()
        refused = docker(tmp_path, node.host, "node", "ls")
        assert "docker swarm init" in refused.stderr
        assert docker(tmp_path, node.host, "swarm", "init", "--advertise-addr", node.host).returncode == 0
        second = docker(tmp_path, node.host, "info", "--format", "{{.Swarm.Cluster.ID}}").stdout.strip()
        assert first and second and first != second
        # The node forgot its ID when it left: the new swarm's first manager has a new one.
        second_node = docker(tmp_path, node.host, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        assert first_node and second_node and first_node != second_node
        listed = docker(tmp_path, node.host, "node", "ls", "--format", "{{.ID}}").stdout.split()
        assert listed == [second_node]
        token = docker(tmp_path, node.host, "swarm", "join-token", "-q", "worker").stdout
        assert token.startswith("SWMTKN-1-")
    except AssertionError:
        print(c.logs())
        raise
