"""The node's overlay data plane: VXLAN datagrams on UDP 4789, stream tunnels on TCP 4789, DNS.

A task attaches when it is prepared (:meth:`Overlay.join`): the node joins each of the task's
overlays in the network database (its peer entry) if it carries none of them yet, and the task
gets a :class:`TaskNetwork`, the API its emulated processes use. Once the task runs, its endpoint
(overlay address, VIP, service, aliases, listeners) is published (:meth:`Overlay.publish`); when
it exits, it is withdrawn and the node leaves a network its last task left (:meth:`Overlay.detach`).

* **Datagrams** to a task on another node go as one VXLAN frame (:mod:`nodeagent.overlay.frames`)
  from this node's UDP 4789 to the other node's, found in the peer table. The receiver checks the
  VNI is one it carries and hands the payload to the task bound to (address, port) on it.
* **Streams** to a task on another node go through a tunnel: a stream multiplexed on this node's
  lasting tunnel connection to the other node's port 4789 (:mod:`nodeagent.overlay.tunnel`),
  mutual TLS with the nodes' certificates unless TLS is off (:mod:`nodeagent.overlay.tunnel_tls`).
  Each stream opens with a frame that tags it with the network's VNI and the destination task's
  address and port; the receiver finds the task with that address on the network of that VNI
  among its own and hands the stream to its listener, as if the listener had accepted it (the
  emulated images' listeners are in this process), or dials the listener and relays bytes both
  ways (:mod:`nodeagent.overlay.splice`); it answers ``OPENED``, or ``REFUSED`` and a reason. The
  far end's certificate must be a manager's or worker's of this swarm, from a node that carries
  the stream's network. A task on this node is dialled directly.
* **Names** resolve with :func:`nodeagent.overlay.dns.resolve` over this node's endpoint table,
  on the task's own networks only; a VIP is balanced round robin over its running tasks.

A task reaches only addresses of networks it is attached to: a destination outside all of its
subnets, or with no task on that network, is "No route to host" (EHOSTUNREACH).

Injected link faults (``swarmlet chaos``, :mod:`nodeagent.transport.planes`) act on both halves:
frames are dropped, duplicated or delayed on the way out, frames from a partitioned node are
dropped on arrival, and a stream to a node behind a partitioned link is not opened
("Connection timed out", ETIMEDOUT) or opens late by the link's delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import Counter

from nodeagent.networkdb.core import Endpoint
from nodeagent.networkdb.shell import NetworkDBShell
from nodeagent.overlay import tunnel_tls
from nodeagent.overlay.attach import Attachment, attachments, endpoint_for
from nodeagent.overlay.dns import RoundRobin, backends, find_endpoint, resolve
from nodeagent.overlay.frames import VXLAN_PORT, Datagram, FrameError, decode_frame, encode_frame
from nodeagent.overlay.splice import Splice, join, serve_here, serves_here
from nodeagent.overlay.tunnel import Connection, OpenRequest, Stream
from nodeagent.tls import NODE_TARGET
from nodeagent.transport.planes import FaultGate

__all__ = ["Overlay", "OverlayMetrics", "TaskNetwork"]

log = logging.getLogger(__name__)

_TUNNEL_TIMEOUT = 5.0
"""Seconds to set up a tunnel connection (TCP and TLS) or to wait for a stream's answer."""


def _unreachable(addr: str) -> OSError:
    return OSError(errno.EHOSTUNREACH, "No route to host", addr)


