"""``swarmlet logs NODE``: a node's output (its container's logs, or its process's log file)."""

from __future__ import annotations

import argparse
import sys

from deploy.backends import load_backend
from deploy.backends.base import BackendError, resolve_node
from deploy.commands.status import error

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet logs``."""
    parser.add_argument("node", metavar="NODE", help="the node's hostname, as `swarmlet status` shows it")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("-n", "--tail", type=int, default=None, metavar="N", help="only the last N lines")


def run(args: argparse.Namespace) -> int:
    """Print the node's log lines."""
    if args.tail is not None and args.tail < 0:
        return error(f"--tail cannot be negative (got {args.tail})")
    try:
        backend = load_backend()
        node = resolve_node(args.node, backend.nodes())
        for line in backend.logs(node, args.follow, args.tail):
            sys.stdout.write(line + "\n")
            if args.follow:
                sys.stdout.flush()
    except BackendError as e:
        return error(str(e))
    return 0
