"""A node's volumes on its Engine API: ``GET /volumes``, ``/volumes/{name}``, create and remove.

Every engine answers for its own volumes, so ``docker -H tcp://<worker1>:2375 volume ls`` lists
worker1's named volumes (and the shared driver's, which every node sees), in Docker's shapes:
``{"Volumes": [...], "Warnings": null}``; an unknown name is Docker's 404 ``get NAME: no such
volume``. The store is the task runtime's (:class:`nodeagent.agent.volumes.VolumeStore`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from nodeagent.engineapi.errors import ApiError, json_response
from nodeagent.engineapi.filters import parse_filters

__all__ = ["VolumeCatalog", "VolumeRoutes"]


class VolumeCatalog(Protocol):
    """What the routes need of a node's volume store."""

    def volumes(self) -> list[dict[str, Any]]:
        """Every volume, in Docker's shape."""
        ...

    def get(self, name: str) -> dict[str, Any]:
        """One volume; raises an error with ``status`` and ``message`` when there is none."""
        ...

    def create(self, name: str, driver: str = "", labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create (or find) a volume."""
        ...

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume no container uses."""
        ...


def _label_match(volume: Mapping[str, Any], wanted: list[str]) -> bool:
    labels = volume.get("Labels") or {}
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class VolumeRoutes:
    """The handlers; ``store()`` is the node's volume store (None before the task runtime exists)."""

    def __init__(self, store: Callable[[], VolumeCatalog | None]) -> None:
        """Late-bound: the task runtime is made after the Engine API starts."""
        self._store = store

    def _catalog(self) -> VolumeCatalog:
        store = self._store()
        if store is None:
            raise ApiError.unavailable("this node keeps no volumes (its task runtime is not running)")
        return store

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiError:
            raise
        except Exception as exc:
            status, message = getattr(exc, "status", None), getattr(exc, "message", None)
            if isinstance(status, int) and isinstance(message, str):
                raise ApiError(status, message) from None
            raise

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /volumes?filters=``: name, driver, label, dangling (no running task mounts it)."""
        filters = parse_filters(request.query.get("filters"))
        filters.validate(("name", "driver", "label", "dangling"))
        catalog = self._catalog()
        volumes = self._call(catalog.volumes)
        names, drivers, labels = filters.get("name"), filters.get("driver"), filters.get("label")
        out = [
            v for v in volumes
            if (not names or any(n in v["Name"] for n in names))
            and (not drivers or v["Driver"] in drivers)
            and _label_match(v, labels)
        ]  # fmt: skip
        dangling = filters.get("dangling")
        if dangling:
            users = getattr(catalog, "users", {})
            in_use = {key.rsplit("/", 1)[-1] for key, ids in users.items() if ids}  # "driver/name"
            want = dangling[0] in ("true", "1")
            out = [v for v in out if (v["Name"] not in in_use) == want]
        return json_response({"Volumes": out, "Warnings": None})

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /volumes/{name}``."""
        name = request.match_info["name"]
        return json_response(self._call(lambda: self._catalog().get(name)))

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /volumes/create``: Name, Driver, DriverOpts, Labels; 201 with the volume."""
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise ApiError.bad_request(f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError.bad_request("invalid JSON: the body is not an object")
        volume = self._call(lambda: self._catalog().create(
            str(body.get("Name") or ""), str(body.get("Driver") or ""), body.get("Labels") or {},
            body.get("DriverOpts") or None))  # fmt: skip
        return json_response(volume, 201)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /volumes/{name}?force=``: 204."""
        name = request.match_info["name"]
        force = request.query.get("force", "") in ("1", "true", "True")
        self._call(lambda: self._catalog().remove(name, force))
        return web.Response(status=204)
