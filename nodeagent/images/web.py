"""Web servers: nginx, httpd, traefik/whoami, and every image nothing else claims.

Each task gets a listener of its own on the node's address at an ephemeral port (the container's
port 80 maps to it; the task's status records both), so several replicas on one node never
collide. A request for a file mounted under the server's document root (a config at
/usr/share/nginx/html/index.html, say) gets that file; any other path under "/" gets a page that
names the image and tag, the task, its slot and the node, which is what a learner wants to see
when the routing mesh spreads requests over replicas. whoami answers as traefik/whoami does (the
request echoed back), with the same facts added.

The visit counter, the classic two-service demo: given ``REDIS_HOST`` (``REDIS_PORT``, 6379 by
default), or when a service named ``redis`` resolves on the task's networks (a stack's service
name), each default page is counted with ``INCR counter`` in that Redis, across the overlay, and
the page shows ``Visits: N``; when Redis cannot be reached, it says the counter is disabled.

On SIGTERM the server stops accepting and finishes the requests it has open, then exits 0 (the
task has already left the load balancers); the kill at the end of the grace period cuts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import posixpath
from dataclasses import dataclass

from nodeagent.images.base import ImageInfo, ListeningProcess, Process, TaskEnv, image_info

__all__ = ["HTTPD", "NGINX", "WHOAMI", "WebImage", "WebServer", "count_visit", "page_for", "redis_target"]

CONTAINER_PORT = 80
REDIS_PORT = 6379

_TYPES = {".html": "text/html", ".htm": "text/html", ".txt": "text/plain", ".css": "text/css",
          ".js": "application/javascript", ".json": "application/json"}  # fmt: skip


_DEFAULT_PAGE = b"(the default page)"
"""A marker: _answer's body for the default page, made (with the visit counter) by the caller."""
_NOT_FOUND = b"<html><head><title>404 Not Found</title></head><body>404 Not Found</body></html>\n"


def page_for(env: TaskEnv, server: str, visits: str | None = None) -> str:
    """The default page: which image, task, slot and node answered (and the visit counter's line)."""
    title = {"nginx": "Welcome to nginx!", "httpd": "It works!"}.get(server, f"{env.repository} on swarmlet")
    facts = (
        f"image {env.repository}:{env.tag}, task {env.task_name}, slot {env.slot}, node {env.node_hostname}"
    )
    counter = f"<p>{html.escape(visits)}</p>\n" if visits is not None else ""
    return (
        "<!DOCTYPE html>\n<html>\n<head><title>" + html.escape(title) + "</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(facts)}</p>\n{counter}</body>\n</html>\n"
    )


def redis_target(env: TaskEnv) -> tuple[str, int] | None:
    """Where the visit counter lives: REDIS_HOST (and REDIS_PORT), else a ``redis`` service the
    task's networks resolve; None: no counter."""
    host = env.env.get("REDIS_HOST", "").strip()
    if not host and env.network is not None and env.network.resolve("redis"):
        host = "redis"
    if not host:
        return None
    port = env.env.get("REDIS_PORT", "").strip()
    return host, int(port) if port.isdigit() else REDIS_PORT


async def count_visit(env: TaskEnv, host: str, port: int, timeout: float = 2.0) -> int:
    """``INCR counter`` in the Redis at ``host``:``port`` (over the task's overlays); the new count.
    Raises OSError (or TimeoutError) when Redis cannot be reached or answers an error."""

    async def incr() -> int:
        if env.network is not None:
            reader, writer = await env.network.connect(host, port)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line.startswith(b":"):
            raise OSError(f"redis answered {line.decode(errors='replace').strip()!r}")
        return int(line[1:].strip())

    return await asyncio.wait_for(incr(), timeout)


