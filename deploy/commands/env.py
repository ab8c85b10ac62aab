"""``swarmlet env [NODE]``: the DOCKER_HOST line that points the docker CLI at the cluster.

Without NODE, at the leader, as a manager reports it; with NODE, at that node (a worker's engine
answers cluster requests with Swarm's 503, as a real worker's does). ``eval $(swarmlet env)``.
"""

from __future__ import annotations

import argparse

from deploy.addresses import env_line
from deploy.backends import load_backend
from deploy.backends.base import BackendError, NodeHandle, resolve_node
from deploy.commands.status import error, query_nodes

__all__ = ["add_arguments", "leader_node", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet env``."""
    parser.add_argument("node", nargs="?", metavar="NODE",
                        help="the node's hostname (default: the leader, as the managers report it)")


def leader_node(nodes: list[NodeHandle]) -> NodeHandle:
    """The node that leads the cluster now, asked from a running manager."""
    rows, _ = query_nodes(nodes, timeout=2.0)
    leader = next((r.hostname for r in rows if r.manager_status == "Leader"), None)
    if leader is None:
        raise BackendError("the cluster has no leader now: name a node (`swarmlet env manager1`)")
    return resolve_node(leader, nodes)


def run(args: argparse.Namespace) -> int:
    """Print ``export DOCKER_HOST=tcp://ADDR:2375``."""
    try:
        nodes = load_backend().nodes()
        if not nodes:
            return error("no cluster is up: bring one up with `swarmlet up`")
        node = resolve_node(args.node, nodes) if args.node else leader_node(nodes)
    except BackendError as e:
        return error(str(e))
    if not node.addr:
        return error(f"{node.hostname} publishes no Engine API port (is it running?)")
    print(env_line(node.addr))
    return 0
