"""What runs under the node's ID, started at once and again when the ID changes.

The gossip transport and member (7946), the network database, the overlay and routing mesh, and
the task runtime all carry the node's ID. A blank engine runs them under the ID it started with;
``docker swarm join`` gives it the one the CA chose, and :func:`stop_plane` then
:func:`start_plane` start them again under it (the old gossip member leaves gracefully).
:class:`Running` is everything the process has started, so that shutdown stops exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from nodeagent.engineapi import EngineApiServer
from nodeagent.gossip.codec import MAX_STREAM_BYTES, GossipCodec
from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.messages import NodeMeta
from nodeagent.gossip.shell import AgentAdminServicer, GossipShell
from nodeagent.identity import VERSION
from nodeagent.membership import NodeSwarm
from nodeagent.metrics import FaultMetrics, GossipMetrics, MetricsServer
from nodeagent.options import AgentOptions
from nodeagent.transport.faults import LinkFaults
from nodeagent.transport.grpc_transport import GrpcTransport
from nodeagent.transport.planes import FaultGate

__all__ = ["LEAVE_SECONDS", "STOP_GRACE_SECONDS", "PlaneShared", "Running", "start_plane",
           "stop_data_plane", "stop_gossip", "stop_plane", "task_host"]

LEAVE_SECONDS = 0.25
"""How long a leaving gossip member waits for its leave to go out."""
STOP_GRACE_SECONDS = 0.1
"""In-flight RPCs' grace when the gossip transport stops."""

log = logging.getLogger("nodeagent")


@dataclass
class Running:
    """What has been started, so that shutdown stops exactly that, in reverse."""

    metrics: MetricsServer | None = None
    engine_api: EngineApiServer | None = None
    transport: GrpcTransport | None = None
    shell: GossipShell | None = None
    swarm: NodeSwarm | None = None
    announcer: Any = None
    browser: Any = None
    task_runtime: Any = None
    overlay: Any = None
    mesh: Any = None
    networkdb: Any = None
    tasks: list[asyncio.Task[None]] | None = None
    node_id: str = ""
    """The ID the node runs under now (``docker swarm join`` gives a blank node a new one)."""
    plane_registry: CollectorRegistry | None = None
    """Where the parts that run under the node's ID put their metrics (in the process's registry)."""
    gossip_join: asyncio.Task[None] | None = None


@dataclass
class PlaneShared:
    """What the parts that run under the node's ID keep across a change of ID."""

    config: GossipConfig
    gossip_metrics: GossipMetrics
    fault_metrics: FaultMetrics
    faults: LinkFaults
    registry: CollectorRegistry
    """The process's registry."""


async def start_plane(options: AgentOptions, node_id: str, running: Running, shared: PlaneShared) -> None:
    """Start what runs under the node's ID: the gossip transport (7946) and member, the network
    database, the overlay and routing mesh, and the task runtime (not started: it follows the
    session). Their metrics go to a registry of their own inside the process's, so that a new
    ID's can replace the old ones'."""
    registry = CollectorRegistry(auto_describe=True)
    transport = GrpcTransport(
        listen_host=options.listen_addr, port=options.gossip_port, advertise_host=options.advertise_addr,
        codec=GossipCodec(), stream_codec=GossipCodec(max_bytes=MAX_STREAM_BYTES), faults=shared.faults,
        observer=shared.gossip_metrics, max_stream_bytes=MAX_STREAM_BYTES,
    )
    labels = (("hostname", options.hostname),)
    addr = options.cluster_address if options.role == "manager" else options.advertise_addr
    meta = NodeMeta(node_id=node_id, role=options.role, addr=addr, labels=labels, version=VERSION)
    admin = AgentAdminServicer(None, shared.faults, shared.fault_metrics)
    transport.add_servicer(admin.register)
    running.networkdb, running.overlay, running.mesh = data_plane(options, node_id, registry, shared.faults)
    transport.add_servicer(running.networkdb.register)
    running.task_runtime = task_runtime(options, node_id, registry, running.overlay, shared.faults)
    if running.task_runtime is not None:
        transport.add_servicer(running.task_runtime.register)
    await transport.start()  # OSError: the gossip port is taken (the caller names the flag)
    running.transport = transport
    shared.registry.register(registry)
    running.plane_registry = registry
    # Built after the bind: the member's address is the port really bound.
    shell = GossipShell(config=shared.config, name=node_id, meta=meta, transport=transport,
                        rng=random.Random(), metrics=shared.gossip_metrics)
    admin.shell = shell
    await shell.start()
    running.shell = shell
    await running.networkdb.start(shell)
    try:
        await running.overlay.start()
    except OSError as exc:  # tasks still run; they only cannot reach other nodes' tasks
        log.warning("overlay data plane off: cannot bind %s:%d (%s)", running.overlay.host,
                    running.overlay.port, exc.strerror or exc)
    await running.mesh.start()


