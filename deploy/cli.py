"""The ``swarmlet`` command line.

Each subcommand lives in its own module under :mod:`deploy.commands` with two functions:
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). This file only wires them up,
importing a module when its command is used so that ``swarmlet --help`` stays fast.

``--project NAME`` (before or after the cluster commands' name; or SWARMLET_PROJECT) picks the
compose project the cluster commands act on: clusters of different projects coexist.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

# (words, module, one-line help). Words after the first make nested subcommands.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("up",), "deploy.commands.up", "bring an emulated Swarm cluster up and wait until it is ready"),
    (("status",), "deploy.commands.status", "list the cluster's nodes, as `docker node ls` does"),
    (("chaos",), "deploy.commands.chaos", "stop, kill or pause a node; cut, slow or heal its links"),
    (("logs",), "deploy.commands.logs", "show a node's logs"),
    (("down",), "deploy.commands.down", "remove everything `swarmlet up` made"),
    (("env",), "deploy.commands.env", "print the DOCKER_HOST line for the leader (or a node)"),
    (("node", "add"), "deploy.commands.node_add", "add a worker (or a manager) to the running cluster"),
    (("node", "rm"), "deploy.commands.node_rm", "take a node out of the swarm and remove it"),
    (("sim", "gossip"), "deploy.commands.sim_gossip", "simulate SWIM gossip membership from a seed"),
    (("sim", "raft"), "deploy.commands.sim_raft", "run a Raft fault campaign in the simulator"),
    (("metrics",), "deploy.commands.metrics", "query the cluster's Prometheus (PromQL)"),
    (("explain",), "deploy.commands.explain", "why a service's tasks run where they do, or wait"),
    (("check", "linearizable"), "deploy.commands.check", "check a JSON-lines history for linearizability"),
]

CLUSTER_COMMANDS = ("up", "status", "chaos", "logs", "down", "env", "node", "metrics")
"""The commands that act on a cluster, and so take ``--project``."""

_PROJECT_HELP = "the cluster's compose project (default: $SWARMLET_PROJECT, else swarmlet)"


def _words(argv: Sequence[str]) -> list[str]:
    """The command words of ``argv``: its arguments that are neither options nor --project's value."""
    words = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--project":
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarmlet", description="A Docker Swarm emulator.")
    parser.add_argument("--project", metavar="NAME", default=None, help=_PROJECT_HELP)
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    top.required = True
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    wanted = _words(argv)[:2]
    for words, module_name, help_text in COMMANDS:
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
                groups[words[0]].required = True
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if words[0] in CLUSTER_COMMANDS:
            # SUPPRESS: without the option here, the value given before the command stays.
            sub.add_argument("--project", metavar="NAME", default=argparse.SUPPRESS, help=_PROJECT_HELP)
        # Only the chosen command's module is imported to add its arguments.
        if list(words) == wanted[: len(words)]:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarmlet`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(args_list)
    args = parser.parse_args(args_list)
    if args.project is not None:
        os.environ["SWARMLET_PROJECT"] = args.project
    if args.command in CLUSTER_COMMANDS:
        from deploy.addresses import names_a_node_engine
        from deploy.backends.base import BackendError, project_name

        # After `eval $(swarmlet env)` DOCKER_HOST names a node of the cluster; the containers
        # run on the engine behind the usual socket, which the cluster commands must ask instead.
        if names_a_node_engine(os.environ.get("DOCKER_HOST", "")):
            del os.environ["DOCKER_HOST"]
        from deploy.commands.status import error

        try:
            project_name()
        except BackendError as e:
            return error(str(e))
    if args.command in CLUSTER_COMMANDS and args.command != "up":
        # `up` asks the nodes over plain HTTP until they are ready and then fetches its own
        # operator certificate: loading the held one here would import gRPC (0.1 to 0.35 s of
        # CPU) before compose starts.
        from deploy.backends.base import use_cluster_tls

        use_cluster_tls()
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
