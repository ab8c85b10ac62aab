"""The routing mesh on one node: listeners on the published ports, each connection relayed to a task.

The node learns the cluster's ingress network from its session with the managers
(:meth:`Mesh.configure`, as swarmkit hands each node its ingress attachment) and joins it in the
network database whether or not a task of it is on ingress, as every Swarm node has an ingress
sandbox. From then on the ingress network's endpoint table says which ports are published and
which running, healthy tasks serve them (:func:`nodeagent.overlay.mesh.ingress_routes`); the
node's own tasks with host-mode ports add theirs (:meth:`Mesh.task_running`). Whenever the table
changes, the listeners follow: one TCP server per published port on the node's address. A port
whose backends were withdrawn (the service removed or scaled to 0, a host-mode task stopped)
closes at once, as Swarm's; one whose backends left the table because gossip declared their
node dead lingers (:data:`LINGER`) before its listener closes, its connections going to the
backends last known.

Each accepted connection goes to the next backend in turn (round robin per port): a task on this
node is dialled at its listener, a task on another node through a stream of the overlay's tunnel
connection to its node, tagged with the ingress VNI (:mod:`nodeagent.overlay.tunnel`); a task's
listener in this process is handed the client's connection itself. The common cases are decided
in the accepting callback itself, with no task and no round trip: a listener of this process
takes the connection, or a stream is opened on a tunnel connection that is up and the client's
bytes follow it at once. A backend that refuses before it answered is skipped for the next one
(the client's bytes sent so far go again); when none accepts, the client's connection is closed.
The two sides are spliced (:mod:`nodeagent.overlay.splice`) until both close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge

from nodeagent.networkdb.core import Endpoint
from nodeagent.overlay.attach import Attachment
from nodeagent.overlay.frames import Datagram
from nodeagent.overlay.mesh import (
    Backend,
    MeshBalancer,
    PublishedPort,
    host_routes,
    ingress_attachment,
    ingress_routes,
    listener_changes,
    published_ports,
)
from nodeagent.overlay.splice import Splice, hand_over, join, serves_here
from nodeagent.overlay.tunnel import Stream

__all__ = ["LINGER", "Mesh", "MeshMetrics"]

log = logging.getLogger(__name__)

LINGER = 10.0
"""Seconds a published port stays open after its last backends left the table with their node
(gossip declared it dead), connections going to the backends last known: gossip may take a live
but busy node for dead for a moment, and every node then drops its entries until it is back. A
port whose backends were withdrawn (the service removed, scaled to 0) closes at once."""


class MeshMetrics:
    """``swarmlet_mesh_connections_total{port,outcome}`` and ``swarmlet_mesh_listeners``."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self._children: dict[tuple[int | str, str], Any] = {}
        self.connections = Counter("swarmlet_mesh_connections", "Connections the routing mesh accepted, by "
                                   "published port and outcome (local, tunnel, refused).",
                                   ["port", "outcome"], registry=registry)  # fmt: skip
        self.listeners = Gauge("swarmlet_mesh_listeners", "Published ports this node listens on.",
                               registry=registry)  # fmt: skip

    def connection(self, port: int | str, outcome: str) -> None:
        """One connection to ``port`` (labels resolved once per port and outcome)."""
        child = self._children.get((port, outcome))
        if child is None:
            child = self._children[(port, outcome)] = self.connections.labels(port=str(port), outcome=outcome)
        child.inc()