async def stop_plane(running: Running, shared: PlaneShared) -> None:
    """Stop what :func:`start_plane` started, newest first; the gossip member leaves gracefully."""
    await stop_data_plane(running)
    await stop_gossip(running, leave=True)
    if running.plane_registry is not None:
        with contextlib.suppress(KeyError):
            shared.registry.unregister(running.plane_registry)
    running.plane_registry = None


async def stop_data_plane(running: Running) -> None:
    """The first half of :func:`stop_plane`: the task runtime, the routing mesh, the overlay and
    the network database, in that order (the node's shutdown stops its role after them)."""
    if running.task_runtime is not None:
        with contextlib.suppress(Exception):
            await running.task_runtime.stop()
    for plane in (running.mesh, running.overlay, running.networkdb):
        if plane is not None:
            with contextlib.suppress(Exception):
                await plane.stop()
    running.task_runtime = running.mesh = running.overlay = running.networkdb = None


async def stop_gossip(running: Running, *, leave: bool) -> None:
    """The second half of :func:`stop_plane`: the gossip member (first leaving gracefully, with
    ``leave``; not when the node failed to start) and then its transport."""
    if running.shell is not None:
        if leave:
            with contextlib.suppress(Exception):
                await running.shell.leave(LEAVE_SECONDS)
        await running.shell.stop()
    if running.transport is not None:
        await running.transport.stop(STOP_GRACE_SECONDS)
    running.shell, running.transport = None, None


def task_host(options: AgentOptions) -> str:
    """The address tasks listen on: the listen address, or the advertise address for a wildcard."""
    return options.listen_addr if options.listen_addr not in ("0.0.0.0", "::", "") else options.advertise_addr


def data_plane(options: AgentOptions, node_id: str, registry: Any,
                faults: LinkFaults | None = None) -> tuple[Any, Any, Any]:
    """The network database, the overlay (VXLAN and tunnels on the task address's port 4789) and
    the routing mesh (the published ports, on the same address)."""
    from nodeagent.networkdb.core import NetworkDBConfig
    from nodeagent.networkdb.shell import NetworkDBShell
    from nodeagent.overlay.mesh_shell import LINGER, Mesh
    from nodeagent.overlay.shell import Overlay

    ndb = NetworkDBShell(node_id, NetworkDBConfig(), random.Random(), time_scale=options.time_scale,
                         registry=registry, faults=FaultGate(faults, "networkdb"))
    overlay = Overlay(node_id=node_id, host=task_host(options), ndb=ndb, registry=registry,
                      port=options.data_path_port, faults=FaultGate(faults, "overlay"))
    return ndb, overlay, Mesh(overlay, registry=registry, linger=LINGER * options.time_scale)


def task_runtime(options: AgentOptions, node_id: str, registry: Any, overlay: Any = None,
                  faults: LinkFaults | None = None) -> Any:
    """The node's task runtime (nodeagent.agent.tasks), listening for tasks on the node's address."""
    from nodeagent.agent.tasks import TaskRuntime

    return TaskRuntime(node_id=node_id, hostname=options.hostname, listen_host=task_host(options),
                       time_scale=options.time_scale, registry=registry, overlay=overlay,
                       volumes_dir=os.path.join(options.data_dir, "volumes"),
                       shared_volumes_dir=options.shared_volumes,
                       faults=FaultGate(faults, "dispatcher"))  # fmt: skip


