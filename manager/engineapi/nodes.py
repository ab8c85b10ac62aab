"""``/nodes``: list (with filters), inspect, update (labels, availability), remove.

Reads come from this manager's store; the update and the removal are one store operation each,
written through the leader with the version the client read (``?version=``), so a concurrent
change makes the write fail with Swarm's "update out of sequence" instead of overwriting it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from manager.engineapi.base import ManagerView, guarded
from manager.engineapi.render import node_to_api
from manager.state.store import StoredObject, Update
from nodeagent.engineapi import ApiError, Route, decode, json_response, parse_filters
from nodeagent.engineapi.errors import json_array_body, json_bytes_response, json_encode
from nodeagent.engineapi.gojson import STRING, GoJSONError, map_of, scalar, struct

__all__ = ["NODE_SPEC", "NodeRoutes", "labels_match", "parse_version", "query_bool"]

NODE_SPEC = struct(
    "swarm.NodeSpec",
    Name=STRING,
    Labels=map_of(STRING),
    Role=scalar("swarm.NodeRole", "string"),
    Availability=scalar("swarm.NodeAvailability", "string"),
)
"""Docker's swarm.NodeSpec, as ``POST /nodes/{id}/update`` reads it."""

_FILTERS = ("id", "label", "name", "node.label", "membership", "role")
_ROLES = ("manager", "worker")
_AVAILABILITIES = ("active", "pause", "drain")


def query_bool(request: web.Request, name: str) -> bool:
    """A boolean query parameter as Docker reads one: anything but "", 0, no, false, none is true."""
    value = request.query.get(name, "").strip().lower()
    return value not in ("", "0", "no", "false", "none")


def parse_version(raw: str, kind: str = "node") -> int:
    """``?version=`` as Go's strconv.ParseUint reads it, refused in the daemon's words."""
    if raw.isdigit() and raw.isascii():
        value = int(raw)
        if value < 2**64:
            return value
        reason = "value out of range"
    else:
        reason = "invalid syntax"
    raise ApiError.bad_request(
        f"invalid {kind} version '{raw}': strconv.ParseUint: parsing \"{raw}\": {reason}")


