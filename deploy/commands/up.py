"""``swarmlet up``: build what is missing, start the nodes, wait until all are Ready with a leader.

Order matters for "bad input changes nothing": arguments and the backend (Docker engine, free
ports) are checked before anything is built, written or started.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection, Sequence
from typing import Any

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from deploy.backends import load_backend
from deploy.backends.base import (
    BACKENDS,
    DISCOVERY,
    Backend,
    BackendError,
    ClusterState,
    NodeHandle,
    credentials_dir,
    read_state,
    write_state,
)
from deploy.commands.status import console as make_console
from deploy.commands.status import error, node_table, query_nodes

__all__ = ["NodeExited", "add_arguments", "ensure_credentials", "readiness", "run", "wait_ready"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarmlet up``."""
    parser.add_argument("--managers", type=int, default=3, metavar="N", help="managers (default 3)")
    parser.add_argument("--workers", type=int, default=2, metavar="M", help="workers (default 2)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="compose",
        help="compose: a container per node (default); local: a process per node on 127.0.x.y",
    )
    parser.add_argument(
        "--discover", choices=DISCOVERY, default="names",
        help="how workers find the managers: by their names (default) or by mDNS (zeroconf)",
    )
    parser.add_argument(
        "--timeout", type=float, default=90.0, metavar="SECONDS",
        help="how long to wait for every node to be Ready (default 90)",
    )


def ensure_credentials() -> str:
    """Make the cluster's root CA and join tokens unless they exist; says which it did."""
    from manager.ca.tokens import ClusterCredentials, InvalidToken

    folder = credentials_dir()
    try:
        ClusterCredentials.load(folder)
        return f"join tokens reused from {folder}"
    except FileNotFoundError:
        pass
    except (InvalidToken, ValueError) as e:
        raise BackendError(
            f"the join tokens in {folder} are damaged ({e}): remove that folder's token files "
            "and run `swarmlet up` again"
        ) from None
    ClusterCredentials.create().write(folder)
    return f"new root CA and join tokens in {folder}"


class NodeExited(BackendError):
    """Nodes stopped by themselves during start-up; the message shows the end of their logs."""

    def __init__(self, backend: Backend, nodes: Sequence[NodeHandle], lines: int = 6) -> None:
        # Nodes that died the same way (a bad flag, a missing module) are reported once, together.
        by_tail: dict[str, list[str]] = {}
        for node in nodes:
            try:
                tail = list(backend.logs(node, follow=False, tail=lines))
            except BackendError:
                tail = []
            by_tail.setdefault("\n    ".join(tail) if tail else "(no output)", []).append(node.hostname)
        parts = []
        for shown, names in by_tail.items():
            whose = "its log" if len(names) == 1 else "their logs"
            parts.append(f"{', '.join(names)} exited; the end of {whose}:\n    {shown}")
        advice = "See `swarmlet logs NODE` for more, `swarmlet down` to clean up."
        super().__init__("\n".join([*parts, advice]))


def readiness(
    rows: Sequence[Any], expected: int, live: Collection[str] | None = None
) -> tuple[int, str | None, bool]:
    """(Ready nodes, leader's hostname or None, whether the cluster is complete) for a node list.

    With ``live`` (the hostnames of the containers or processes running now), only those count:
    a node just replaced can still look Ready until its heartbeats are missed.
    """
    ready = sum(1 for r in rows if r.status == "Ready" and (live is None or r.hostname in live))
    leader = next((r.hostname for r in rows if r.manager_status == "Leader"), None)
    return ready, leader, ready >= expected and leader is not None


def wait_ready(
    backend: Backend, expected: int, timeout: float, progress: Progress
) -> tuple[list[Any], bool]:
    """Poll the managers until ``expected`` nodes are Ready and a leader exists, or time runs out."""
    task = progress.add_task("waiting for the nodes", total=expected)
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while True:
        try:
            nodes = backend.nodes()
            # Nothing restarts a node that exited on its own: say so now rather than at the timeout.
            exited = [n for n in nodes if n.state in ("exited", "dead")]
            if exited:
                raise NodeExited(backend, exited)
            rows, _ = query_nodes(nodes, timeout=2.0)
            live = {n.hostname for n in nodes if n.state == "running"}
            ready, leader, done = readiness(rows, expected, live)
            note = f"leader {leader}" if leader else "no leader yet"
            progress.update(task, completed=min(ready, expected),
                            description=f"{ready}/{expected} nodes Ready, {note}")
            if done:
                return rows, True
        except NodeExited:
            raise
        except BackendError as e:
            first = str(e).splitlines()[-1].strip()
            progress.update(task, description=f"waiting for a manager to answer ({first})")
        if time.monotonic() >= deadline:
            return rows, False
        time.sleep(0.25)