class OverlayMetrics:
    """``swarmlet_overlay_frames_total`` and ``swarmlet_overlay_bytes_total`` by VNI and direction.

    A frame is one VXLAN datagram, or one chunk a tunnel carried (counted by the node that serves
    the tunnel: ``rx`` towards its task, ``tx`` back)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self.frames = Counter("swarmlet_overlay_frames", "Overlay frames sent and received.",
                              ["vni", "direction"], registry=registry)  # fmt: skip
        self.bytes = Counter("swarmlet_overlay_bytes", "Overlay bytes sent and received (frames, tunnels).",
                             ["vni", "direction"], registry=registry)  # fmt: skip
        self._series: dict[tuple[int, str], tuple[Any, Any]] = {}  # (vni, direction) -> the two children

    def count(self, vni: int, direction: str, size: int) -> None:
        """One frame of ``size`` bytes."""
        series = self._series.get((vni, direction))
        if series is None:
            series = self._series[(vni, direction)] = (self.frames.labels(vni=str(vni), direction=direction),
                                                       self.bytes.labels(vni=str(vni), direction=direction))
        series[0].inc()
        series[1].inc(size)

    def count_stream(self, vni: int, stream: Stream) -> None:
        """A tunnel's stream served here ended: its frames and bytes, counted once."""
        for direction, frames, size in (("rx", stream.rx_frames, stream.rx),
                                        ("tx", stream.tx_frames, stream.tx)):
            if frames:
                series = self._series.get((vni, direction))
                if series is None:
                    series = self._series[(vni, direction)] = (
                        self.frames.labels(vni=str(vni), direction=direction),
                        self.bytes.labels(vni=str(vni), direction=direction))
                series[0].inc(frames)
                series[1].inc(size)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, overlay: Overlay) -> None:
        self.overlay = overlay

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.overlay.faults.active and self.overlay.faults.blocked(str(addr[0])):
            return  # from a node behind a partitioned link: never arrived
        self.overlay._frame_received(data)


class TaskNetwork:
    """What one task's processes use to reach other tasks (its attachments only)."""

    def __init__(self, overlay: Overlay, task_id: str, attached: list[Attachment]) -> None:
        """Scoped to ``attached``, the task's own networks."""
        self.overlay = overlay
        self.task_id = task_id
        self.attached = attached
        self._bound: list[tuple[str, str, int]] = []

    @property
    def addresses(self) -> list[str]:
        """The task's overlay addresses, one per network."""
        return [a.addr for a in self.attached]

    def resolve(self, name: str) -> list[str]:
        """Addresses for ``name`` as the embedded DNS answers this task ([] when unknown)."""
        try:
            return [str(ipaddress.IPv4Address(name))]
        except ValueError:
            pass
        order = [a.network_id for a in self.attached if not a.ingress]
        answer = resolve(name, order, self.overlay.ndb.db.endpoints())
        return list(answer.addresses) if answer is not None else []

    def _lookup(self, host: str) -> tuple[Attachment, str]:
        """The network and address to reach ``host`` on: a name's answering network, or the
        attached subnet an address lies in (EHOSTUNREACH when none; ENOENT for an unknown name)."""
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            order = [a.network_id for a in self.attached if not a.ingress]
            answer = resolve(host, order, self.overlay.ndb.db.endpoints())
            if answer is None:
                raise OSError(errno.ENOENT, f"bad address '{host}'") from None
            network = next(a for a in self.attached if a.network_id == answer.network_id)
            return network, answer.addresses[0]
        for a in self.attached:
            if a.subnet is not None and ip in a.subnet:
                return a, host
        raise _unreachable(host)

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to ``host`` (name or overlay address) ``port``; OSError as a socket would."""
        attachment, addr = self._lookup(host)
        return await self.overlay.connect(attachment, addr, port)

    def send_datagram(self, host: str, port: int, payload: bytes, sport: int = 0) -> None:
        """One UDP datagram to ``host`` ``port`` over the overlay (best effort, as UDP)."""
        attachment, addr = self._lookup(host)
        self.overlay.send_datagram(attachment, Datagram(attachment.vni, attachment.addr, sport or 49152,
                                                        addr, port, payload))  # fmt: skip

    def bind_datagram(self, port: int) -> asyncio.Queue[Datagram]:
        """Receive datagrams sent to this task's addresses at ``port``."""
        queue: asyncio.Queue[Datagram] = asyncio.Queue()
        for a in self.attached:
            key = (a.network_id, a.addr, port)
            self.overlay._bindings[key] = queue
            self._bound.append(key)
        return queue

    def close(self) -> None:
        """Drop the task's datagram bindings."""
        for key in self._bound:
            self.overlay._bindings.pop(key, None)
        self._bound.clear()


