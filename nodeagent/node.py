"""The node agent process: everything ``python -m nodeagent`` starts, in order, and stops.

options -> node id (and the role kept from a promotion or demotion) -> metrics on 9323 -> the
Engine API on 2375 -> gossip on 7946 -> (managers) the manager role on 2377, which adds its cluster
routes to the Engine API -> the agent session with the managers -> wait for SIGTERM/SIGINT -> stop
everything in < 1 s. The leader may promote or demote the node meanwhile: the session tells the
:class:`~nodeagent.roles.RoleSwitch`, which starts or retires the manager role. The role and the
session are the node's :class:`~nodeagent.membership.NodeSwarm`: with ``--no-swarm`` neither
starts until ``docker swarm init`` or ``join`` arrives on the Engine API, and ``docker swarm
leave`` stops both. What runs under the node's ID (gossip, the data plane, the task runtime:
:mod:`nodeagent.plane`) starts again under the ID the CA gives at ``docker swarm join``.

Every failure a user can cause ends the process with a message and an exit code:
2 for configuration (the message names the flag), 3 for a refused join. A port that cannot be
bound is configuration too (another process has it), named by its flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from prometheus_client import disable_created_metrics

from nodeagent import tls
from nodeagent.engineapi import EngineApiServer, NodeFacts, NodeSwarmRoutes, session_swarm_info
from nodeagent.engineapi.runner import tlsverify_context
from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.shell import GossipShell
from nodeagent.identity import (
    VERSION,
    IdentityError,
    founder_id,
    is_id,
    keep_node_id,
    load_node_id,
    token_digest,
)
from nodeagent.images import RuntimeImages
from nodeagent.looplag import LoopLag
from nodeagent.membership import NodeSwarm
from nodeagent.metrics import (
    FaultMetrics,
    GossipMetrics,
    MetricsServer,
    new_registry,
    node_info,
    node_manager,
)
from nodeagent.options import AgentOptions, split_host_port
from nodeagent.plane import PlaneShared, Running, start_plane, stop_data_plane, stop_gossip, stop_plane
from nodeagent.roles import NodeContext, RoleNotFound, read_role_file
from nodeagent.transport.faults import LinkFaults

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_JOIN_REFUSED",
    "EXIT_OK",
    "AgentError",
    "run_agent",
]

log = logging.getLogger("nodeagent")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_JOIN_REFUSED = 3

# The shutdown budget (the whole process must be gone within a second of SIGTERM).
_STOP_BUDGET_SECONDS = 0.8
# How often a node that knows no live peer tries its seeds again (workers may start before
# the managers they join through), before the time scale.
_REJOIN_SECONDS = 1.0
# A stall of the loop this long, before the time scale, is logged: half of Raft's shortest
# election timeout, past which peers begin to take the node for gone.
_STALL_WARNING_SECONDS = 0.2


class AgentError(Exception):
    """Startup failed for a reason the user can fix; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _session_module() -> ModuleType | None:
    """nodeagent.agent.session if it exists (it is written in parallel); any other import error is a bug."""
    try:
        return importlib.import_module("nodeagent.agent.session")
    except ModuleNotFoundError as exc:
        if exc.name == "nodeagent.agent.session":
            return None
        raise


async def _resolve(addresses: list[str]) -> list[str]:
    """Gossip seeds as ``ip:port`` (the UDP half needs addresses, and DNS must not block the loop)."""
    loop = asyncio.get_running_loop()
    resolved: list[str] = []
    for address in addresses:
        try:
            host, port = split_host_port(address)
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM), 2.0)
        except (OSError, ValueError, TimeoutError) as exc:
            # In compose a manager's name resolves only once its container runs: try again later.
            log.debug("seed %s does not resolve yet: %s", address, exc)
            continue
        ip = str(infos[0][4][0])
        resolved.append(f"{ip}:{port}")
    return resolved