def labels_match(labels: object, wanted: Iterable[str]) -> bool:
    """Every ``key`` or ``key=value`` in ``wanted`` holds in ``labels`` (swarmkit's rule)."""
    have = labels if isinstance(labels, dict) else {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in have or (sep and have[key] != value):
            return False
    return True


def _hostname(node: StoredObject) -> str:
    desc = node.extra.get("Description")
    return str(desc.get("Hostname") or "") if isinstance(desc, dict) else ""


class NodeRoutes:
    """The handlers of ``/nodes`` for one manager."""

    def __init__(self, manager: ManagerView) -> None:
        """Answer from ``manager``'s store; write through it."""
        self.manager = manager
        # Node ID -> (Version.Index, the leader, the node's JSON): ``GET /nodes`` (what the CLI
        # polls) encodes only the nodes written since, or all of them after a leader change.
        # A node's JSON depends on nothing else (the host facts are this manager's, fixed).
        self._encoded: dict[str, tuple[int, str, bytes]] = {}
        # The last answer's body, by (store's applied index, leader, managers seen gone, query):
        # while nothing is written (what `docker node ls` in a loop meets), the same bytes again.
        self._listed: tuple[tuple[object, ...], bytes] | None = None

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [
            ("GET", "/nodes", guarded(self.list)),
            ("GET", "/nodes/{id}", guarded(self.inspect)),
            ("POST", "/nodes/{id}/update", guarded(self.update)),
            ("DELETE", "/nodes/{id}", guarded(self.remove)),
        ]

    def _render(self, node: StoredObject) -> dict[str, object]:
        return node_to_api(node, self.manager.leader_id(), self.manager.host,
                           node.id in self.manager.unreachable())

    def _encode(self, node: StoredObject, leader_id: str, gone: frozenset[str]) -> bytes:
        # The cache key's "leader" part also says whether the node is seen gone (rare).
        key = f"{leader_id}!" if node.id in gone else leader_id
        cached = self._encoded.get(node.id)
        if cached is not None and cached[0] == node.version and cached[1] == key:
            return cached[2]
        encoded = json_encode(node_to_api(node, leader_id, self.manager.host, node.id in gone))
        self._encoded[node.id] = (node.version, key, encoded)
        return encoded

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /nodes?filters=``: every node that matches every filter given."""
        leader_id = self.manager.leader_id()
        gone = self.manager.unreachable()
        key = (self.manager.store.applied_index, leader_id, gone, request.query_string)
        if self._listed is not None and self._listed[0] == key:
            return json_bytes_response(self._listed[1])
        filters = parse_filters(request.query.get("filters"))
        filters.validate(_FILTERS)
        filters.check_values("role", _ROLES, "role")
        filters.check_values("membership", ("accepted", "pending"), "membership")
        tests: list[Callable[[StoredObject], bool]] = []
        if ids := filters.get("id"):
            tests.append(lambda n: any(n.id.startswith(p) for p in ids))
        if names := filters.get("name"):
            tests.append(lambda n: any(_hostname(n).startswith(p) for p in names))
        if roles := filters.get("role"):
            tests.append(lambda n: n.spec.get("Role") in roles)
        if memberships := filters.get("membership"):
            tests.append(lambda n: "accepted" in memberships)  # a node in the store has been accepted
        if engine_labels := filters.get("label"):
            tests.append(lambda n: labels_match(
                ((n.extra.get("Description") or {}).get("Engine") or {}).get("Labels"), engine_labels))
        if node_labels := filters.get("node.label"):
            tests.append(lambda n: labels_match(n.spec.get("Labels"), node_labels))
        nodes = self.manager.store.find("node", filters=lambda n: all(t(n) for t in tests))
        items = [self._encode(n, leader_id, gone) for n in nodes]
        if not tests and len(self._encoded) > len(nodes):  # forget removed nodes
            self._encoded = {n.id: self._encoded[n.id] for n in nodes}
        body = json_array_body(items)
        self._listed = (key, body)
        return json_bytes_response(body)

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /nodes/{id}``: by ID, hostname or unique ID prefix."""
        node = self.manager.store.lookup("node", request.match_info["id"])
        return json_response(self._render(node))

    async def update(self, request: web.Request) -> web.StreamResponse:
        """``POST /nodes/{id}/update?version=``: replace the node's Spec (labels, availability)."""
        try:
            spec = decode(await request.read(), NODE_SPEC)
        except GoJSONError as exc:
            raise ApiError.bad_request(str(exc)) from None
        version = parse_version(request.query.get("version", ""))
        role = str(spec.get("Role", "")).lower()
        if role not in _ROLES:
            raise ApiError.bad_request(f'invalid Role: "{spec.get("Role", "")}"')
        availability = str(spec.get("Availability", "")).lower()
        if availability not in _AVAILABILITIES:
            raise ApiError.bad_request(f'invalid Availability: "{spec.get("Availability", "")}"')
        node = self.manager.store.lookup("node", request.match_info["id"])
        current = str(node.spec.get("Role") or "worker")
        new_spec = {
            "Name": spec.get("Name", ""),
            "Role": current,
            "Availability": availability,
            "Labels": spec.get("Labels") or {},
        }
        if role == current or new_spec != {**node.spec, "Role": current}:
            # The version check guards the labels and availability; a role change after it
            # is a second write, decided by the leader (as swarmkit's controlapi does both).
            await self.manager.write([Update("node", node.id, version, spec=new_spec)])
        if role != current:
            await self.manager.change_role(node.id, role)
        return web.Response(status=200)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /nodes/{id}?force=``: Swarm's refusals, then one delete through the leader."""
        force = query_bool(request, "force")
        node = self.manager.store.lookup("node", request.match_info["id"])
        await self.manager.remove_node(node.id, force)
        return web.Response(status=200)