class Overlay:
    """This node's data plane (see the module docstring)."""

    def __init__(self, *, node_id: str, host: str, ndb: NetworkDBShell,
                 registry: prometheus_client.CollectorRegistry | None = None, port: int = VXLAN_PORT,
                 faults: FaultGate | None = None) -> None:
        """``host``: this node's address, where UDP and TCP ``port`` (4789) are bound; the peer table
        says both, so nodes on one machine may use different ports. ``faults``: the node's
        injected link faults."""
        self.faults = faults if faults is not None else FaultGate(None, "overlay")
        self.node_id = node_id
        self.host = host
        self.port = port
        self.ndb = ndb
        self.metrics = OverlayMetrics(registry)
        self.balancer = RoundRobin()
        self._tasks: dict[str, TaskNetwork] = {}
        self._users: dict[str, int] = {}  # network ID -> tasks of this node on it
        self._by_vni: dict[int, Attachment] = {}
        self._bindings: dict[tuple[str, str, int], asyncio.Queue[Datagram]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[Any]] = set()  # tunnel connections being set up, dials of streams
        self._splices: set[Splice] = set()  # relays of streams in to dialled listeners
        self._tunnels: dict[tuple[str, int], Connection] = {}  # peer (host, port) -> our connection to it
        self._served: set[Connection] = set()  # tunnel connections other nodes made to us
        self._published: dict[str, list[Endpoint]] = {}  # task ID -> its endpoints, while published
        self._draining: dict[tuple[str, str], Endpoint] = {}  # (network, addr) of tasks being stopped
        self._held: dict[str, Attachment] = {}  # networks the node itself carries (the mesh's ingress)
        self.mesh: Any = None  # the routing mesh (mesh_shell.Mesh), told of tasks running and stopping
        self._endpoint_cache: dict[str, list[Endpoint]] = {}  # network -> its endpoints, parsed once
        self._last_peer: dict[str, str] = {}  # node -> its data path address, as last seen
        ndb.on_change(self._tables_changed)

    async def start(self) -> None:
        """Bind UDP and TCP ``port`` on the node's address."""
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self),
                                                           local_addr=(self.host, self.port))  # fmt: skip
        context = tunnel_tls.listener_context()
        self._server = await loop.create_server(self._tunnel_protocol, self.host, self.port, ssl=context,
                                                ssl_handshake_timeout=_TUNNEL_TIMEOUT if context else None)

    async def stop(self) -> None:
        """Close both sockets and every tunnel."""
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for splice in list(self._splices):
            splice.abort()
        for conn in [*self._tunnels.values(), *self._served]:
            conn.close()

    # Tasks --------------------------------------------------------------------------------------
    def _use(self, a: Attachment) -> None:
        if a.vni not in self._by_vni or not self._by_vni[a.vni].addr:
            self._by_vni[a.vni] = a
        self._users[a.network_id] = self._users.get(a.network_id, 0) + 1
        if self._users[a.network_id] == 1:
            self.ndb.join_network(a.network_id, f"{self.host}:{self.port}")

    def _unuse(self, a: Attachment) -> None:
        self._users[a.network_id] -= 1
        if self._users[a.network_id] <= 0:
            del self._users[a.network_id]
            self._by_vni.pop(a.vni, None)
            self.ndb.leave_network(a.network_id)

    def hold(self, attachment: Attachment) -> None:
        """The node itself carries ``attachment`` (the routing mesh's ingress, on every node, as
        Swarm's ingress sandbox), whether or not a task of it is on it."""
        if attachment.network_id in self._held:
            return
        self._held[attachment.network_id] = attachment
        self._use(attachment)

    def release(self, network_id: str) -> None:
        """The node no longer carries ``network_id`` for itself (its tasks may still)."""
        attachment = self._held.pop(network_id, None)
        if attachment is not None:
            self._unuse(attachment)

    def join(self, task: Mapping[str, Any]) -> TaskNetwork:
        """Attach a task being prepared to its overlays (the node joins those it did not carry)."""
        task_id = str(task.get("ID") or "")
        attached = attachments(task)
        for a in attached:
            self._use(a)
        network = TaskNetwork(self, task_id, attached)
        self._tasks[task_id] = network
        return network

    def publish(self, task: Mapping[str, Any], ports: Mapping[int, int]) -> None:
        """The task runs: publish its endpoint on each of its networks (and tell the mesh)."""
        task_id = str(task.get("ID") or "")
        network = self._tasks.get(task_id)
        if network is None:
            return
        listeners = tuple((target, self.host, real) for target, real in sorted(ports.items()))
        published = [endpoint_for(task, a, self.node_id, listeners) for a in network.attached]
        self._published[task_id] = published
        for endpoint in published:
            self.ndb.set_endpoint(endpoint)
        if self.mesh is not None:
            self.mesh.task_running(task, listeners)

    def withdraw(self, task_id: str) -> bool:
        """The task is being stopped: out of every load balancer first (its endpoints deleted, the
        mesh told); tunnels still reach it while it drains, until :meth:`detach`. True when it
        was published (then the caller waits for the news to spread before stopping it)."""
        published = self._published.pop(task_id, [])
        for endpoint in published:
            self._draining[(endpoint.network_id, endpoint.addr)] = endpoint
            self.ndb.delete_endpoint(endpoint.network_id, task_id)
        had_host_ports = self.mesh.task_stopped(task_id) if self.mesh is not None else False
        return bool(published) or bool(had_host_ports)

    def detach(self, task_id: str) -> None:
        """The task exited: withdraw it; leave the networks no task of this node uses any more."""
        self.withdraw(task_id)
        network = self._tasks.pop(task_id, None)
        if network is None:
            return
        network.close()
        for a in network.attached:
            self._draining.pop((a.network_id, a.addr), None)
            self.ndb.delete_endpoint(a.network_id, task_id)
            self._unuse(a)

    # Routing ------------------------------------------------------------------------------------
    def _tables_changed(self, networks: set[str]) -> None:
        for network in networks:
            self._endpoint_cache.pop(network, None)
            self._last_peer.update(self.ndb.db.peers(network))

    def endpoints(self, network_id: str) -> list[Endpoint]:
        """The live endpoints of a network, parsed once per change of its table."""
        cached = self._endpoint_cache.get(network_id)
        if cached is None:
            cached = self._endpoint_cache[network_id] = self.ndb.db.endpoints(network_id)
        return cached

    def _target(self, attachment: Attachment, addr: str) -> Endpoint:
        endpoints = self.endpoints(attachment.network_id)
        behind = backends(attachment.network_id, addr, endpoints)
        chosen = self.balancer.pick(attachment.network_id, addr, behind) if behind else None
        chosen = chosen or find_endpoint(attachment.network_id, addr, endpoints)
        if chosen is None:
            raise _unreachable(addr)
        return chosen

    def _peer(self, attachment: Attachment, endpoint: Endpoint) -> tuple[str, int]:
        """The data path address (host, port) of the node running ``endpoint``, from the peer table."""
        address = (self.ndb.db.peers(attachment.network_id).get(endpoint.node)
                   or self._last_peer.get(endpoint.node, ""))  # a node gossip took for dead a moment
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise _unreachable(endpoint.addr)
        return host, int(port)

    async def connect(self, attachment: Attachment, addr: str,
                      port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream from a task on ``attachment`` to ``addr`` (a task or a VIP) ``port``."""
        return await self.open_stream(attachment, self._target(attachment, addr), port)

    async def open_stream(self, attachment: Attachment, endpoint: Endpoint,
                          port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to the task of ``endpoint`` on ``attachment``'s network, container ``port``:
        its listener when it runs here, else a tunnel to its node (OSError as a socket would)."""
        if endpoint.node == self.node_id:
            listener = endpoint.listener_for(port)
            if listener is None:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            return await asyncio.open_connection(*listener)
        upstream = await self.open_splice(attachment, endpoint, port)
        reader = asyncio.StreamReader()
        stream = asyncio.StreamReaderProtocol(reader)
        transport = upstream.transport
        if transport is None:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        transport.set_protocol(stream)
        stream.connection_made(transport)
        for data in upstream.take_pending():
            stream.data_received(data)
        return reader, asyncio.StreamWriter(transport, stream, reader, asyncio.get_running_loop())

    def _request(self, attachment: Attachment, endpoint: Endpoint, port: int) -> OpenRequest:
        return OpenRequest(attachment.vni, endpoint.addr, port, attachment.addr or "0.0.0.0", 0)

    def open_now(self, attachment: Attachment, endpoint: Endpoint, port: int,
                 protocol: asyncio.BaseProtocol) -> Stream | None:
        """A stream to the task of ``endpoint`` (on another node), container ``port``, at once:
        when the link has no injected fault and the tunnel connection to its node is up (else
        None, and the connection is being made for next time). ``protocol`` rides on it (its
        ``connection_made`` is the caller's to call); its first bytes may follow at once, the
        answer comes later (``on_refused``). OSError when the node is unknown."""
        if self.faults.active:
            return None
        peer = self._peer(attachment, endpoint)
        conn = self._tunnels.get(peer)
        if conn is None or conn.lost or conn.transport is None:
            if conn is None:
                self._spawn(self._tunnel(peer))
            return None
        return conn.open(self._request(attachment, endpoint, port), protocol)

    async def open_splice(self, attachment: Attachment, endpoint: Endpoint, port: int) -> Splice:
        """A tunnel to the task of ``endpoint`` (on another node) on ``attachment``'s network,
        container ``port``, as a :class:`~nodeagent.overlay.splice.Splice` to join to another
        connection, once the far end accepted it; OSError as a socket would."""
        peer = self._peer(attachment, endpoint)
        try:
            await self.faults.call(f"{peer[0]}:{peer[1]}", 0.0)
        except ConnectionError:
            raise OSError(errno.ETIMEDOUT, "Connection timed out") from None
        conn = await self._tunnel(peer)
        splice = Splice()
        stream = conn.open(self._request(attachment, endpoint, port), splice)
        splice.connection_made(stream)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def said(reason: str) -> None:
            if not answer.done():
                answer.set_result(reason)

        stream.on_opened = lambda _s: said("")
        def refused(_stream: Stream, reason: str) -> bool:
            said(reason)
            return False

        stream.on_refused = refused
        stream.on_end = lambda _s: said("tunnel closed")
        try:
            reason = await asyncio.wait_for(answer, _TUNNEL_TIMEOUT)
        except BaseException:
            stream.abort()
            raise
        stream.on_end = None
        if reason:
            code = errno.ECONNREFUSED if "refused" in reason else errno.EHOSTUNREACH
            raise OSError(code, reason)
        return splice

    async def _tunnel(self, peer: tuple[str, int]) -> Connection:
        """This node's tunnel connection to ``peer``, made (TCP, then TLS) if there is none."""
        conn = self._tunnels.get(peer)
        if conn is None or conn.lost:
            conn = self._tunnels[peer] = Connection()

            def lost(gone: Connection) -> None:
                if self._tunnels.get(peer) is gone:
                    del self._tunnels[peer]

            conn.on_lost = lost
            context = tunnel_tls.client_context()
            try:
                await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                    lambda: conn, *peer, ssl=context, server_hostname=NODE_TARGET if context else None,
                    ssl_handshake_timeout=_TUNNEL_TIMEOUT if context else None), _TUNNEL_TIMEOUT)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                lost(conn)
                if not conn.ready.done():
                    conn.ready.set_exception(OSError(errno.EHOSTUNREACH, f"tunnel to {peer[0]}: {exc}"))
                    conn.ready.exception()  # retrieved: others may wait on it, or none
        await asyncio.shield(conn.ready)
        return conn

    def _spawn(self, job: Any) -> None:
        async def run() -> None:
            with contextlib.suppress(OSError):
                await job

        task = asyncio.get_running_loop().create_task(run())
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    def send_datagram(self, attachment: Attachment, datagram: Datagram) -> None:
        """Deliver one datagram: locally, or as a VXLAN frame to the node of its destination."""
        try:
            endpoint = self._target(attachment, datagram.dst)
        except OSError:
            return  # UDP: an unroutable datagram is dropped
        if endpoint.addr != datagram.dst:
            datagram = Datagram(datagram.vni, datagram.src, datagram.sport, endpoint.addr, datagram.dport,
                                datagram.payload)  # fmt: skip
        if endpoint.node == self.node_id:
            self._deliver(attachment.network_id, datagram)
            return
        frame = encode_frame(datagram)
        if self._udp is not None:
            udp, peer = self._udp, self._peer(attachment, endpoint)
            self.faults.datagram(f"{peer[0]}:{peer[1]}", lambda: udp.sendto(frame, peer))
            self.metrics.count(datagram.vni, "tx", len(frame))

    def _frame_received(self, data: bytes) -> None:
        try:
            datagram = decode_frame(data)
        except FrameError as exc:
            log.debug("overlay: dropped a frame: %s", exc)
            return
        attachment = self._by_vni.get(datagram.vni)
        if attachment is None:
            return  # a VNI this node does not carry
        self.metrics.count(datagram.vni, "rx", len(data))
        self._deliver(attachment.network_id, datagram)

    def _deliver(self, network_id: str, datagram: Datagram) -> None:
        queue = self._bindings.get((network_id, datagram.dst, datagram.dport))
        if queue is not None:
            queue.put_nowait(datagram)

    # Tunnels in ---------------------------------------------------------------------------------
    def _tunnel_protocol(self) -> asyncio.Protocol:
        """The protocol of a connection to TCP 4789 (after the TLS handshake, when on): a tunnel
        connection whose streams :meth:`_stream_opened` answers."""
        return Connection(self._stream_opened, on_ready=self._tunnel_ready)

    def _tunnel_ready(self, conn: Connection) -> bool:
        """A node connected to our port 4789: with TLS, its certificate must be a manager's or a
        worker's of this swarm (the handshake checked it against the roots)."""
        transport = conn.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            peer = tunnel_tls.peer_identity(ssl_object)
            if peer is None or peer.role not in ("manager", "worker"):
                log.warning("overlay: refused a tunnel connection: no node certificate of this swarm")
                return False
            conn.peer_node = peer.node_id
        self._served.add(conn)
        conn.on_lost = self._served.discard
        return True

    def _stream_opened(self, conn: Connection, sid: int, request: OpenRequest) -> None:
        """Another node opened a stream to one of our tasks: hand it over, dial it, or refuse."""
        vni = request.vni
        attachment = self._by_vni.get(vni)
        endpoint = None
        if attachment is not None:
            network_id = attachment.network_id
            endpoint = (find_endpoint(network_id, request.dst, self.endpoints(network_id))
                        or self._draining.get((network_id, request.dst)))  # fmt: skip
            if conn.peer_node and conn.peer_node not in self.ndb.db.peers(network_id) \
                    and conn.peer_node not in self._last_peer:
                endpoint = None  # a node that does not carry the network (removed from the swarm)
        if attachment is None or endpoint is None or endpoint.node != self.node_id:
            conn.answer(sid, "No route to host")
            return
        listener = endpoint.listener_for(request.dport)
        if listener is None:
            conn.answer(sid, "Connection refused")
            return
        stream = conn.accept(sid, request)
        stream.on_end = lambda s: self.metrics.count_stream(vni, s)
        if serves_here(listener) and serve_here(stream, listener):
            # The task's listener is in this process: it takes the stream itself.
            conn.answer(sid)
            return
        splice = Splice()
        stream.set_protocol(splice)
        splice.connection_made(stream)
        self._spawn(self._dial(conn, sid, splice, listener))

    async def _dial(self, conn: Connection, sid: int, splice: Splice, listener: tuple[str, int]) -> None:
        """Relay a stream in to a listener outside this process."""
        try:
            _, inner = await asyncio.get_running_loop().create_connection(Splice, *listener)
        except OSError:
            conn.answer(sid, "Connection refused")
            return
        self._splices.add(inner)
        inner.on_lost = self._splices.discard
        conn.answer(sid)
        join(splice, inner)
