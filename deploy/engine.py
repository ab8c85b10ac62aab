"""A few Docker Engine API calls over HTTP, as the docker CLI makes them: what `swarmlet node rm`
needs to take a node out of the swarm the way a user would (demote, then `docker node rm`), and
the services `swarmlet status` checks the published ports of; and
the node list `swarmlet up` waits on (``node_rows``: `docker node ls`'s rows, without importing
gRPC, whose 0.3 to 0.8 s of import would compete with the starting nodes for the CPU).

The standard library's http.client is enough for these requests (lighter than urllib, which `up`
paid for twenty times a second while it waited); any answer other than 2xx becomes an
:class:`EngineError` carrying the engine's own message.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["EngineError", "NodeRow", "find_node", "inspect_swarm", "list_nodes", "list_services", "node_row",
           "node_rows", "ping", "remove_node", "set_role"]


class EngineError(Exception):
    """The Engine API refused or did not answer; ``str(e)`` is its message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _address(docker_host: str) -> tuple[str, int]:
    if not docker_host.startswith("tcp://"):
        raise EngineError(f"not a tcp:// DOCKER_HOST: {docker_host}")
    host, _, port = docker_host[len("tcp://"):].rstrip("/").rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise EngineError(f"no port in DOCKER_HOST {docker_host}") from None


def _call(docker_host: str, method: str, path: str, body: object = None, timeout: float = 5.0) -> Any:
    host, port = _address(docker_host)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=data, headers=headers)
        answer = connection.getresponse()
        text = answer.read()
    except (OSError, http.client.HTTPException) as e:
        raise EngineError(f"{docker_host} did not answer: {e}") from None
    finally:
        connection.close()
    if not 200 <= answer.status < 300:
        try:
            message = str(json.loads(text).get("message", "")) or answer.reason
        except (ValueError, AttributeError):
            message = str(answer.reason)
        raise EngineError(message, answer.status)
    return json.loads(text) if text.strip() else None


def ping(docker_host: str, timeout: float = 1.0) -> bool:
    """``GET /_ping``: whether the Engine API at ``docker_host`` answers OK."""
    try:
        _call(docker_host, "GET", "/_ping", timeout=timeout)
    except EngineError:
        return False
    except ValueError:  # "OK" is no JSON: an answer all the same
        pass
    return True


def inspect_swarm(docker_host: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /swarm``: the Cluster object as `docker swarm join-token` reads it (JoinTokens,
    TLSInfo.TrustRoot)."""
    return dict(_call(docker_host, "GET", "/swarm", timeout=timeout) or {})


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


@dataclass(frozen=True)
class NodeRow:
    """One row of `docker node ls` (the fields deploy.commands.status.NodeLike names)."""

    id: str
    hostname: str
    role: str
    status: str  #: "Ready", "Down", "Unknown" or "Disconnected"
    availability: str  #: "Active", "Pause" or "Drain"
    manager_status: str  #: "Leader", "Reachable", "Unreachable", or "" for workers
    engine_version: str
    is_self: bool  #: the node whose Engine API answered (the ``*`` of `docker node ls`)


def node_row(node: dict[str, Any], self_id: str = "") -> NodeRow:
    """A Node object of ``GET /nodes`` as `docker node ls` prints it (capitalized, as the CLI does)."""
    spec = node.get("Spec") or {}
    description = node.get("Description") or {}
    manager = node.get("ManagerStatus") or {}
    if manager.get("Leader"):
        manager_status = "Leader"
    else:
        manager_status = str(manager.get("Reachability") or "").capitalize()
    return NodeRow(
        id=str(node.get("ID", "")),
        hostname=str(description.get("Hostname", "")),
        role=str(spec.get("Role") or "worker"),
        status=str((node.get("Status") or {}).get("State") or "unknown").capitalize(),
        availability=str(spec.get("Availability") or "active").capitalize(),
        manager_status=manager_status,
        engine_version=str((description.get("Engine") or {}).get("EngineVersion", "")),
        is_self=bool(self_id) and node.get("ID") == self_id,
    )


def node_rows(docker_host: str, timeout: float = 2.0) -> list[NodeRow]:
    """`docker node ls` at ``docker_host``: ``GET /info`` (which node answers), then ``GET /nodes``.

    Raises EngineError when the node does not answer or is no manager (Swarm's 503)."""
    info = _call(docker_host, "GET", "/info", timeout=timeout) or {}
    self_id = str((info.get("Swarm") or {}).get("NodeID") or "")
    return [node_row(n, self_id) for n in list_nodes(docker_host, timeout=timeout)]