class Mesh:
    """This node's routing mesh (see the module docstring)."""

    def __init__(self, overlay: Any, *, registry: prometheus_client.CollectorRegistry | None = None,
                 linger: float = LINGER) -> None:
        """``overlay``: the node's :class:`~nodeagent.overlay.shell.Overlay`; listeners bind on its host.
        ``linger``: seconds a port that lost its last backend stays open (:data:`LINGER`)."""
        self.overlay = overlay
        self.ndb = overlay.ndb
        self.host = str(overlay.host)
        self.node_id = str(overlay.node_id)
        self.metrics = MeshMetrics(registry)
        self.balancer: MeshBalancer[Backend] = MeshBalancer()
        self.ingress: Attachment | None = None
        self.routes: dict[int, list[Backend]] = {}
        self._host_tasks: dict[str, tuple[Endpoint, list[PublishedPort]]] = {}
        self.linger = linger
        self._known: dict[int, tuple[list[Backend], float]] = {}  # port -> last backends, when seen
        self._timer: asyncio.Task[None] | None = None
        self.udp_routes: dict[int, list[Backend]] = {}
        self._servers: dict[int, asyncio.Server] = {}
        self._udp: dict[int, asyncio.DatagramTransport] = {}
        self._flows: dict[tuple[int, str, int], Backend] = {}  # (port, client, client port) -> backend
        self._failed: set[int] = set()  # ports that could not be bound (said once)
        self._failed_udp: set[int] = set()
        self._dirty = asyncio.Event()
        self._job: asyncio.Task[None] | None = None
        self._conns: set[asyncio.Task[Any]] = set()  # connections choosing their backend
        self._splices: set[Splice] = set()  # relayed connections (both sides)
        overlay.mesh = self
        self.ndb.on_change(self._changed)

    async def start(self) -> None:
        """Follow the tables: open and close listeners as they change."""
        self._job = asyncio.get_running_loop().create_task(self._run(), name="mesh")

    async def stop(self) -> None:
        """Close every listener and relayed connection."""
        if self._timer is not None:
            self._timer.cancel()
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        for transport in self._udp.values():
            transport.close()
        self._udp.clear()
        for task in list(self._conns):
            task.cancel()
        for splice in list(self._splices):
            splice.abort()

    # Inputs -------------------------------------------------------------------------------------
    def configure(self, network: Mapping[str, Any] | None) -> None:
        """The cluster's ingress network (the swarm API's shape) as the managers sent it; None: none."""
        attachment = ingress_attachment(network) if network else None
        if attachment == self.ingress:
            return
        if self.ingress is not None:
            self.overlay.release(self.ingress.network_id)
        self.ingress = attachment
        if attachment is not None:
            self.overlay.hold(attachment)
            log.info("routing mesh on ingress network %s (VNI %d)", attachment.network_id[:12],
                     attachment.vni)
        self._refresh()

    def task_running(self, task: Mapping[str, Any], listeners: tuple[tuple[int, str, int], ...]) -> None:
        """A task of this node runs: its host-mode ports are served here."""
        ports = [p for p in published_ports(task) if p.mode == "host"]
        if not ports:
            return
        task_id = str(task.get("ID") or "")
        service = str((task.get("ServiceAnnotations") or {}).get("Name") or "")
        endpoint = Endpoint("", task_id, self.node_id, "", "", service, str(task.get("ServiceID") or ""),
                            listeners=listeners)  # fmt: skip
        self._host_tasks[task_id] = (endpoint, ports)
        self._refresh()

    def task_stopped(self, task_id: str) -> bool:
        """A task of this node is being stopped: no new connection goes to it. True if it had
        host-mode ports."""
        if self._host_tasks.pop(task_id, None) is None:
            return False
        self._refresh()
        return True

    def _changed(self, networks: set[str]) -> None:
        if self.ingress is not None and self.ingress.network_id in networks:
            self._refresh()

    def _refresh(self) -> None:
        routes: dict[int, list[Backend]] = {}
        udp: dict[int, list[Backend]] = {}
        if self.ingress is not None:
            endpoints = self.overlay.endpoints(self.ingress.network_id)
            routes = ingress_routes(self.ingress.network_id, endpoints)
            udp = ingress_routes(self.ingress.network_id, endpoints, "udp")
        live = {b.endpoint.task_id for backends in udp.values() for b in backends}
        self._flows = {k: b for k, b in self._flows.items() if b.endpoint.task_id in live}
        self.udp_routes = udp
        for port, backends in host_routes(self._host_tasks).items():
            routes.setdefault(port, []).extend(backends)
        now = time.monotonic()
        for port, backends in routes.items():
            self._known[port] = (backends, now)
        # A port whose backends were withdrawn (service removed, scaled to 0, host-mode task
        # stopped) closes at once; one whose backends went with a node gossip declared dead
        # (its peer entry dropped with them) lingers, the node maybe only slow.
        peers = self.ndb.db.peers(self.ingress.network_id) if self.ingress is not None else {}
        here = self.node_id
        self._known = {p: (b, at) for p, (b, at) in self._known.items()
                       if p in routes or (now - at < self.linger and _lost_with_a_node(b, peers, here))}
        self.routes = routes
        self._dirty.set()
        if any(p not in routes for p in self._known):
            self._wake_later()

    def _wake_later(self) -> None:
        """Look again once the lingering ports' time is up (their listeners then close)."""
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._sleep_then_refresh())

    async def _sleep_then_refresh(self) -> None:
        await asyncio.sleep(self.linger + 0.05)  # asyncio may wake a timer a tick early
        self._timer = None
        self._refresh()

    def backends(self, port: int) -> list[Backend]:
        """Where a connection to ``port`` may go: its backends now, else (a port lingering) the
        last ones known, which a node that gossip took for dead but is not still answers."""
        current = self.routes.get(port)
        if current:
            return current
        known = self._known.get(port)
        return known[0] if known is not None else []

    # Listeners ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
            except Exception:
                log.exception("routing mesh: listeners not updated")

    async def _reconcile(self) -> None:
        wanted = set(self.routes) | set(self._known)
        self._failed &= wanted
        self._failed_udp &= set(self.udp_routes)
        loop = asyncio.get_running_loop()
        opening, closing = listener_changes(self._servers, wanted - self._failed)
        for port in closing:
            self._servers.pop(port).close()
        for port in opening:
            try:
                self._servers[port] = await loop.create_server(
                    functools.partial(self._client, port), self.host, port, reuse_address=True)
            except OSError as exc:
                self._failed.add(port)
                log.warning("routing mesh: cannot listen on %s:%d (%s)", self.host, port, exc.strerror or exc)
        opening, closing = listener_changes(self._udp, set(self.udp_routes) - self._failed_udp)
        for port in closing:
            self._udp.pop(port).close()
        loop = asyncio.get_running_loop()
        for port in opening:
            try:
                self._udp[port], _ = await loop.create_datagram_endpoint(
                    lambda port=port: _UdpIngress(self, port), local_addr=(self.host, port))  # type: ignore[misc]
            except OSError as exc:
                self._failed_udp.add(port)
                log.warning("routing mesh: cannot listen on %s:%d/udp (%s)", self.host, port,
                            exc.strerror or exc)
        self.metrics.listeners.set(len(self._servers) + len(self._udp))

    @property
    def ports(self) -> list[str]:
        """The published ports this node listens on now ("8080/tcp")."""
        return [f"{p}/tcp" for p in sorted(self._servers)] + [f"{p}/udp" for p in sorted(self._udp)]

    # Connections --------------------------------------------------------------------------------
    def _client(self, port: int) -> Splice:
        """The protocol of a connection to published ``port``: held until a backend answers."""
        client = _Client(self, port)
        self._track(client)
        return client

    def _track(self, splice: Splice) -> None:
        self._splices.add(splice)
        splice.on_lost = self._splices.discard

    def _accept_now(self, client: _Client) -> None:
        """A client connected: relay it at once when the chosen backend allows (a listener of
        this process, or a tunnel connection that is up), else find it one in a task."""
        port = client.port
        rotation = self.balancer.rotation(port, self.backends(port))
        if rotation:
            backend = rotation[0]
            endpoint = backend.endpoint
            if endpoint.node == self.node_id:
                listener = endpoint.listener_for(backend.target)
                if listener is not None and serves_here(listener) and hand_over(client, listener):
                    self._splices.discard(client)
                    self.metrics.connection(port, "local")
                    return
            elif self.ingress is not None:
                upstream = _Upstream(self, client, rotation[1:])
                try:
                    stream = self.overlay.open_now(self.ingress, endpoint, backend.target, upstream)
                except OSError:
                    stream = None
                if stream is not None:
                    stream.on_opened = upstream.opened
                    stream.on_refused = upstream.refused
                    upstream.connection_made(stream)
                    self.metrics.connection(port, "tunnel")
                    self._track(upstream)
                    client.replay = []
                    join(client, upstream)
                    return
        self._later(client, rotation)

    def _later(self, client: _Client, rotation: list[Backend]) -> None:
        task = asyncio.get_running_loop().create_task(self._accept(client.port, client, rotation))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _accept(self, port: int, client: Splice, rotation: list[Backend]) -> None:
        await self._relay(port, client, rotation)

    async def _open(self, backend: Backend, client: Splice) -> Splice | None:
        """A connection to ``backend`` to join ``client`` to; None when a listener of this
        process took ``client`` itself (:func:`~nodeagent.overlay.splice.hand_over`)."""
        endpoint = backend.endpoint
        if endpoint.node == self.node_id:
            listener = endpoint.listener_for(backend.target)
            if listener is None:
                raise ConnectionRefusedError("Connection refused")
            if serves_here(listener) and hand_over(client, listener):
                self._splices.discard(client)
                return None
            _, upstream = await asyncio.get_running_loop().create_connection(Splice, *listener)
            return upstream
        if self.ingress is None:
            raise OSError("no ingress network")
        opened: Splice = await self.overlay.open_splice(self.ingress, endpoint, backend.target)
        return opened

    async def _relay(self, port: int, client: Splice, rotation: list[Backend]) -> None:
        upstream: Splice | None = None
        chosen: Backend | None = None
        for backend in rotation:
            if client.lost:
                return
            try:
                upstream = await asyncio.wait_for(self._open(backend, client), 5.0)
                chosen = backend
                if upstream is None:  # handed over to the task's listener in this process
                    self.metrics.connection(port, "local")
                    return
                break
            except (OSError, TimeoutError) as exc:
                log.debug("routing mesh: port %d: task %s refused (%s); trying the next", port,
                          backend.endpoint.task_id[:12], exc)
        if upstream is None or chosen is None:
            self.metrics.connection(port, "refused")
            client.close()
            return
        outcome = "local" if chosen.endpoint.node == self.node_id else "tunnel"
        self.metrics.connection(port, outcome)
        self._track(upstream)
        join(client, upstream)

    def datagram(self, port: int, data: bytes, client: tuple[str, int]) -> None:
        """A datagram to UDP ingress ``port``: to its flow's backend (chosen in turn at the flow's
        first datagram), as a VXLAN frame on ingress from the subnet's gateway address (the
        node's address there, which Swarm gives the ingress sandbox, is not allocated here)."""
        ingress = self.ingress
        if ingress is None:
            return
        key = (port, str(client[0]), int(client[1]))
        backend = self._flows.get(key)
        if backend is None:
            rotation = self.balancer.rotation(-port, self.udp_routes.get(port, []))
            if not rotation:
                return
            backend = self._flows[key] = rotation[0]
        src = str(next(ingress.subnet.hosts())) if ingress.subnet is not None else "0.0.0.0"
        self.metrics.connection(f"{port}/udp", "datagram")
        self.overlay.send_datagram(ingress, Datagram(ingress.vni, src, int(client[1]), backend.endpoint.addr,
                                                     backend.target, data))  # fmt: skip