class WebServer(ListeningProcess):
    """An HTTP/1.1 server on an ephemeral port of the node's address (container port 80)."""

    def __init__(self, env: TaskEnv, flavour: str, docroots: tuple[str, ...]) -> None:
        """``flavour`` picks the page and the Server header; ``docroots`` where mounted files are served."""
        super().__init__(env)
        self.flavour = flavour
        self.docroots = docroots
        self._open = 0  # requests being served
        self._idle = asyncio.Event()
        self._idle.set()
        self.container_port = CONTAINER_PORT
        if flavour == "whoami":
            for i, arg in enumerate(env.args):
                if arg in ("--port", "-port") and i + 1 < len(env.args) and env.args[i + 1].isdigit():
                    self.container_port = int(env.args[i + 1])

    async def start(self) -> None:
        """Bind the listener and log what nginx logs when it starts."""
        await self.listen(self.container_port, self._serve)
        if self.flavour == "nginx":
            self.env.stderr("nginx: [notice] start worker processes")
        elif self.flavour == "whoami":
            self.env.stdout(f"Starting up on port {self.container_port}")
        else:
            self.env.stdout(f"listening on port {self.container_port}")

    async def run(self) -> int:
        """Serve until SIGTERM; then stop accepting, finish the open requests and exit 0."""
        await self.terminated.wait()
        if self.server is not None:
            self.server.close()
        while self._open:
            await self._idle.wait()
        return 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        self._idle.clear()
        try:
            await self._serve_one(reader, writer)
        finally:
            self._open -= 1
            if not self._open:
                self._idle.set()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        method, target = (parts[0], parts[1]) if len(parts) >= 3 else ("GET", "/")
        headers = [line for line in lines[1:] if line]
        status, ctype, body = self._answer(method, target, headers, writer)
        if body is _DEFAULT_PAGE:
            body = page_for(self.env, self.flavour, await self._visits()).encode()
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "-"
        self.env.stdout(f'{client} - - "{lines[0]}" {status} {len(body)}')
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "OK")
        server = {"nginx": "nginx", "httpd": "Apache"}.get(self.flavour, "swarmlet")
        out = (
            f"HTTP/1.1 {status} {reason}\r\nServer: {server}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + (b"" if method == "HEAD" else body)
        with contextlib.suppress(ConnectionError):
            writer.write(out)
            await writer.drain()
        writer.close()

    def _answer(self, method: str, target: str, headers: list[str],
                writer: asyncio.StreamWriter) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        path = posixpath.normpath("/" + target.split("?", 1)[0]).lstrip("/")
        for root in self.docroots:
            for candidate in (posixpath.join(root, path), posixpath.join(root, path, "index.html")):
                content = self.env.read_file(candidate)
                if content is not None:
                    ext = posixpath.splitext(candidate)[1]
                    return 200, _TYPES.get(ext, "application/octet-stream"), content
        if self.flavour == "whoami":
            return 200, "text/plain; charset=utf-8", self._whoami(method, target, headers, writer).encode()
        if path in ("", ".", "index.html"):
            return 200, "text/html", _DEFAULT_PAGE
        return 404, "text/html", _NOT_FOUND

    async def _visits(self) -> str | None:
        """The visit counter's line for the default page, or None when there is no Redis to ask."""
        target = redis_target(self.env)
        if target is None:
            return None
        try:
            return f"Visits: {await count_visit(self.env, *target)}"
        except (OSError, TimeoutError, ValueError):
            return "Visits: cannot connect to Redis, counter disabled"

    def _whoami(self, method: str, target: str, headers: list[str], writer: asyncio.StreamWriter) -> str:
        sock = writer.get_extra_info("sockname")
        peer = writer.get_extra_info("peername")
        lines = [
            f"Hostname: {self.env.hostname}",
            f"IP: {sock[0] if isinstance(sock, tuple) else ''}",
            f"RemoteAddr: {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "RemoteAddr: ",
            f"{method} {target} HTTP/1.1",
            *headers,
            f"Image: {self.env.repository}:{self.env.tag}",
            f"Task: {self.env.task_name}",
            f"Slot: {self.env.slot}",
            f"Node: {self.env.node_hostname}",
        ]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class WebImage:
    """A web server image: nginx, httpd, whoami, or the default for unknown images ("*")."""

    names: tuple[str, ...]
    flavour: str
    docroots: tuple[str, ...]
    size: int

    def describe(self, repository: str, tag: str) -> ImageInfo:
        """The image as ``docker image ls`` lists it."""
        return image_info(repository, tag, self.size)

    def process(self, env: TaskEnv) -> Process:
        """A server for one task."""
        return WebServer(env, self.flavour, self.docroots)


NGINX = WebImage(("nginx",), "nginx", ("/usr/share/nginx/html",), 187_000_000)
HTTPD = WebImage(("httpd",), "httpd", ("/usr/local/apache2/htdocs",), 148_000_000)
WHOAMI = WebImage(("traefik/whoami", "containous/whoami"), "whoami", (), 6_700_000)
DEFAULT = WebImage(("*",), "web", ("/usr/share/nginx/html", "/var/www/html", "/www"), 10_000_000)
"""Any image nothing else claims is a web server (a learner's `lab/web:1` answers a page)."""
