"""``swarmlet node rm NAME``: take a node out of the cluster as a user would, then remove it.

Through the Engine API of another manager, as the docker CLI would: a manager is demoted first
(``POST /nodes/{id}/update`` with Role worker; Swarm refuses to demote the last manager, or one
whose loss would break quorum, and that refusal is shown with nothing changed). Then its
container or process is stopped and removed (a manager's data with it), and once the managers
show it Down, ``DELETE /nodes/{id}`` removes it from the node list (`docker node rm`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from deploy import engine
from deploy.backends import load_backend
from deploy.backends.base import BackendError, NodeHandle, resolve_node, write_state
from deploy.commands.node_add import current_layout
from deploy.commands.status import console, error

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet node rm``."""
    parser.add_argument("node", metavar="NAME", help="the node's hostname, as `swarmlet status` shows it")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the demotion and for the node to be Down (default 60)")


def _wait(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except engine.EngineError:
            pass  # a manager may be changing leaders: ask again
        if time.monotonic() >= deadline:
            raise BackendError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _asked(nodes: list[NodeHandle], target: NodeHandle) -> str:
    """The Engine API of a running manager other than ``target``."""
    for node in nodes:
        if node.role == "manager" and node is not target and node.state == "running" and node.docker_host:
            return node.docker_host
    raise BackendError(f"no other manager is running to remove {target.hostname} through")


def run(args: argparse.Namespace) -> int:
    """Demote (a manager), stop and remove, wait for Down, `docker node rm`."""
    if args.timeout <= 0:
        return error(f"--timeout must be positive (got {args.timeout})")
    out = console()
    try:
        state, layout = current_layout()
        backend = load_backend(state.backend)
        nodes = backend.nodes()
        target = resolve_node(args.node, nodes)
        name = target.hostname
        swarm_node = None
        host = None
        if not layout.no_swarm:
            host = _asked(nodes, target)
            swarm_node = engine.find_node(host, name)
        if swarm_node is not None and host is not None and swarm_node["Spec"].get("Role") == "manager":
            engine.set_role(host, swarm_node, "worker")  # Swarm's refusals come back as EngineError
            node_id = str(swarm_node["ID"])

            def demoted() -> bool:
                found = engine.find_node(host, name)
                if found is None:
                    return True
                return found["Spec"].get("Role") == "worker" and not found.get("ManagerStatus")

            _wait(f"{name} to be demoted", demoted, args.timeout)
            out.print(f"Manager {name} demoted in the swarm.")
        shrunk = layout.with_names([n for n in layout.names if n != name])
        write_state(state.with_layout(shrunk))
        backend.remove_node(shrunk, target)
        if swarm_node is not None and host is not None:
            node_id = str(swarm_node["ID"])

            def down() -> bool:
                found = engine.find_node(host, name)
                return found is None or (found.get("Status") or {}).get("State") == "down"

            _wait(f"{name} to be Down", down, args.timeout)
            if engine.find_node(host, name) is not None:
                engine.remove_node(host, node_id)
    except engine.EngineError as e:
        return error(str(e))
    except BackendError as e:
        return error(str(e))
    out.print(f"Removed {name} ({target.addr or 'no address'})")
    return 0
