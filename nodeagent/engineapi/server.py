"""The Docker Engine API every node serves (port 2375): the node's own routes and the cluster routes.

Every route answers with and without the ``/vX.Y`` prefix. Versions above :data:`API_VERSION`
or below :data:`MIN_API_VERSION` get Docker's 400. The node itself answers ``/_ping``,
``/version`` and ``/info``, and ``swarm init``, ``join``, ``leave`` and ``unlock`` through the
node's :class:`NodeSwarmRoutes` (nodeagent/engineapi/swarmnode.py). The cluster routes
(``/swarm``, ``/nodes``, ``/services``, ``/tasks``, ``/secrets``, ``/configs``) are Swarm's: on a
worker or a node in no swarm they are Swarm's 503; a manager attaches a :class:`ClusterApi`
(through the role entry point, see nodeagent/roles.py) whose handlers answer them. A cluster
route a manager does not serve yet is a 501 that says so.

Errors go through one type and one middleware (nodeagent/engineapi/errors.py).
"""

from __future__ import annotations

import datetime
import logging
import re
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import web

from nodeagent.engineapi.errors import (
    NOT_IN_SWARM,
    NOT_MANAGER_WORKER,
    ApiError,
    Handler,
    error_middleware,
    json_response,
)
from nodeagent.engineapi.images import BuiltinImages, ImageCatalog, ImageRoutes
from nodeagent.engineapi.localnets import node_network_route
from nodeagent.engineapi.runner import HttpServer
from nodeagent.engineapi.swarmnode import ALREADY_IN_SWARM, NOT_PART_OF_SWARM, NodeSwarmRoutes
from nodeagent.engineapi.system import (
    API_VERSION,
    MIN_API_VERSION,
    NodeFacts,
    SwarmInfo,
    info_body,
    version_body,
)
from nodeagent.engineapi.volumes import VolumeCatalog, VolumeRoutes

__all__ = [
    "ALREADY_IN_SWARM",
    "CLUSTER_ROUTES",
    "ClusterApi",
    "EngineApiServer",
    "Route",
    "check_api_version",
]

_MAX_BODY_BYTES = 16 << 20  # bodies up to 16 MiB: a config at Swarm's limit fits

log = logging.getLogger(__name__)

Route = tuple[str, str, Handler]
"""(method, path without the version prefix, handler)."""

