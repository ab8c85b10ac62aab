"""The host's Docker engine, asked over its API socket instead of through the docker CLI.

Each run of the docker CLI is a Go program's start, about 30 ms of CPU on a quiet machine and
more under load; `swarmlet up` asked it a dozen times before compose started. This module makes
the same requests (version, image inspect and tag, container list and inspect) with the standard
library's http.client, over the unix socket (or the tcp:// address) that DOCKER_HOST names, as
the CLI would.

Where the CLI does something this client does not (TLS client certificates, ssh://, a docker
context other than the default), :func:`host_engine` returns None and the callers run the CLI
as before.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import socket
import subprocess
import urllib.parse
from typing import Any

__all__ = ["DEFAULT_HOST", "HostEngine", "HostEngineError", "host_engine"]

DEFAULT_HOST = "unix:///var/run/docker.sock"
"""Where the docker CLI looks for the engine when DOCKER_HOST is not set."""


class HostEngineError(Exception):
    """The engine refused a request (``status`` is its HTTP status) or could not be reached
    (``status`` is None); ``str(e)`` is the engine's own message, or why it could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection over a unix socket (the engine's API socket)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class HostEngine:
    """The Docker Engine API at ``host`` (``unix:///path`` or ``tcp://host:port``, no TLS).

    One connection per request: a unix socket's connect costs microseconds, and no connection
    is left open for the engine to close under a later request."""

    def __init__(self, host: str = DEFAULT_HOST, timeout: float = 30.0) -> None:
        if not host.startswith(("unix://", "tcp://")):
            raise ValueError(f"not a unix:// or tcp:// DOCKER_HOST: {host}")
        self.host = host
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.host.startswith("unix://"):
            return _UnixConnection(self.host[len("unix://"):], self.timeout)
        where = urllib.parse.urlsplit("http://" + self.host[len("tcp://"):])
        return http.client.HTTPConnection(where.hostname or "localhost", where.port or 2375,
                                          timeout=self.timeout)

    def call(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        """``METHOD path?query``; the decoded JSON answer (None when empty). Raises HostEngineError."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        connection = self._connection()
        try:
            connection.request(method, path, headers={"Host": "docker"})
            answer = connection.getresponse()
            body = answer.read()
        except OSError as e:
            raise HostEngineError(f"cannot connect to the Docker daemon at {self.host}: "
                                  f"{e.strerror or e}") from None
        except http.client.HTTPException as e:
            raise HostEngineError(f"the Docker daemon at {self.host} answered badly: {e!r}") from None
        finally:
            connection.close()
        if not 200 <= answer.status < 300:
            try:
                message = str(json.loads(body).get("message") or "")
            except (ValueError, AttributeError):
                message = ""
            raise HostEngineError(message or f"{method} {path}: HTTP {answer.status}", answer.status)
        return json.loads(body) if body.strip() else None

    def _found(self, path: str) -> dict[str, Any] | None:
        """``GET path`` of one object's JSON; None when the engine has no such object (404)."""
        try:
            return dict(self.call("GET", path) or {})
        except HostEngineError as e:
            if e.status == 404:
                return None
            raise

    def version(self) -> dict[str, Any]:
        """``GET /version`` (`docker version`'s Server part)."""
        return dict(self.call("GET", "/version") or {})

    def image(self, name: str) -> dict[str, Any] | None:
        """``GET /images/{name}/json`` (`docker image inspect NAME`), None when there is no such image."""
        return self._found(f"/images/{urllib.parse.quote(name, safe='/:@')}/json")

    def tag(self, source: str, target: str) -> None:
        """``POST /images/{source}/tag?repo=R&tag=T`` (`docker tag SOURCE TARGET`)."""
        repo, _, tag = target.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = target, "latest"
        self.call("POST", f"/images/{urllib.parse.quote(source, safe='/:@')}/tag", {"repo": repo, "tag": tag})

    def volume(self, name: str) -> dict[str, Any] | None:
        """``GET /volumes/{name}`` (`docker volume inspect NAME`), None when there is no such volume."""
        return self._found(f"/volumes/{urllib.parse.quote(name)}")

    def containers(self, labels: list[str], all: bool = True) -> list[dict[str, Any]]:
        """``GET /containers/json`` with label filters (`docker ps [-a] --filter label=...`)."""
        query = {"filters": json.dumps({"label": labels})}
        if all:
            query["all"] = "1"
        return list(self.call("GET", "/containers/json", query) or [])

    def inspect(self, container: str) -> dict[str, Any] | None:
        """``GET /containers/{id}/json`` (`docker inspect ID`), None when it is gone."""
        return self._found(f"/containers/{urllib.parse.quote(container)}/json")


def _context_is_default() -> bool:
    """Whether the docker CLI would use DOCKER_HOST or its default socket, not a named context."""
    if os.environ.get("DOCKER_CONTEXT", "default") != "default":
        return False
    config = pathlib.Path(os.environ.get("DOCKER_CONFIG") or pathlib.Path.home() / ".docker") / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        return True  # no config (or one the CLI would refuse too): the default
    return bool(current == "default")


def host_engine(timeout: float = 30.0) -> HostEngine | None:
    """The engine the docker CLI would talk to, if this client can reach it the same way; None
    when the CLI must be asked instead: TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_TLS),
    an ssh:// or other DOCKER_HOST, or a docker context."""
    if any(os.environ.get(key) for key in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")):
        return None
    host = os.environ.get("DOCKER_HOST") or ""
    if not host and not _context_is_default():
        return None
    host = host or DEFAULT_HOST
    if not host.startswith(("unix://", "tcp://")):
        return None
    return HostEngine(host, timeout)


def inspect_object(kind: str, name: str) -> dict[str, Any] | None:
    """``docker {image|volume|container} inspect NAME``: over the engine's socket where
    :func:`host_engine` can reach it, through the docker CLI otherwise; None when there is no
    such object. Raises HostEngineError when the engine refuses the socket request."""
    engine = host_engine()
    if engine is not None:
        method = {"image": "image", "volume": "volume", "container": "inspect"}[kind]
        found: dict[str, Any] | None = getattr(engine, method)(name)
        return found
    proc = subprocess.run(["docker", kind, "inspect", name], capture_output=True, text=True, check=False)
    listed = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return dict(listed[0]) if listed else None
