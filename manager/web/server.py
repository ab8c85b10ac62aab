"""The web view: a live page of the swarm served by every manager on its web port (8081).

One aiohttp app on the node's own event loop (the :class:`~nodeagent.engineapi.runner.HttpServer`
machinery of /metrics and the Engine API), so a handler reads the store and the Raft shell
without locks. Routes:

* ``GET /``, ``GET /static/{app.js,style.css}``: the page, from package data (no CDN, no framework);
* ``GET /api/state``: the picture as JSON (:func:`manager.web.model.cluster_state`);
* ``GET /api/events``: server-sent events: ``state`` (the picture, whenever it changed, at most
  every 0.2 s) and ``timeline`` (one per event, with an ``id`` so a reconnect resumes);
* ``GET /api/timeline``: the events kept (the last 500);
* ``POST /api/faults``: cut a link (every plane), isolate a node, heal (through each node's AgentAdmin).

The timeline is this manager's: store changes (every manager applies the same ones), and the
Raft leader and term and the gossip membership as this manager sees them. The other nodes'
membership views are fetched from their AgentAdmin service once a second while a page is open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.resources
import json
import logging
import time
from typing import Any

from aiohttp import web

from manager.web.model import ChangeDescriber, Facts, TimelineEvent, cluster_state, fault_changes
from manager.web.peers import PeerAdmin
from nodeagent.engineapi.runner import HttpServer
from nodeagent.transport.faults import LinkFaultRule

__all__ = ["WebView"]

log = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
_TIMELINE_KEPT = 500
_STATE_EVERY_S = 0.2  # at most this often a client gets a new picture
_KEEPALIVE_S = 10.0
_RAFT_POLL_S = 0.1
_VIEWS_EVERY_S = 1.0
_WATCHED_FOR_S = 10.0  # views are fetched while a page is open or the API was read this recently
_GOSSIP_LEVELS = {"alive": "info", "suspect": "warn", "dead": "bad", "left": "warn"}


def _static(name: str) -> bytes:
    return (importlib.resources.files("manager.web") / "static" / name).read_bytes()


class WebView:
    """The manager's web view; ``start()`` binds the web port, ``stop()`` closes it."""

    def __init__(self, runtime: Any, host: str, port: int) -> None:
        """``runtime`` is the :class:`manager.runtime.ManagerRuntime` (store, Raft shell, context)."""
        self.runtime = runtime
        self.context = runtime.context
        self.http = HttpServer(self._app(), host, port)
        self.admin = PeerAdmin(timeout=0.8)
        self.timeline: collections.deque[dict[str, Any]] = collections.deque(maxlen=_TIMELINE_KEPT)
        self._seq = 0
        self._version = 0
        self._changed = asyncio.Event()
        self._describer = ChangeDescriber()
        self._watch: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._gossip_seen: dict[str, str] = {}
        self._clients = 0
        self._read_at = float("-inf")
        self._running = False

    @property
    def port(self) -> int:
        """The port served (the bound one, after start with port 0)."""
        return self.http.port

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the web port (OSError if taken), then follow the store, Raft and gossip."""
        await self.http.start()
        self._running = True
        store = self.runtime.store
        self._describer.prime(o for kind in ("node", "service", "task") for o in store.find(kind))
        self._watch = store.watch(["node", "task", "service", "cluster"], on_change=self._store_changed)
        gossip = self.context.gossip
        for m in gossip.members():
            self._gossip_seen[m.name] = m.state.value
        gossip.subscribe(self._gossip_event)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow_raft(), name="web-raft"),
                       loop.create_task(self._fetch_views(), name="web-views")]
        self._add(TimelineEvent("node", f"web view of {self.context.hostname} started", self.context.node_id))

    async def stop(self) -> None:
        """Stop serving (open event streams end at once) and forget the subscriptions."""
        self._running = False
        self._bump()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        await self.http.stop()
        await self.admin.close()

    # ------------------------------------------------------------------ what happens

    def _add(self, event: TimelineEvent) -> None:
        self._seq += 1
        self.timeline.append({"seq": self._seq, "at": time.time(), "kind": event.kind, "text": event.text,
                              "node": event.node, "level": event.level})
        self._bump()

    def _bump(self) -> None:
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _store_changed(self) -> None:
        if self._watch is None:
            return
        for change in self._watch.poll():
            for event in self._describer.describe(change):
                self._add(event)
        self._bump()

    def _gossip_event(self, event: Any) -> None:
        # The gossip shell cannot unsubscribe: a stopped view (demoted manager) ignores events.
        if not self._running:
            return
        state = str(event.state.value)
        if self._gossip_seen.get(event.name) == state:
            return
        self._gossip_seen[event.name] = state
        if event.name == self.context.node_id:
            return
        hostname = dict(event.meta.labels).get("hostname") or event.name[:12]
        self._add(TimelineEvent("gossip", f"{self.context.hostname} sees {hostname} {state} (gossip)",
                                event.name, _GOSSIP_LEVELS.get(state, "info")))

    async def _follow_raft(self) -> None:
        last: tuple[str, int] | None = None
        while True:
            shell = self.runtime.shell
            if shell is not None:
                with contextlib.suppress(AssertionError):
                    now = (shell.leader_id, int(shell.node.term))
                    if last is not None and now != last:
                        self._raft_event(last, now)
                    last = now
            await asyncio.sleep(_RAFT_POLL_S)

    def _raft_event(self, before: tuple[str, int], now: tuple[str, int]) -> None:
        leader, term = now
        if leader and leader != before[0]:
            self._add(TimelineEvent("raft", f"{self._hostname(leader)} is the leader (term {term})", leader))
        elif not leader and before[0]:
            text = f"{self.context.hostname} lost the leader: election in term {term}"
            self._add(TimelineEvent("raft", text, "", "warn"))
        elif term != before[1]:
            self._add(TimelineEvent("raft", f"term {term} began (an election)", "", "warn"))

    def _hostname(self, node_id: str) -> str:
        for m in self.context.gossip.members():
            if m.name == node_id:
                return dict(m.meta.labels).get("hostname") or node_id[:12]
        return node_id[:12]

    async def _fetch_views(self) -> None:
        """Each node's own membership view, once a second while someone looks."""
        while True:
            if self._clients > 0 or time.monotonic() - self._read_at < _WATCHED_FOR_S:
                members = [m for m in self.context.gossip.members()]
                views = await asyncio.gather(*(self.admin.view(m.address) for m in members))
                fresh = {m.name: v for m, v in zip(members, views, strict=True)}
                if fresh != self._views:
                    for event in fault_changes(self._views, fresh, _names(members)):
                        self._add(event)
                    self._views = fresh
                    self._bump()
            elif self._views:
                self._views = {}  # nobody looks: never show a stale view when someone does again
            await asyncio.sleep(_VIEWS_EVERY_S)

    # ------------------------------------------------------------------ the picture

    def facts(self) -> Facts:
        """What this manager observes now, outside the store."""
        shell = self.runtime.shell
        leader, term, role = "", 0, "stopped"
        if shell is not None:
            with contextlib.suppress(AssertionError):
                leader, term, role = shell.leader_id, int(shell.node.term), shell.role()
        me = self.context.node_id
        gossip = {m.name: m.state.value for m in self.context.gossip.members() if m.name != me}
        return Facts(self_id=self.context.node_id, self_hostname=self.context.hostname, raft_role=role,
                     leader_id=leader, term=term, time_scale=self.runtime.time_scale, gossip=gossip,
                     views=self._views)

    def state(self) -> dict[str, Any]:
        """The picture the page draws now."""
        store = self.runtime.store
        services = {s.id: s for s in store.find("service")}
        return cluster_state(store.find("node"), store.find("task"), services, self.facts())

    # ------------------------------------------------------------------ HTTP

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_json_errors])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/timeline", self._timeline)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/faults", self._faults)
        return app

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=_STATIC[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _state(self, request: web.Request) -> web.StreamResponse:
        self._read_at = time.monotonic()
        return web.json_response(self.state())

    async def _timeline(self, request: web.Request) -> web.StreamResponse:
        self._read_at = time.monotonic()
        return web.json_response(list(self.timeline))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            since = int(request.headers.get("Last-Event-ID") or request.query.get("since") or 0)
        except ValueError:
            raise _BadRequest("Last-Event-ID must be a number") from None
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        self._clients += 1
        sent_version = -1
        try:
            await response.write(b"retry: 1000\n\n")
            while self._running:
                changed = self._changed
                if sent_version != self._version:
                    sent_version = self._version
                    await response.write(_sse("state", self.state()))
                for event in list(self.timeline):
                    if event["seq"] > since:
                        await response.write(_sse("timeline", event, event_id=event["seq"]))
                        since = event["seq"]
                try:
                    await asyncio.wait_for(changed.wait(), _KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                if not self._running:
                    break  # stop() woke us: end the stream now, within the agent's stop budget
                await asyncio.sleep(_STATE_EVERY_S)  # let a burst of changes make one picture
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients -= 1
        return response

    async def _faults(self, request: web.Request) -> web.StreamResponse:
        # Only a JSON request: a page of another origin cannot send one without a CORS preflight,
        # which this server never grants, so a visited web site cannot cut links behind your back.
        if request.content_type != "application/json":
            return web.json_response({"message": "Content-Type must be application/json"}, status=415)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest("the body must be JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a JSON object")
        action = body.get("action")
        members = {m.name: m for m in self.context.gossip.members()}

        def member(key: str) -> Any:
            node_id = body.get(key)
            if not isinstance(node_id, str) or node_id not in members:
                raise _BadRequest(f"{key}: no node {node_id!r} in this manager's gossip membership")
            return members[node_id]

        try:
            if action == "cut":
                a, b = member("node"), member("peer")
                if a.name == b.name:
                    raise _BadRequest("a node has no link to itself")
                rules = await self.admin.get_faults(a.address)
                rules.append(LinkFaultRule(peers=(b.name,), partition=True))
                await self.admin.set_faults(a.address, rules)
                text = f"link {self._hostname(a.name)} - {self._hostname(b.name)} cut (every plane)"
                self._add(TimelineEvent("fault", text, a.name, "warn"))
            elif action == "isolate":
                a = member("node")
                await self.admin.set_faults(a.address, [LinkFaultRule(partition=True)])
                text = f"{self._hostname(a.name)} isolated (every plane)"
                self._add(TimelineEvent("fault", text, a.name, "warn"))
            elif action == "heal":
                targets = [member("node")] if body.get("node") else list(members.values())
                results = await asyncio.gather(*(self.admin.set_faults(m.address, []) for m in targets),
                                               return_exceptions=True)
                failed = [self._hostname(m.name) for m, r in zip(targets, results, strict=True)
                          if isinstance(r, BaseException)]
                text = "links healed" + (f" (not reached: {', '.join(failed)})" if failed else "")
                self._add(TimelineEvent("fault", text, "", "info"))
            else:
                raise _BadRequest("action must be cut, isolate or heal")
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        except ConnectionError as exc:
            return web.json_response({"message": str(exc)}, status=502)
        self._views = {}  # fetched again at once: the page shows the cut without waiting
        self._read_at = time.monotonic()
        return web.json_response({"ok": True})


def _names(members: list[Any]) -> dict[str, str]:
    """Hostnames by node id and by gossip address (with and without the port)."""
    names: dict[str, str] = {}
    for m in members:
        hostname = dict(m.meta.labels).get("hostname") or m.name[:12]
        names[m.name] = names[m.address] = names[str(m.address).rpartition(":")[0]] = hostname
    return names


class _BadRequest(Exception):
    """A request the view refuses (400, with a message); nothing was changed."""


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors as ``{"message": ...}`` with their status, as the Engine API answers them."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _BadRequest as exc:
        return web.json_response({"message": str(exc)}, status=400)
    except web.HTTPException as exc:
        return web.json_response({"message": exc.reason.lower()}, status=exc.status)
