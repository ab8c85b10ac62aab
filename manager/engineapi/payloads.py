"""What ``/secrets`` and ``/configs`` share: list, create, inspect, update (labels only), remove.

Secrets and configs are the same object to Swarm apart from three things, which the two
subclasses say (secrets.py, configs.py): the Go type a body decodes into, the size limit (the
store's rule), and that a secret's Data is never shown. The daemon's order is kept: the body is
decoded (Go's errors), then checked (swarmkit's controlapi, with its words), then the object is
looked up as moby's ``getSecret`` looks it up (full ID, exact name, unique ID prefix), then one
store operation is written through the leader. Every rule is also the store's (validate.py), so
no other path writes a secret that this one would refuse.
"""

from __future__ import annotations

from aiohttp import web

from manager.engineapi.base import ManagerView, guarded, rpc_message
from manager.engineapi.nodes import labels_match
from manager.engineapi.render import payload_to_api
from manager.state.store import Create, Delete, NameConflict, StoredObject, Update, new_id
from manager.state.store.validate import check_create, labels_only_update, name_conflict_message
from nodeagent.engineapi import ApiError, GoType, Route, decode, json_response, parse_filters
from nodeagent.engineapi.gojson import GoJSONError

__all__ = ["PayloadRoutes"]

_FILTERS = ("id", "label", "name", "names")


class PayloadRoutes:
    """The handlers of ``/secrets`` or ``/configs`` for one manager."""

    kind = ""  # "secret" or "config"
    spec_type: GoType  # swarm.SecretSpec or swarm.ConfigSpec

    def __init__(self, manager: ManagerView) -> None:
        """Answer from ``manager``'s store, write through it."""
        self.manager = manager

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        base = f"/{self.kind}s"
        return [
            ("GET", base, guarded(self.list)),
            ("POST", f"{base}/create", guarded(self.create)),
            ("GET", base + "/{id}", guarded(self.inspect)),
            ("POST", base + "/{id}/update", guarded(self.update)),
            ("DELETE", base + "/{id}", guarded(self.remove)),
        ]

    async def _read_spec(self, request: web.Request) -> dict[str, object]:
        try:
            spec = decode(await request.read(), self.spec_type)
        except GoJSONError as exc:
            raise ApiError.bad_request(str(exc)) from None
        return dict(spec or {})

    def check_driver(self, spec: dict[str, object]) -> None:
        """Refuse a driver this kind cannot use (secrets override; configs have none)."""

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /secrets?filters=``: swarmkit's ListSecrets.

        ``names`` (exact), ``name`` (prefix) and ``id`` (prefix) select objects matching any
        of them, names ignoring case as swarmkit's name index does; ``label`` (``key`` or
        ``key=value``) must all hold. Sorted by ID, as swarmkit's store lists them.
        """
        filters = parse_filters(request.query.get("filters"))
        filters.validate(_FILTERS)
        names = [n.lower() for n in filters.get("names")]
        prefixes = [p.lower() for p in filters.get("name")]
        ids = filters.get("id")
        labels = filters.get("label")
        selective = bool(names or prefixes or ids)

        def wanted(obj: StoredObject) -> bool:
            name = obj.name.lower()
            chosen = (not selective or name in names or any(name.startswith(p) for p in prefixes)
                      or any(obj.id.startswith(p) for p in ids))
            return chosen and labels_match(obj.spec.get("Labels"), labels)

        found = self.manager.store.find(self.kind, filters=wanted)
        return json_response([payload_to_api(obj) for obj in found])

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /secrets/{id}``: by full ID, exact name or unique ID prefix."""
        obj = self.manager.store.lookup(self.kind, request.match_info["id"])
        return json_response(payload_to_api(obj))

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /secrets/create``: 201 ``{"ID": ...}``; Swarm's refusals, nothing written."""
        spec = await self._read_spec(request)
        spec.setdefault("Labels", {})
        # swarmkit validates the spec (name, driver, size: the store's rules), then the driver.
        check_create(self.kind, spec, {}, {})
        self.check_driver(spec)
        name = str(spec["Name"])
        if self.manager.store.find(self.kind, name=name):
            raise NameConflict(name_conflict_message(self.kind, name))
        object_id = new_id()
        # The store checks the name again when the write applies: two creates at once.
        await self.manager.write([Create(self.kind, object_id, spec, {}, {})])
        return json_response({"ID": object_id}, status=201)

    async def update(self, request: web.Request) -> web.StreamResponse:
        """``POST /secrets/{id}/update?version=``: only the labels may change (swarmkit's rule).

        The labels-only rule is checked before the version, as swarmkit does, so a stale
        request that also changes the data is told about the data.
        """
        spec = await self._read_spec(request)
        raw = request.query.get("version", "")
        if not (raw.isascii() and raw.isdigit() and int(raw) < 2**64):
            raise ApiError.bad_request(f"invalid {self.kind} version")
        obj = self.manager.store.lookup(self.kind, request.match_info["id"])
        if not labels_only_update(obj.spec, spec):
            raise ApiError.bad_request(rpc_message("InvalidArgument", "only updates to Labels are allowed"))
        await self.manager.write([Update(self.kind, obj.id, int(raw), spec=spec)])
        return web.Response(status=200)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /secrets/{id}``: 204; refused while a service uses it (the store's rule)."""
        obj = self.manager.store.lookup(self.kind, request.match_info["id"])
        await self.manager.write([Delete(self.kind, obj.id)])
        return web.Response(status=204)

