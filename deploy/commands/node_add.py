"""``swarmlet node add [--manager]``: one more node in the running cluster, on its own address.

The node takes the lowest free name of its role (worker3 after worker1..2; worker1 again once
worker1 was removed) and that name's address. Compose: the override file gains the service and
``docker compose up -d --no-deps`` starts that service alone; local: a new process. The command
returns once the managers show the node Ready (a manager: Reachable as well).
"""

from __future__ import annotations

import argparse
import time

from deploy.addresses import AddressError, env_line, next_free_name
from deploy.backends import load_backend
from deploy.backends.base import BackendError, ClusterState, Layout, NodeHandle, read_state, write_state
from deploy.commands.status import console, error, query_nodes

__all__ = ["add_arguments", "current_layout", "run", "wait_joined"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarmlet node add``."""
    parser.add_argument("--manager", action="store_true", help="add a manager (default: a worker)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the node to be Ready (default 60)")


def current_layout() -> tuple[ClusterState, Layout]:
    """The running cluster's state and layout; BackendError when no cluster was brought up."""
    state = read_state()
    layout = state.layout if state is not None else None
    if state is None or layout is None:
        raise BackendError("no cluster is up (or it was brought up by an older swarmlet): run `swarmlet up`")
    return state, layout


def wait_joined(nodes: list[NodeHandle], name: str, role: str, timeout: float) -> str:
    """Poll the managers until ``name`` is Ready (and Reachable, for a manager); its row's ID."""
    deadline = time.monotonic() + timeout
    last = "no manager answered"
    while True:
        try:
            rows, _ = query_nodes(nodes, timeout=2.0)
            row = next((r for r in rows if r.hostname == name and r.status == "Ready"), None)
            if row is not None and (role == "worker" or row.manager_status in ("Reachable", "Leader")):
                return str(row.id)
            status = row.manager_status if row is not None else ""
            last = f"{name} is not Ready yet" if row is None else f"{name} is {status or 'joining'}"
        except BackendError as e:
            last = str(e).splitlines()[-1].strip()
        if time.monotonic() >= deadline:
            raise BackendError(f"after {timeout:.0f} s, {last}; see `swarmlet logs {name}`")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    """Add the node, wait until it is Ready, print its name, address and DOCKER_HOST line."""
    if args.timeout <= 0:
        return error(f"--timeout must be positive (got {args.timeout})")
    role = "manager" if args.manager else "worker"
    started = time.monotonic()
    try:
        state, layout = current_layout()
        backend = load_backend(state.backend)
        present = [n.hostname for n in backend.nodes()]
        if not present:
            return error("no cluster is up: bring one up with `swarmlet up`")
        name = next_free_name(role, [*layout.names, *present])
        grown = layout.with_names([*layout.names, name])
        addr = grown.addr(name)
        write_state(state.with_layout(grown))
        backend.start_node(grown, name)
        if not grown.no_swarm:
            wait_joined(backend.nodes(), name, role, args.timeout)
    except (BackendError, AddressError) as e:
        return error(str(e))
    joined = "started outside any swarm" if grown.no_swarm else f"joined the swarm as a {role}"
    console().print(f"{name} ({addr}) {joined} in {time.monotonic() - started:.1f} s")
    print(env_line(addr))
    return 0
