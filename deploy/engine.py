"""A few Docker Engine API calls over HTTP, as the docker CLI makes them: what `swarmlet node rm`
needs to take a node out of the swarm the way a user would (demote, then `docker node rm`), and
the services `swarmlet status` checks the published ports of.

The standard library's urllib is enough for three requests; any answer other than 2xx becomes an
:class:`EngineError` carrying the engine's own message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["EngineError", "find_node", "list_nodes", "list_services", "remove_node", "set_role"]


class EngineError(Exception):
    """The Engine API refused or did not answer; ``str(e)`` is its message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _url(docker_host: str, path: str) -> str:
    if not docker_host.startswith("tcp://"):
        raise EngineError(f"not a tcp:// DOCKER_HOST: {docker_host}")
    return "http://" + docker_host[len("tcp://"):] + path


def _call(docker_host: str, method: str, path: str, body: object = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(_url(docker_host, path), data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read()
    except urllib.error.HTTPError as e:
        try:
            message = str(json.loads(e.read()).get("message", "")) or e.reason
        except (ValueError, AttributeError):
            message = str(e.reason)
        raise EngineError(message, e.code) from None
    except OSError as e:
        raise EngineError(f"{docker_host} did not answer: {e}") from None
    return json.loads(text) if text.strip() else None


def list_nodes(docker_host: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """``GET /nodes``: the Node objects, as `docker node ls` reads them."""
    return list(_call(docker_host, "GET", "/nodes", timeout=timeout) or [])


def list_services(docker_host: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """``GET /services``: the Service objects (their Endpoint has the published ports)."""
    return list(_call(docker_host, "GET", "/services", timeout=timeout) or [])


def find_node(docker_host: str, hostname: str) -> dict[str, Any] | None:
    """The Node object whose hostname is ``hostname`` (the newest, should there be several)."""
    found = [n for n in list_nodes(docker_host)
             if (n.get("Description") or {}).get("Hostname") == hostname]
    found.sort(key=lambda n: str(n.get("CreatedAt", "")))
    return found[-1] if found else None


def set_role(docker_host: str, node: dict[str, Any], role: str) -> None:
    """``POST /nodes/{id}/update?version=N`` with the node's Spec and Role ``role`` (`docker node
    demote` / `promote`)."""
    spec = dict(node.get("Spec") or {}, Role=role)
    version = (node.get("Version") or {}).get("Index", 0)
    _call(docker_host, "POST", f"/nodes/{node['ID']}/update?version={version}", spec)


def remove_node(docker_host: str, node_id: str, force: bool = False) -> None:
    """``DELETE /nodes/{id}`` (`docker node rm`)."""
    _call(docker_host, "DELETE", f"/nodes/{node_id}" + ("?force=1" if force else ""))
