"""``swarmlet up``: build what is missing, start the nodes, wait until all are Ready with a leader.

Order matters for "bad input changes nothing": arguments and the backend (Docker engine, free
ports) are checked before anything is built, written or started.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from deploy.addresses import DEFAULT_PUBLISH, MAX_INDEX, AddressError, env_line, format_publish, parse_publish
from deploy.backends import load_backend
from deploy.backends.base import (
    BACKENDS,
    DISCOVERY,
    Backend,
    BackendError,
    ClusterState,
    Layout,
    NodeHandle,
    clear_join_tokens,
    cluster_block,
    credentials_dir,
    fetch_operator_certificate,
    has_tokens,
    natural_key,
    project_name,
    read_state,
    save_join_tokens,
    write_state,
)
from deploy.commands.status import console as make_console
from deploy.commands.status import error, node_table
from deploy.progress import Steps

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "NodeExited", "add_arguments", "ask_managers", "docker_host_hint", "endpoints_table", "founding_managers",
    "operator_certificate", "read_tokens", "readiness", "require_no_swarm_flag", "run", "wait_engines",
    "wait_ready", "wait_tokens",
]


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
    parser.add_argument(
        "--cpus", metavar="N", default=None,
        help="CPUs every node declares to the scheduler, e.g. 1 or 0.5 (default: the machine's)",
    )
    parser.add_argument(
        "--memory", metavar="SIZE", default=None,
        help="memory every node declares to the scheduler, e.g. 1g or 512m (default: the machine's)",
    )
    parser.add_argument(
        "--publish", metavar="PORT[,PORT...]", default=None,
        help="service ports every node publishes on its address for the routing mesh, as PORT or "
             f"START-END (compose; default {format_publish(DEFAULT_PUBLISH)})",
    )
    parser.add_argument(
        "--no-swarm", action="store_true",
        help="start every node outside any swarm, for `docker swarm init` and `join` by hand",
    )


def read_tokens(nodes: Sequence[NodeHandle]) -> bool:
    """Keep the join tokens (and the root CA certificate) the first running manager that answers
    shows (``GET /swarm``) in the state folder; False if none answered with them."""
    from deploy.engine import EngineError, inspect_swarm

    for node in nodes:
        if node.role != "manager" or node.state != "running" or not node.docker_host:
            continue
        try:
            if save_join_tokens(inspect_swarm(node.docker_host, timeout=2.0)):
                return True
        except EngineError:
            continue
    return False


def wait_tokens(backend: Backend, first: str, timeout: float, progress: Steps) -> list[NodeHandle]:
    """Wait until the manager ``first``, which creates the cluster, shows its join tokens; keep
    them in the state folder; returns every node as last looked at (for :func:`wait_ready`).
    Raises NodeExited, or BackendError at the timeout."""
    task = progress.add_task(f"waiting for {first} to create the swarm")
    deadline = time.monotonic() + timeout
    nodes: list[NodeHandle] = []
    looked = -1.0
    while True:
        if time.monotonic() - looked >= LOOK or not nodes:
            nodes = backend.nodes()
            looked = time.monotonic()
            exited = [n for n in nodes if n.state in ("exited", "dead")]
            if exited:
                raise NodeExited(backend, exited)
        if read_tokens([n for n in nodes if n.hostname == first]):
            progress.finish(task, f"{first} created the swarm; join tokens in {credentials_dir()}")
            return nodes
        if time.monotonic() >= deadline:
            raise BackendError(f"after {timeout:.0f} s, {first} had not created the swarm; "
                               f"see `swarmlet logs {first}`")
        time.sleep(POLL)


def operator_certificate(nodes: Sequence[NodeHandle]) -> str | None:
    """Ask a running manager for the operator certificate the host's tools present on 2377 and
    7946 (``swarmlet status``, the tests); the reason if none gave one."""
    if _no_tls():
        return None
    reasons = []
    for node in nodes:
        if node.role != "manager" or node.state != "running" or not node.control_addr:
            continue
        try:
            fetch_operator_certificate(node.control_addr)
            return None
        except BackendError as e:
            reasons.append(str(e))
    return "; ".join(reasons) or "no manager is running"


def _no_tls() -> bool:
    return os.environ.get("SWARMLET_NO_TLS", "").strip().lower() in ("1", "true", "yes", "on")


def _import_in_background(with_grpc: bool) -> None:
    """Import what `up` needs once the cluster is ready (rich for the tables; gRPC and the TLS
    module for the operator certificate: about 0.2 s of CPU) in a thread, while compose runs.

    `up` only waits for compose then, and the nodes have not started yet: these are the cheapest
    seconds of CPU of the whole bring-up. Imported after the cluster was ready, they delayed
    `up`'s exit by 0.2 to 0.3 s; imported before compose (gRPC, as it was), they delayed the
    nodes' start."""
    names = ["rich.console", "rich.table"]
    if with_grpc:
        names += ["nodeagent.tls", "swarmlet.v1.dispatcher_pb2_grpc"]

    def load() -> None:
        import importlib

        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:
                return  # imported again where it is needed, which then says what is missing

    # Not a daemon: should `up` end early (compose failed), the interpreter waits for the imports
    # rather than finalizing under a half-imported extension module.
    threading.Thread(target=load, name="up-imports").start()