async def _keep_joined(shell: GossipShell, seeds: Callable[[], list[str]], interval: float,
                       found: asyncio.Event | None = None) -> None:
    """Join through the seeds now, and again whenever this node knows no live peer.

    ``found`` (set by mDNS when a manager appears) cuts the wait short.
    """
    attempts = 0
    while True:
        if shell.alone():
            wanted = seeds()
            if wanted:
                resolved = await _resolve(wanted)
                if resolved:
                    # Said once at info level; the retries while the seeds are down are debug noise.
                    log.log(logging.INFO if attempts == 0 else logging.DEBUG,
                            "joining gossip through %s", ", ".join(resolved))
                    attempts += 1
                    shell.join(resolved)
        else:
            attempts = 0
        if found is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(found.wait(), interval)
            found.clear()


def _mdns_interfaces(advertise_addr: str) -> list[str] | None:
    """The one interface mDNS may use: the advertise address's, or None (no mDNS) if it is no IP."""
    try:
        ipaddress.ip_address(advertise_addr)
    except ValueError:
        log.warning("mDNS off: advertise address %r is not an IP address", advertise_addr)
        return None
    return [advertise_addr]


async def run_agent(options: AgentOptions, *, stop: asyncio.Event | None = None,
                    on_ready: Callable[[], None] | None = None) -> int:
    """Run the node agent until SIGTERM/SIGINT (or ``stop`` is set); return the exit code.

    ``on_ready()`` is called once everything has started (``python -m nodeagent`` turns the
    garbage collector back on there)."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    running = Running(tasks=[])
    failure: list[BaseException] = []
    try:
        after_ready = await _start(options, running, stop, failure)
        # The CPU its start took (Python's start and imports included): bench/bringup.py reads it.
        log.info("node agent ready (%.2f s of CPU)", time.process_time())
        for step in after_ready:
            await step()
        if on_ready is not None:
            on_ready()
        await stop.wait()
    except AgentError as exc:
        print(f"swarmlet: {exc}", file=sys.stderr)
        await _shutdown(running, leave=False)
        return exc.exit_code
    except Exception:
        log.exception("the node agent failed to start")
        await _shutdown(running, leave=False)
        return EXIT_FAILED
    began = time.monotonic()
    await _shutdown(running, leave=True)
    log.info("stopped in %.3f s", time.monotonic() - began)
    if failure:
        first = failure[0]
        print(f"swarmlet: {first}", file=sys.stderr)
        return first.exit_code if isinstance(first, AgentError) else EXIT_FAILED
    return EXIT_OK


async def _start(options: AgentOptions, running: Running, stop: asyncio.Event,
                 failure: list[BaseException]) -> list[Callable[[], Awaitable[None]]]:
    """Start everything the node serves; returns what starts once the node is ready."""
    tls.set_enabled(options.tls)
    node_id = await _node_identity(options, stop)
    kept = read_role_file(options.data_dir)
    if kept is not None and kept != options.role:
        # The node was promoted or demoted since the command line was written (compose says
        # --role=worker for a worker that is a manager now): what the swarm decided wins.
        log.info("role %s from %s/role wins over --role %s (promoted or demoted earlier)",
                 kept, options.data_dir, options.role)
        options = dataclasses.replace(options, role=kept)
    log.info("node %s (%s), role %s", node_id, options.hostname, options.role)
    if options.tls:
        held = tls.credentials()
        if held is not None:
            log.info("certificate: %s of cluster %s, valid until %s", held.identity.role,
                     held.identity.cluster_id, held.identity.not_after.isoformat())
    else:
        log.warning("--no-tls: gRPC between nodes is plaintext")
    version = VERSION
    # The *_created series double every counter on the page and say nothing a scrape needs.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = new_registry()
    info = node_info(registry, node_id=node_id, hostname=options.hostname, role=options.role, version=version)
    is_manager = node_manager(registry, options.role)
    # From here on every stall of the loop is measured, and a long one logged (see .looplag).
    assert running.tasks is not None
    lag = LoopLag(registry, warn_after=None)  # warnings once the node is ready: its start holds the loop
    running.tasks.append(loop_task(lag.run(), "loop-lag", stop, failure))

    running.metrics = MetricsServer(registry, options.listen_addr, options.metrics_port)
    try:
        await running.metrics.start()
    except OSError as exc:
        running.metrics = None
        raise AgentError(f"--metrics-port {options.metrics_port}: cannot listen ({exc.strerror})") from None

    facts = NodeFacts(node_id=node_id, hostname=options.hostname, engine_version=version)
    swarm_info = session_swarm_info(lambda: running.swarm.session if running.swarm else None, node_id,
                                    options.advertise_addr)
    # /images/json lists the emulated images and the tags this node's tasks ran (the task runtime
    # starts later, hence the late lookup).
    images = RuntimeImages(lambda: running.task_runtime.worker.images_used if running.task_runtime else [])
    volumes = lambda: running.task_runtime.volumes if running.task_runtime else None  # noqa: E731
    engine_ssl = None
    if options.engine_tls is not None:
        try:
            engine_ssl = tlsverify_context(*options.engine_tls)
        except (OSError, ssl.SSLError) as exc:
            raise AgentError(f"--tlsverify: cannot use the certificate files ({exc})") from None
    engine_api = EngineApiServer(facts, swarm_info, options.listen_addr, options.engine_port, images=images,
                                 volumes=volumes, ssl_context=engine_ssl)
    try:
        await engine_api.start()
    except OSError as exc:
        raise AgentError(f"--engine-port {options.engine_port}: cannot listen ({exc.strerror})") from None
    running.engine_api = engine_api

    base = GossipConfig.lan() if options.gossip_config == "lan" else GossipConfig.default()
    fault_metrics = FaultMetrics(registry)
    shared = PlaneShared(config=base.scaled(options.time_scale), gossip_metrics=GossipMetrics(registry),
                          fault_metrics=fault_metrics, faults=LinkFaults(on_fault=fault_metrics.acted),
                          registry=registry)
    faults = shared.faults
    running.node_id = node_id
    try:
        await start_plane(options, node_id, running, shared)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AgentError(f"--gossip-port {options.gossip_port}: cannot listen ({reason})") from None
    shell = running.shell
    assert shell is not None

    # mDNS stays on the interface of the advertise address: the project's network in a
    # container, loopback for local processes. Never every interface of the host.
    mdns_interfaces = _mdns_interfaces(options.advertise_addr)
    if options.discover == "mdns" and mdns_interfaces is not None:
        from nodeagent.discovery import ManagerBrowser, cluster_digest

        running.browser = ManagerBrowser(cluster=cluster_digest(options.token_file),
                                         interfaces=mdns_interfaces)
        await running.browser.start()

    async def role_changed(role: str) -> None:
        # Promoted or demoted at run time: the node_info series and the mDNS announcement follow.
        info.clear()
        info.labels(node_id=running.node_id, hostname=options.hostname, role=role, version=version).set(1)
        is_manager.set(1 if role == "manager" else 0)
        if role == "manager" and running.announcer is None and mdns_interfaces is not None:
            running.announcer = _announcer(options, running.node_id, mdns_interfaces)
            await running.announcer.start()
        elif role != "manager" and running.announcer is not None:
            announcer, running.announcer = running.announcer, None
            await announcer.stop()

    browser = running.browser

    def gossip_seeds() -> list[str]:
        # The swarm's options: a blank node that joined later gossips through its managers' hosts.
        seeds = list(swarm.options.gossip_seeds())
        if browser is not None:
            seeds += browser.gossip_seeds()
        return seeds

    def keep_gossip_joined() -> None:
        assert running.shell is not None and running.tasks is not None
        rejoin = _keep_joined(running.shell, gossip_seeds, _REJOIN_SECONDS * options.time_scale,
                              browser.changed if browser is not None else None)
        running.gossip_join = loop_task(rejoin, "gossip-join", stop, failure)
        running.tasks.append(running.gossip_join)

    keep_gossip_joined()

    def spawn(coro: Any, name: str) -> asyncio.Task[None]:
        # A session per swarm entered: the ones of swarms left are done, and forgotten here.
        task = loop_task(coro, name, stop, failure)
        assert running.tasks is not None
        running.tasks[:] = [t for t in running.tasks if not t.done()] + [task]
        return task

    def refused(message: str) -> None:
        raise AgentError(message, EXIT_JOIN_REFUSED)

    context = NodeContext(options=options, node_id=node_id, hostname=options.hostname, registry=registry,
                          gossip=shell, engine_api=engine_api, task_runtime=running.task_runtime,
                          mesh=running.mesh, faults=faults)

    async def renew(new_id: str) -> NodeContext:
        # docker swarm join (or init after a leave) gave the node a new ID: what runs under an
        # ID (gossip, the data plane, the task runtime) starts again under it, and the Engine
        # API and the node_info series say it. The old gossip member leaves gracefully.
        log.info("node %s is node %s from now on: restarting gossip and the data plane under it",
                 running.node_id, new_id)
        if running.gossip_join is not None:
            running.gossip_join.cancel()
        if running.announcer is not None:
            announcer, running.announcer = running.announcer, None
            await announcer.stop()
        await stop_plane(running, shared)
        running.node_id = new_id
        await start_plane(options, new_id, running, shared)
        keep_gossip_joined()
        engine_api.facts = dataclasses.replace(engine_api.facts, node_id=new_id)
        info.clear()
        info.labels(node_id=new_id, hostname=options.hostname, role=swarm.role or options.role,
                    version=version).set(1)
        if running.task_runtime is not None:
            running.task_runtime.start(swarm.connected_to)
        assert running.shell is not None
        return dataclasses.replace(swarm.context, node_id=new_id, gossip=running.shell,
                                   task_runtime=running.task_runtime, mesh=running.mesh)

    swarm = NodeSwarm(context, session_module=_session_module(), spawn=spawn, on_refused=refused,
                      on_role_change=role_changed,
                      extra_managers=browser.managers if browser is not None else list, renew=renew)
    running.swarm = swarm
    engine_api.serve_swarm(NodeSwarmRoutes(swarm, engine_api, time_scale=options.time_scale))
    try:
        await swarm.start()
    except RoleNotFound as exc:
        raise AgentError(f"--role manager: {exc}", EXIT_FAILED) from None
    if running.task_runtime is not None:
        # The task runtime follows whichever session the node has now (none while in no swarm).
        running.task_runtime.start(swarm.connected_to)

    async def warn_of_stalls() -> None:
        lag.warn_after = _STALL_WARNING_SECONDS * options.time_scale

    after_ready: list[Callable[[], Awaitable[None]]] = [warn_of_stalls]
    if options.role == "manager" and mdns_interfaces is not None:
        # Once the node is ready: the announcement (zeroconf's import and sockets, 0.03-0.05 s of
        # CPU) is for workers that discover managers by mDNS, and must not hold up the start of
        # Raft, the dispatcher and the Engine API, which every other node waits for.
        interfaces = mdns_interfaces

        async def announce() -> None:
            if running.announcer is None:
                running.announcer = _announcer(options, running.node_id, interfaces)
                await running.announcer.start()

        after_ready.append(announce)
    return after_ready


async def _node_identity(options: AgentOptions, stop: asyncio.Event) -> str:
    """The node's ID, and with TLS its credentials loaded (``tls.credentials()``).

    A node that holds a certificate is the node its certificate names. A node started with
    ``--join`` that has not joined yet joins first, before anything else runs, and takes the ID
    the managers chose (its certificate's CN), as a swarmkit node does. A bootstrapping manager
    (it is the CA) and a blank engine draw their own; a founding manager derives its own from the
    CA digest (``--initial-cluster``)."""
    held = tls.NodeCredentials.load(options.data_dir) if options.tls else None
    tls.set_credentials(held)
    try:
        if held is not None and is_id(held.identity.node_id):
            return keep_node_id(options.data_dir, held.identity.node_id)
        if _joins_first(options):
            return keep_node_id(options.data_dir, await _join_first(options, stop))
        first_id = None
        if options.initial_cluster:
            # A founding manager: its ID (and every other founder's) follows from the cluster's CA
            # digest and its name, so that Raft's first voters are known to all before any starts.
            key = token_digest(options.manager_token_file)
            if not key:
                raise AgentError(f"--initial-cluster: {options.manager_token_file} holds no join token")
            first_id = founder_id(key, options.hostname)
        return load_node_id(options.data_dir, first_id)
    except IdentityError as exc:
        raise AgentError(str(exc)) from None


def _joins_first(options: AgentOptions) -> bool:
    """Whether the node joins its swarm before it starts anything else: started with ``--join``
    (not bootstrapping, founding or blank), and not joined in an earlier run."""
    if options.no_swarm or options.bootstrap or options.initial_cluster or not options.join:
        return False
    if not (options.token_file or (options.role == "manager" and options.manager_token_file)):
        return False
    session_file = os.path.join(options.data_dir, "session.json")
    return not os.path.exists(session_file)


async def _join_first(options: AgentOptions, stop: asyncio.Event) -> str:
    """Join through ``--join`` with no ID of its own; the ID the managers chose."""
    from types import SimpleNamespace

    from nodeagent.agent.session import AgentSession, JoinRefused

    context = SimpleNamespace(options=options, node_id="", hostname=options.hostname, faults=None)
    session = AgentSession(context, lambda: list(options.join))
    joining = asyncio.get_running_loop().create_task(session.join(), name="join")
    stopping = asyncio.get_running_loop().create_task(stop.wait(), name="join-stop")
    try:
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not joining.done():
            await session.stop()
            joining.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await joining
    if not joining.done() or joining.cancelled():
        raise AgentError("stopped before the node had joined its swarm", EXIT_OK)
    try:
        joining.result()
    except JoinRefused as exc:
        raise AgentError(str(exc), EXIT_JOIN_REFUSED) from None
    log.info("joined as node %s: the ID the managers chose", session.node_id)
    return session.node_id


def _announcer(options: AgentOptions, node_id: str, interfaces: list[str]) -> Any:
    """The mDNS announcement of this node as a manager (workers with --discover mdns find it)."""
    from nodeagent.discovery import ManagerAnnouncer, cluster_digest

    return ManagerAnnouncer(
        hostname=options.hostname, node_id=node_id, address=options.advertise_addr,
        cluster_port=options.cluster_port, gossip_port=options.gossip_port,
        # Both join tokens carry the cluster's digest; a promoted worker has only its own.
        cluster=cluster_digest(options.manager_token_file or options.token_file),
        interfaces=interfaces)


def loop_task(coro: Any, name: str, stop: asyncio.Event, failure: list[BaseException]) -> asyncio.Task[None]:
    """Run ``coro`` as a task; if it fails, record why and stop the process."""
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)

    def done(t: asyncio.Task[None]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            if not isinstance(exc, AgentError):
                log.error("%s failed", name, exc_info=exc)
            failure.append(exc)
            stop.set()

    task.add_done_callback(done)
    return task


async def _shutdown(running: Running, *, leave: bool) -> None:
    """Stop what runs, newest first, within the one-second budget."""

    async def steps() -> None:
        for task in running.tasks or []:
            task.cancel()
        # stop_plane's two halves, the role stopped between them (a manager holds the gossip member).
        await stop_data_plane(running)
        if running.swarm is not None:
            try:
                await running.swarm.stop()
            except Exception:
                log.exception("the manager role did not stop cleanly")
        # The gossip member leaves and its transport stops while the node's other servers close.
        closers: list[Any] = [stop_gossip(running, leave=leave)]
        if running.announcer is not None:
            closers.append(running.announcer.stop())
        if running.browser is not None:
            closers.append(running.browser.stop())
        if running.metrics is not None:
            closers.append(running.metrics.stop())
        if running.engine_api is not None:
            closers.append(running.engine_api.stop())
        await asyncio.gather(*closers, return_exceptions=True)

    try:
        await asyncio.wait_for(steps(), _STOP_BUDGET_SECONDS)
    except TimeoutError:
        log.warning("shutdown took longer than %.1f s; exiting anyway", _STOP_BUDGET_SECONDS)