def _lost_with_a_node(backends: list[Backend], peers: Mapping[str, str], here: str) -> bool:
    """Whether some of ``backends`` is on another node no longer in the ingress peer table."""
    return any(b.endpoint.node != here and b.endpoint.node not in peers for b in backends)


class _UdpIngress(asyncio.DatagramProtocol):
    def __init__(self, mesh: Mesh, port: int) -> None:
        self.mesh = mesh
        self.port = port

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.mesh.datagram(self.port, data, (str(addr[0]), int(addr[1])))


_REPLAY_LIMIT = 64 * 1024
"""Bytes of a client kept until its tunnelled backend answered, to send again to the next one if
it refused; a client that sent more than that before any answer is not moved."""


class _Client(Splice):
    """A connection to a published port: :meth:`Mesh._accept_now` finds it a backend and joins them."""

    def __init__(self, mesh: Mesh, port: int) -> None:
        super().__init__()
        self.mesh = mesh
        self.port = port
        self.replay: list[bytes] | None = None  # bytes relayed while the backend has not answered
        self._replayed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.mesh._accept_now(self)

    def data_received(self, data: bytes) -> None:
        replay = self.replay
        if replay is not None and self.peer is not None:
            self._replayed += len(data)
            if self._replayed > _REPLAY_LIMIT:
                self.replay = None
            else:
                replay.append(data)
        super().data_received(data)


class _Upstream(Splice):
    """A client's stream through a tunnel, opened before its node answered: if it refuses
    (the task stopped since this node last heard), the client goes on to the next backends."""

    def __init__(self, mesh: Mesh, client: _Client, rest: list[Backend]) -> None:
        super().__init__()
        self.mesh = mesh
        self.client = client
        self.rest = rest

    def opened(self, _stream: Stream) -> None:
        self.client.replay = None

    def refused(self, _stream: Stream, reason: str) -> bool:
        """The far end refused the stream: True when the client was given to the next backends."""
        client = self.client
        if client.replay is None or client.lost:
            return False
        log.debug("routing mesh: port %d: a tunnelled task refused (%s); trying the next", client.port,
                  reason)
        self.mesh._splices.discard(self)
        self.transport = None
        client.peer = None
        client._pending = [*client.replay, *client._pending]
        client.replay = None
        self.mesh._later(client, self.rest)
        return True