class _InThread:
    """``function(*args)`` run in a thread of its own; :meth:`result` waits for what it returned
    (or raises what it raised)."""

    def __init__(self, function: Callable[..., str | None], *args: Any) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(function, args), name="up-certificate",
                                        daemon=True)
        self._thread.start()

    def _run(self, function: Callable[..., str | None], args: tuple[Any, ...]) -> None:
        try:
            self._outcome[:] = [True, function(*args)]
        except BaseException as e:  # handed to the caller by result()
            self._outcome[:] = [False, e]

    def result(self, timeout: float | None = None) -> str | None:
        """What the function returned (None if it is still running after ``timeout`` s)."""
        self._thread.join(timeout)
        if not self._outcome:
            return None
        done, value = self._outcome
        if not done:
            raise value
        return value if value is None else str(value)


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
    a node just replaced can still look Ready until its heartbeats are missed. The cluster is not
    complete while a live manager is listed Unreachable: the leader has not heard from it yet,
    and the table `up` prints at the end should not show it so.
    """
    counted = [r for r in rows if live is None or r.hostname in live]
    ready = sum(1 for r in counted if r.status == "Ready")
    leader = next((r.hostname for r in rows if r.manager_status == "Leader"), None)
    unheard = any(r.manager_status == "Unreachable" for r in counted)
    return ready, leader, ready >= expected and leader is not None and not unheard


def ask_managers(nodes: Sequence[NodeHandle], timeout: float = 2.0) -> list[Any]:
    """`docker node ls` as the first running manager that answers its Engine API gives it.

    Plain HTTP (deploy.engine), not the control API: importing gRPC for it cost `up` 0.3 to 0.8 s
    of CPU while the nodes start on the same cores. Raises BackendError if none answers."""
    from deploy.engine import EngineError, node_rows

    failures = []
    for node in nodes:
        if node.role != "manager" or node.state != "running" or not node.docker_host:
            continue
        try:
            return list(node_rows(node.docker_host, timeout=timeout))
        except EngineError as e:
            failures.append(f"{node.hostname}: {e}")
    raise BackendError("no manager answered: " + "; ".join(failures) if failures else "no manager is running")


def wait_ready(
    backend: Backend, expected: int, timeout: float, progress: Steps, nodes: Sequence[NodeHandle] = ()
) -> tuple[list[Any], bool]:
    """Poll the managers until ``expected`` nodes are Ready and a leader exists, or time runs out.

    ``nodes``: the backend's nodes if the caller has just looked at them."""
    task = progress.add_task("waiting for the nodes")
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    looked = time.monotonic() if nodes else -1.0
    nodes = list(nodes)
    while True:
        try:
            # The backend's view (a container list and inspects over the engine's socket, a few
            # ms) is refreshed every LOOK s, to see nodes that exited; the managers are asked
            # every POLL s, so that the wait ends soon after the cluster is ready.
            if time.monotonic() - looked >= LOOK or not nodes:
                nodes = backend.nodes()
                looked = time.monotonic()
            # Nothing restarts a node that exited on its own: say so now rather than at the timeout.
            exited = [n for n in nodes if n.state in ("exited", "dead")]
            if exited:
                raise NodeExited(backend, exited)
            rows = ask_managers(nodes)
            live = {n.hostname for n in nodes if n.state == "running"}
            ready, leader, done = readiness(rows, expected, live)
            note = f"leader {leader}" if leader else "no leader yet"
            progress.update(task, f"{ready}/{expected} nodes Ready, {note}")
            if done:
                progress.finish(task)
                return rows, True
        except NodeExited:
            raise
        except BackendError as e:
            first = str(e).splitlines()[-1].strip()
            progress.update(task, f"waiting for a manager to answer ({first[:100]})")
        if time.monotonic() >= deadline:
            return rows, False
        time.sleep(POLL)


