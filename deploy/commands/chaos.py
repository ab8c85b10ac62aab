"""``swarmlet chaos ACTION NODE``: do to a node what can happen to a real one.

NODE is the hostname ``swarmlet status`` shows. With compose, actions are Docker's own container
and network operations; with the local backend, signals (disconnect and connect are refused).
"""

from __future__ import annotations

import argparse

from deploy.backends import load_backend
from deploy.backends.base import CHAOS_ACTIONS, BackendError, resolve_node
from deploy.commands.status import console, error

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet chaos``."""
    parser.add_argument("action", choices=CHAOS_ACTIONS, metavar="ACTION", help=" | ".join(CHAOS_ACTIONS))
    parser.add_argument("node", metavar="NODE", help="the node's hostname, as `swarmlet status` shows it")


def run(args: argparse.Namespace) -> int:
    """Resolve NODE (an unknown one lists the nodes there are) and do the action to it."""
    try:
        backend = load_backend()
        node = resolve_node(args.node, backend.nodes())
        done = backend.chaos(args.action, node)
    except BackendError as e:
        return error(str(e))
    console().print(done)
    return 0
