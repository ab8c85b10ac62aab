"""The agent's Prometheus metrics: one registry per process, served on ``/metrics`` (port 9323).

The HTTP server is an aiohttp app on the agent's own asyncio loop (the same machinery as the
Engine API's) rather than prometheus_client's threaded one: a scrape then never runs beside the
loop that owns the protocol state, and SIGTERM closes it at once (the threaded server's shutdown
polls every half second).

Names follow ``swarmlet_<subsystem>_<name>_<unit>``. The gossip metrics are updated by the gossip
shell at the point of change; the cores never see them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from nodeagent.engineapi.runner import HttpServer

__all__ = ["FaultMetrics", "GossipMetrics", "MetricsServer", "new_registry", "node_info", "node_manager"]

log = logging.getLogger(__name__)


def new_registry() -> CollectorRegistry:
    """The process's registry (no default process/platform collectors: one name space, ours)."""
    return CollectorRegistry(auto_describe=True)


def node_info(registry: CollectorRegistry, *, node_id: str, hostname: str, role: str, version: str) -> Gauge:
    """Publish ``swarmlet_node_info`` (always 1) so every series can be joined to a hostname.

    Returned so that a promotion or demotion can replace the series (one per node at a time).
    """
    info = Gauge("swarmlet_node_info", "This node: its id, hostname, role and agent version.",
                 ["node_id", "hostname", "role", "version"], registry=registry)
    info.labels(node_id=node_id, hostname=hostname, role=role, version=version).set(1)
    return info


def node_manager(registry: CollectorRegistry, role: str) -> Gauge:
    """Publish Docker's ``swarm_node_manager`` (1 on a manager, 0 on a worker), as dockerd does.

    Returned so that a promotion or demotion can set it again.
    """
    gauge = Gauge("swarm_node_manager", "Whether this node is a manager or not", registry=registry)
    gauge.set(1 if role == "manager" else 0)
    return gauge


class GossipMetrics:
    """Gossip membership and transport metrics; also a transport observer."""

    STATES = ("alive", "suspect", "dead", "left")

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every gossip metric in ``registry``."""
        self.members = Gauge("swarmlet_gossip_members", "Members this node knows, by state.",
                             ["state"], registry=registry)
        for state in self.STATES:
            self.members.labels(state=state).set(0)
        self.probes = Counter("swarmlet_gossip_probes", "Probes (direct pings) this node sent.",
                              registry=registry)
        self.probes_failed = Counter(
            "swarmlet_gossip_probes_failed", "Probes that got no ack, directly or through a relay.",
            registry=registry)
        self.probe_rtt = Histogram(
            "swarmlet_gossip_probe_rtt_seconds", "Round-trip time of acknowledged probes.", registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.suspicions_raised = Counter("swarmlet_gossip_suspicions_raised",
                                         "Members this node started to suspect.", registry=registry)
        self.suspicions_refuted = Counter(
            "swarmlet_gossip_suspicions_refuted",
            "Suspicions of this node that it refuted by raising its incarnation.", registry=registry)
        self.messages = Counter("swarmlet_gossip_messages", "Gossip messages in and out.",
                                ["direction", "transport"], registry=registry)
        self.bytes = Counter("swarmlet_gossip_bytes", "Gossip bytes in and out, envelopes included.",
                             ["direction", "transport"], registry=registry)
        self.dropped_messages = Counter(
            "swarmlet_gossip_messages_dropped",
            "Messages dropped: oversized, malformed, invalid, unreachable, or by an injected fault.",
            ["reason"], registry=registry)
        for reason in ("oversized", "malformed", "invalid", "unreachable", "fault"):
            self.dropped_messages.labels(reason=reason)
        self.health = Gauge("swarmlet_gossip_health_score",
                            "Local health (Lifeguard): 0 is healthy, higher means this node is slow.",
                            registry=registry)

    # TransportObserver -----------------------------------------------------------------------
    def message_in(self, kind: str, size: int) -> None:
        """Count one incoming message of ``size`` bytes."""
        self.messages.labels(direction="in", transport=kind).inc()
        self.bytes.labels(direction="in", transport=kind).inc(size)

    def message_out(self, kind: str, size: int) -> None:
        """Count one outgoing message of ``size`` bytes."""
        self.messages.labels(direction="out", transport=kind).inc()
        self.bytes.labels(direction="out", transport=kind).inc(size)

    def dropped(self, reason: str) -> None:
        """Count one dropped message."""
        self.dropped_messages.labels(reason=reason).inc()


class FaultMetrics:
    """``swarmlet_faults_injected_total{kind,plane}``: every time an injected link fault acts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the metric in ``registry``."""
        self.injected = Counter("swarmlet_faults_injected",
                                "Injected link faults that acted, by kind and by plane.",
                                ["kind", "plane"], registry=registry)
        self.rules = Gauge("swarmlet_faults_rules", "Link fault rules in force on this node.",
                           registry=registry)

    def acted(self, kind: str, plane: str = "gossip") -> None:
        """Count one fault of ``kind`` (drop, delay, duplicate, partition) on ``plane`` (gossip,
        raft, dispatcher, control, networkdb, overlay)."""
        self.injected.labels(kind=kind, plane=plane).inc()


class MetricsServer:
    """``GET /metrics`` over HTTP/1.1 on the running loop (one request per connection, as a scrape)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        """Configure; :meth:`start` binds."""
        self.registry = registry
        self._http = HttpServer(self._app(), host, port)

    @property
    def port(self) -> int:
        """The port served (the bound one, once started with port 0)."""
        return self._http.port

    async def start(self) -> None:
        """Bind and serve; ``port`` 0 picks a free port (then :attr:`port` tells which)."""
        await self._http.start()

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        await self._http.stop()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_plain_errors])
        app.router.add_get("/metrics", self._metrics)  # HEAD too
        app.router.add_get("/", _ok)
        app.router.add_get("/health", _ok)
        return app

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


@web.middleware
async def _plain_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Short plain-text errors, and every connection closed after its one answer."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = web.Response(status=exc.status, text=f"{exc.reason.lower()}\n")
    response.force_close()
    return response