def _endpoints(nodes: Sequence[NodeHandle]) -> list[str]:
    lines = []
    for node in nodes:
        if node.role != "manager":
            continue
        parts = [f"control API {node.control_addr}"] if node.control_addr else []
        # DOCKER_HOST is not printed until the Engine API front end serves on it.
        if node.metrics_url:
            parts.append(f"metrics {node.metrics_url}")
        lines.append(f"  {node.hostname}: " + ", ".join(parts))
    workers = [n for n in nodes if n.role == "worker" and n.metrics_url]
    if workers:
        lines.append("  workers' metrics: " + ", ".join(str(n.metrics_url) for n in workers))
    return lines


def run(args: argparse.Namespace) -> int:
    """Bring the cluster up and print its node table and endpoints; exit 1 on any failure."""
    if args.managers < 1:
        return error(f"--managers must be at least 1 (got {args.managers})")
    if args.workers < 0:
        return error(f"--workers cannot be negative (got {args.workers})")
    if args.timeout <= 0:
        return error(f"--timeout must be positive (got {args.timeout})")
    if args.backend == "local" and args.discover == "mdns":
        # Multicast from processes on the host would leave by the host's real interfaces; in
        # containers it stays on the cluster's own network.
        return error("--discover mdns needs the compose backend: the local backend's nodes share the "
                     "host's network, where their multicast would not stay on the loopback interface")
    console = make_console()
    started = time.monotonic()
    try:
        existing = read_state()
        # Even stopped nodes of another backend hold data and names: one cluster at a time.
        other = existing.backend if existing is not None and existing.backend != args.backend else None
        if other is not None and load_backend(other).nodes():
            return error(f"a cluster with the {other} backend is up: `swarmlet down` first")
        backend = load_backend(args.backend)
        backend.check(args.managers, args.workers)
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            step = progress.add_task("preparing", total=None)

            def report(message: str) -> None:
                # Each step stays on screen as a line; the spinner shows the one under way.
                progress.console.print(f"  {message}")
                progress.update(step, description=message)

            backend.prepare(report)
            report(ensure_credentials())
            progress.update(step, total=1, completed=1, description="images and join tokens ready")
            start_task = progress.add_task(
                f"starting {args.managers} managers and {args.workers} workers ({backend.name})", total=None
            )
            # Recorded before starting, so that down can clean up even after a failed start;
            # the backend's own details (the local process table) are kept.
            kept = existing.extra if existing is not None and existing.backend == backend.name else {}
            write_state(ClusterState(backend.name, args.managers, args.workers, kept))
            backend.start_cluster(args.managers, args.workers, args.discover)
            progress.update(start_task, total=1, completed=1)
            boot = time.monotonic()
            rows, ok = wait_ready(backend, args.managers + args.workers, args.timeout, progress)
        nodes = backend.nodes()
    except BackendError as e:
        return error(str(e))
    if rows:
        console.print(node_table(rows))
    if not ok:
        expected = args.managers + args.workers
        ready, leader, _ = readiness(rows, expected)
        return error(
            f"after {args.timeout:.0f} s, {ready} of {expected} nodes are Ready"
            f"{'' if leader else ' and there is no leader'}; see `swarmlet logs NODE` "
            f"(nodes: {', '.join(n.hostname for n in nodes)})"
        )
    ready, leader, _ = readiness(rows, 0)
    console.print(
        f"{ready} nodes Ready, leader {leader}: {time.monotonic() - boot:.1f} s after start, "
        f"{time.monotonic() - started:.1f} s in all"
    )
    console.print("Endpoints:")
    for line in _endpoints(nodes):
        console.print(line)
    return 0