CLUSTER_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/swarm"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{id}"),
    ("POST", "/nodes/{id}/update"),
    ("DELETE", "/nodes/{id}"),
    ("GET", "/services"),
    ("POST", "/services/create"),
    ("GET", "/services/{id}"),
    ("POST", "/services/{id}/update"),
    ("DELETE", "/services/{id}"),
    ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("DELETE", "/secrets/{id}"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("GET", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
    ("DELETE", "/configs/{id}"),
    ("GET", "/networks"),
    ("POST", "/networks/create"),
    ("GET", "/networks/{id}"),
    ("DELETE", "/networks/{id}"),
)
"""Swarm's routes: answered by managers only (Docker answers them 503 elsewhere)."""

_VERSION_PREFIX = "/v{version:[0-9][0-9.]*}"
_HOT_READS = ("/nodes", "/tasks", "/services")
"""The lists ``docker node ls``, ``service ps`` and ``service ls`` ask (and poll): routed first."""
_VERSION = re.compile(r"^(\d+)\.(\d+)$")


class ClusterApi(Protocol):
    """What a manager adds to its node's Engine API."""

    def routes(self) -> Iterable[Route]:
        """The cluster routes it answers, each one of :data:`CLUSTER_ROUTES`."""
        ...

    def swarm_info(self, base: SwarmInfo) -> SwarmInfo:
        """/info's Swarm section as this manager sees it (``base`` is the node's own view)."""
        ...

    def manager_stats(self) -> tuple[bool, int, int] | None:
        """(this manager reachable, reachable managers, unreachable managers), as ``swarm leave``
        weighs them; None when not known."""
        ...


def _parse_version(text: str) -> tuple[int, int] | None:
    m = _VERSION.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


_accepted_versions: set[str] = set()
"""Version prefixes already checked and accepted: a client sends the same one on every request."""


def check_api_version(text: str) -> None:
    """Refuse a client API version outside [MIN_API_VERSION, API_VERSION] in Docker's words."""
    if text in _accepted_versions:
        return
    asked = _parse_version(text)
    if asked is None:
        raise ApiError.bad_request(f"invalid API version: {text}")
    newest = _parse_version(API_VERSION)
    oldest = _parse_version(MIN_API_VERSION)
    assert newest is not None and oldest is not None
    if asked > newest:
        raise ApiError.bad_request(
            f"client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )
    if asked < oldest:
        raise ApiError.bad_request(
            f"client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version"
        )
    if len(_accepted_versions) < 64:  # a bounded set: "1.41", "1.47", "1.047"... whatever is asked
        _accepted_versions.add(text)


@web.middleware
async def _version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version is not None:
        check_api_version(version)
    return await handler(request)


class EngineApiServer:
    """One node's Engine API: build the app, attach a manager's cluster routes, serve on a port."""

    def __init__(self, facts: NodeFacts, swarm_info: Callable[[], SwarmInfo], host: str, port: int,
                 images: ImageCatalog | None = None,
                 volumes: Callable[[], VolumeCatalog | None] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """``swarm_info()`` gives the node's own view of its swarm membership, asked per request;
        ``images`` the emulated runtime's images (a built-in list when None); ``volumes()`` the
        node's volume store (None: the volume routes answer 503); ``ssl_context`` serves HTTPS
        only (``--tlsverify``)."""
        self.facts = facts
        self.images = ImageRoutes(images or BuiltinImages(), facts.go_arch)
        self.volumes = VolumeRoutes(volumes or (lambda: None))
        self._node_swarm_info = swarm_info
        self._cluster: ClusterApi | None = None
        self._swarm: NodeSwarmRoutes | None = None
        self._handlers: dict[tuple[str, str], Handler] = {}
        # When the node's local networks were "created": this server's start, in Docker's format.
        self._started = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace(
            "+00:00", "Z")
        self._static_headers = {
            "Api-Version": API_VERSION,
            "Docker-Experimental": "false",
            "Ostype": "linux",
            "Server": f"Docker/{facts.engine_version} (linux)",
        }
        """Docker's headers on every answer."""
        self.app = self._build_app()
        self._http = HttpServer(self.app, host, port, ssl_context)

    @property
    def port(self) -> int:
        """The port served (the bound one, once started with port 0)."""
        return self._http.port

    # ------------------------------------------------------------------ the manager's part

    def attach(self, cluster: ClusterApi) -> None:
        """Answer the cluster routes with ``cluster``'s handlers (a manager does this at start)."""
        handlers: dict[tuple[str, str], Handler] = {}
        known = set(CLUSTER_ROUTES)
        for method, path, handler in cluster.routes():
            if (method, path) not in known:
                raise ValueError(f"{method} {path} is not a cluster route (see CLUSTER_ROUTES)")
            handlers[(method, path)] = handler
        self._cluster, self._handlers = cluster, handlers

    def serve_swarm(self, routes: NodeSwarmRoutes) -> None:
        """Answer ``swarm init``, ``join``, ``leave`` and ``unlock`` with ``routes`` (the node agent
        does this at start; without it they are refused as before)."""
        self._swarm = routes

    async def unlock(self, unlock_key: str) -> None:
        """``docker swarm unlock``: hand the key to the attached manager if it is locked.

        Raises ApiError: 409 "swarm is not locked" when nothing here waits for a key; the
        manager's own refusals (400 a malformed key, 401 a wrong one) otherwise.
        """
        unlock = getattr(self._cluster, "unlock", None)
        if unlock is None:
            raise ApiError.conflict("swarm is not locked")
        await unlock(unlock_key)

    def manager_stats(self) -> tuple[bool, int, int] | None:
        """The attached manager's view of the managers' reachability (None without one)."""
        if self._cluster is None:
            return None
        stats = getattr(self._cluster, "manager_stats", None)
        return stats() if stats is not None else None

    def detach(self) -> None:
        """Stop answering the cluster routes (the manager role stopped)."""
        self._cluster, self._handlers = None, {}

    def swarm_info(self) -> SwarmInfo:
        """/info's Swarm section now: the manager's view when one is attached, else the node's."""
        base = self._node_swarm_info()
        return base if self._cluster is None else self._cluster.swarm_info(base)

    # ------------------------------------------------------------------ serving

    async def start(self) -> None:
        """Bind and serve (OSError if the port is taken)."""
        await self._http.start()

    async def stop(self) -> None:
        """Stop serving."""
        await self._http.stop()

    def _build_app(self) -> web.Application:
        # aiohttp refuses bodies over 1 MiB; Docker takes a config of 1000 KiB, which is 1.3 MiB
        # as the base64 in its JSON body.
        app = web.Application(middlewares=[error_middleware, _version_middleware],
                              client_max_size=_MAX_BODY_BYTES)
        app.on_response_prepare.append(self._headers)
        node_routes: list[tuple[str, str, Handler]] = [
            ("GET", "/_ping", self._ping),
            ("HEAD", "/_ping", self._ping),
            ("GET", "/version", self._version),
            ("GET", "/info", self._info),
            ("POST", "/swarm/init", self._swarm_init),
            ("POST", "/swarm/join", self._swarm_join),
            ("POST", "/swarm/leave", self._swarm_leave),
            ("POST", "/swarm/unlock", self._swarm_unlock),
            ("GET", "/distribution/{name:.+}/json", self.images.distribution),
            ("GET", "/images/json", self.images.list),
            ("GET", "/images/{name:.+}/json", self.images.inspect),
            ("GET", "/volumes", self.volumes.list),
            ("POST", "/volumes/create", self.volumes.create),
            ("GET", "/volumes/{name}", self.volumes.inspect),
            ("DELETE", "/volumes/{name}", self.volumes.remove),
        ]
        cluster_routes = [(m, p, self._cluster_route(m, p)) for m, p in CLUSTER_ROUTES]
        # aiohttp tries every versioned path (``/v{version}/...``, a pattern from its first
        # segment) in turn, in the order added: one resource per path, and the cluster routes
        # (what the CLI asks with a version: /nodes, /tasks, /services) first, the lists it polls
        # (_HOT_READS) first of all. The order of paths that overlap (/images/json,
        # /images/{name}/json) is kept.
        by_path: dict[str, list[tuple[str, Handler]]] = {path: [] for path in _HOT_READS}
        for method, path, handler in [*cluster_routes, *node_routes]:
            by_path.setdefault(path, []).append((method, handler))
        for prefix in ("", _VERSION_PREFIX):
            for path, methods in by_path.items():
                resource = app.router.add_resource(prefix + path)
                for method, handler in methods:
                    resource.add_route(method, handler)
        return app

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self._static_headers)

    def _cluster_route(self, method: str, path: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            handler = self._handlers.get((method, path))
            if handler is not None:
                return await handler(request)
            if self._cluster is None:
                state = self._node_swarm_info().local_node_state
                if path.startswith("/networks"):  # every engine has networks of its own
                    return await node_network_route(method, path, request, self.facts.node_id,
                                                    self._started, NOT_IN_SWARM, state == "active")
                raise ApiError.unavailable(NOT_MANAGER_WORKER if state == "active" else NOT_IN_SWARM)
            raise ApiError.not_implemented(f"swarmlet does not serve {method} {path} yet")

        return handle

    # ------------------------------------------------------------------ the node's own routes

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        headers = {
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache",
            "Swarm": self.swarm_info().ping_header(),
        }
        if request.method == "HEAD":
            headers["Content-Length"] = "0"
            return web.Response(content_type="text/plain", charset="utf-8", headers=headers)
        return web.Response(text="OK", content_type="text/plain", charset="utf-8", headers=headers)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return json_response(version_body(self.facts))

    async def _info(self, request: web.Request) -> web.StreamResponse:
        return json_response(info_body(self.facts, self.swarm_info()))

    async def _swarm_init(self, request: web.Request) -> web.StreamResponse:
        if self._swarm is not None:
            return await self._swarm.init(request)
        return await self._swarm_not_served(request)

    async def _swarm_join(self, request: web.Request) -> web.StreamResponse:
        if self._swarm is not None:
            return await self._swarm.join(request)
        return await self._swarm_not_served(request)

    async def _swarm_unlock(self, request: web.Request) -> web.StreamResponse:
        if self._swarm is not None:
            return await self._swarm.unlock(request)
        raise ApiError.not_implemented("swarmlet does not serve POST /swarm/unlock here")

    async def _swarm_not_served(self, request: web.Request) -> web.StreamResponse:
        if self.swarm_info().local_node_state != "inactive":
            raise ApiError.unavailable(ALREADY_IN_SWARM)
        raise ApiError.not_implemented(
            "this node joins its swarm when it starts (--bootstrap, --join): "
            f"{request.path.rsplit('/', 1)[-1]} over the Engine API needs a node started with --no-swarm")

    async def _swarm_leave(self, request: web.Request) -> web.StreamResponse:
        if self._swarm is not None:
            return await self._swarm.leave(request)
        if self.swarm_info().local_node_state == "inactive":
            raise ApiError.unavailable(NOT_PART_OF_SWARM)
        raise ApiError.not_implemented(
            "swarmlet does not support swarm leave over the Engine API here: stop the node instead")