LOOK = 1.0
"""Seconds between two looks at the backend's containers or processes while waiting."""
POLL = 0.05
"""Seconds between two readiness questions to the managers (two Engine API requests, about 2 ms)."""


def _engine_answers(node: NodeHandle) -> bool:
    from deploy.engine import ping

    return bool(node.docker_host) and ping(str(node.docker_host), timeout=1.0)


def wait_engines(backend: Backend, expected: int, timeout: float, progress: Steps) -> bool:
    """Wait until ``expected`` nodes answer the Engine API's /_ping (nodes outside any swarm)."""
    task = progress.add_task("waiting for the Engine APIs")
    deadline = time.monotonic() + timeout
    while True:
        nodes = backend.nodes()
        exited = [n for n in nodes if n.state in ("exited", "dead")]
        if exited:
            raise NodeExited(backend, exited)
        answering = sum(1 for n in nodes if _engine_answers(n))
        progress.update(task, f"{answering}/{expected} Engine APIs answer")
        if answering >= expected:
            progress.finish(task)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def endpoints_table(nodes: Sequence[NodeHandle]) -> Table:
    """Each node's address and what answers there: the Engine API (its DOCKER_HOST), metrics, and
    on managers the web view."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 3, 0, 0))
    for column in ("NODE", "ADDRESS", "DOCKER_HOST", "METRICS", "WEB VIEW"):
        table.add_column(column, no_wrap=True, overflow="ignore")
    for node in nodes:
        table.add_row(node.hostname, node.addr or "-", node.docker_host or "-", node.metrics_url or "-",
                      node.web_url or "-")
    return table


def docker_host_hint(leader: str, addr: str, no_swarm: bool) -> list[str]:
    """The last lines `up` prints: where the docker CLI drives the cluster, and for nodes outside
    any swarm how to start one there. ``docker swarm init`` needs no --advertise-addr: the node
    advertises its own address (a host name such as ``manager1`` is refused, as Docker refuses
    it; inside a container the address the host reaches is not the node's either)."""
    if no_swarm:
        intro = f"Start a swarm at {leader} with `docker swarm init` (it advertises the node's own address):"
    else:
        intro = f"The docker CLI drives the cluster through the leader, {leader}:"
    return [intro, env_line(addr)]


def require_no_swarm_flag(backend: Backend, layout: Layout) -> None:
    """Refuse --no-swarm, saying why, when the node agent the nodes run does not know that option."""
    if "--no-swarm" in backend.agent_help(layout):
        return
    where = f"the image {layout.image}" if layout.image else "this environment"
    raise BackendError(
        f"--no-swarm needs a node agent with the --no-swarm option, and `python -m nodeagent --help` in "
        f"{where} does not list it yet: update the tree (and the image) or leave --no-swarm out"
    )


def founding_managers(layout: Layout, recorded: Layout | None, running: bool) -> tuple[str, ...]:
    """The managers that started Raft together (--initial-cluster): none for a new cluster
    (manager1 creates it, with its own root CA, and the others join); for a cluster an older
    swarmlet made that way and that has nodes still, the founders it was made with (those still
    in it), so that no running node's command changes (compose would recreate its container)."""
    if layout.no_swarm or not running:
        return ()
    kept = recorded.founders if recorded is not None else ()
    return tuple(n for n in kept if n in layout.names)


def run(args: argparse.Namespace) -> int:
    """Bring the cluster up and print its node table, endpoints and DOCKER_HOST; exit 1 on failure."""
    if args.managers < 1:
        return error(f"--managers must be at least 1 (got {args.managers})")
    if args.workers < 0:
        return error(f"--workers cannot be negative (got {args.workers})")
    if args.timeout <= 0:
        return error(f"--timeout must be positive (got {args.timeout})")
    if args.managers > MAX_INDEX or args.workers > MAX_INDEX:
        return error(f"a cluster has 1 to {MAX_INDEX} managers and 0 to {MAX_INDEX} workers, each on an "
                     f"address of its own (got {args.managers} and {args.workers})")
    if args.backend == "local" and args.discover == "mdns":
        # Multicast from processes on the host would leave by the host's real interfaces; in
        # containers it stays on the cluster's own network.
        return error("--discover mdns needs the compose backend: the local backend's nodes share the "
                     "host's network, where their multicast would not stay on the loopback interface")
    if args.backend == "local" and args.publish is not None:
        return error("--publish is for the compose backend: a local node binds the ports of its services "
                     "on its own address itself")
    try:
        publish = DEFAULT_PUBLISH if args.publish is None else parse_publish(args.publish)
        layout = Layout.of(args.managers, args.workers, publish=publish, discover=args.discover,
                           no_swarm=args.no_swarm, cpus=args.cpus or "", memory=args.memory or "")
    except AddressError as e:
        return error(str(e))
    if args.cpus or args.memory:
        from nodeagent.options import parse_cpus, parse_size

        for flag, value, parse in (("--cpus", args.cpus, parse_cpus), ("--memory", args.memory, parse_size)):
            try:
                if value:
                    parse(value)
            except ValueError as e:
                return error(f"{flag}: {e}")
    started = time.monotonic()
    try:
        existing = read_state()
        # Even stopped nodes of another backend hold data and names: one cluster at a time.
        other = existing.backend if existing is not None and existing.backend != args.backend else None
        if other is not None and load_backend(other).nodes():
            return error(f"a cluster with the {other} backend is up: `swarmlet down` first")
        recorded = existing.layout if existing is not None and existing.backend == args.backend else None
        layout = dataclasses.replace(layout, block=cluster_block(project_name(), recorded))
        backend = load_backend(args.backend)
        backend.check(layout)
        # Taking managers away without demoting them first would cost the quorum, and a removed
        # worker would stay Down in the node list: `node rm` does both the way Swarm wants.
        current = backend.nodes()
        beyond = sorted({n.hostname for n in current} - set(layout.names), key=natural_key)
        if beyond:
            return error(
                f"the cluster has nodes beyond --managers {args.managers} --workers {args.workers}: "
                f"{', '.join(beyond)}. `swarmlet up` adds nodes but never removes them: take them out "
                "with `swarmlet node rm NAME` (a manager is demoted first), or `swarmlet down` first"
            )
        layout = dataclasses.replace(layout, founders=founding_managers(layout, recorded, bool(current)))
        # deploy.progress, not rich's Progress: rich is imported once the cluster is ready, for
        # the tables, rather than before compose starts.
        with Steps() as progress:
            step = progress.add_task("preparing")

            def report(message: str) -> None:
                # Each step stays on screen as a line, printed once; the spinner shows the one
                # under way.
                progress.print(f"  {message}")
                progress.update(step, message)

            layout = dataclasses.replace(layout, image=backend.prepare(report))
            if layout.no_swarm:
                require_no_swarm_flag(backend, layout)
            progress.finish(step, "images ready")
            # Recorded before starting, so that down can clean up even after a failed start;
            # the backend's own details (the local process table) are kept.
            kept = existing.extra if existing is not None and existing.backend == backend.name else {}
            write_state(ClusterState(backend.name, args.managers, args.workers, kept).with_layout(layout))
            boot = time.monotonic()
            first = layout.role_names("manager")[0]
            fresh = not layout.no_swarm and not current
            if fresh:
                # A new swarm, made as Swarm makes one: manager1 creates it (its root CA, its key
                # only ever in the Raft store, and the join tokens); the others join with the
                # tokens it shows. They start at the same time and wait for their token files,
                # which are emptied now and filled once manager1 shows the tokens. Nothing of the
                # CA but its certificate reaches the host.
                clear_join_tokens()
            elif layout.no_swarm and not has_tokens():
                # Blank nodes read no token, but compose mounts the token files (its secrets)
                # into every node but manager1 as they are: they must exist.
                clear_join_tokens()
            elif not layout.no_swarm and not read_tokens(current) and not has_tokens():
                raise BackendError(f"no manager of the running cluster shows its join tokens, and "
                                   f"{credentials_dir()} holds none: `swarmlet down` first")
            start_task = progress.add_task(
                f"starting {args.managers} managers and {args.workers} workers ({backend.name})"
            )
            if backend.name == "compose":
                _import_in_background(with_grpc=not layout.no_swarm and not _no_tls())
            backend.start_cluster(layout)
            progress.finish(start_task)
            looked: list[NodeHandle] = []
            early: _InThread | None = None
            if fresh:
                looked = wait_tokens(backend, first, args.timeout, progress)
                # The operator certificate, from the manager that just made the cluster, while
                # the others join (with gRPC imported during compose: a key, two handshakes).
                early = _InThread(operator_certificate, [n for n in looked if n.hostname == first])
            expected = args.managers + args.workers
            rows: list[Any] = []
            if layout.no_swarm:
                ok = wait_engines(backend, expected, args.timeout, progress)
            else:
                rows, ok = wait_ready(backend, expected, args.timeout, progress, looked)
        # The figure `up` reports ends here, when it saw the cluster ready; the node table is
        # printed while the operator certificate is fetched (gRPC's import, a key and two TLS
        # handshakes: 0.1 to 0.4 s), in a thread of its own.
        seen = time.monotonic()
        nodes = backend.nodes()
        certificate = None
        if ok and not layout.no_swarm:
            if early is None or early.result() is not None:  # not tried, or failed: any manager now
                certificate = _InThread(operator_certificate, nodes)
        elif early is not None:
            early.result(timeout=5.0)
        console = make_console()
        if rows:
            console.print(node_table(rows))
    except BackendError as e:
        return error(str(e))
    from rich.console import Console

    expected = args.managers + args.workers
    if not ok:
        ready, leader, _ = readiness(rows, expected)
        what = "answer the Engine API" if layout.no_swarm else "are Ready"
        return error(
            f"after {args.timeout:.0f} s, {ready} of {expected} nodes {what}"
            f"{'' if leader or layout.no_swarm else ' and there is no leader'}; see `swarmlet logs NODE` "
            f"(nodes: {', '.join(n.hostname for n in nodes)})"
        )
    took = f"{seen - boot:.1f} s after start, {seen - started:.1f} s in all"
    if layout.no_swarm:
        console.print(f"{expected} nodes outside any swarm, their Engine APIs answer: {took}")
        leader = layout.role_names("manager")[0]
    else:
        ready, found, _ = readiness(rows, 0)
        leader = found or layout.role_names("manager")[0]
        console.print(f"{ready} nodes Ready, leader {leader}: {took}")
    console.print("Endpoints (each node on its own address):")
    console.print(endpoints_table(nodes))
    if layout.publish:
        console.print(f"Service ports on every node's address: {format_publish(layout.publish)}")
    try:
        prometheus = backend.prometheus_url()
    except BackendError as e:
        # The nodes are up and usable without it: say what went wrong, and carry on.
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]Warning:[/] {e}")
        prometheus = None
    if prometheus:
        console.print(f"Prometheus: {prometheus} (scrapes every node's /metrics each second; "
                      "`swarmlet metrics 'up'`)")
    target = next((n for n in nodes if n.hostname == leader and n.addr), None)
    if target is not None and target.web_url and not layout.no_swarm:
        console.print(f"Web view: {target.web_url} ({leader}; every manager serves one)")
    if target is not None and target.addr:
        for line in docker_host_hint(leader, target.addr, layout.no_swarm):
            console.print(line)
    trouble = certificate.result() if certificate is not None else None
    if trouble:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold yellow]Warning:[/] no operator certificate for `swarmlet status`: {trouble}")
    return 0
