"""``/services``: list (filters, ``?status=true``), create, inspect, update (and rollback), remove, logs.

The daemon's order is kept: the body is decoded (Go's errors), then checked (moby's conversion,
then swarmkit's validation: servicespec.py), then the service is looked up, then one store
operation is written through the leader. A service's Spec changes only here; the orchestrators
read it. Removing a service removes only the service: the orchestrator shuts its tasks down
and the task reaper deletes them, as in Swarm.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from manager.engineapi.base import ManagerView, guarded, rpc_message
from manager.engineapi.logs import LogTarget, TaskLogSource, parse_log_query, stream_logs
from manager.engineapi.networks import prepare_service_endpoint
from manager.engineapi.nodes import labels_match, parse_version, query_bool
from manager.engineapi.render_services import service_status, service_to_api
from manager.engineapi.servicerefs import check_references_exist
from manager.engineapi.servicespec import SERVICE_SPEC, check_spec, with_defaults
from manager.state.store import Create, Delete, NameConflict, StoredObject, Update, format_timestamp, new_id
from manager.state.store.validate import name_conflict_message
from nodeagent.engineapi import ApiError, Route, decode, json_response, parse_filters
from nodeagent.engineapi.gojson import GoJSONError

__all__ = ["ServiceRoutes", "service_mode_name"]

_FILTERS = ("id", "label", "mode", "name", "runtime")
_MODES = {"replicated": "Replicated", "global": "Global", "replicated-job": "ReplicatedJob",
          "global-job": "GlobalJob"}


def service_mode_name(service: StoredObject) -> str:
    """The mode's key in the Spec: Replicated, Global, ReplicatedJob or GlobalJob."""
    mode = service.spec.get("Mode") or {}
    return next(iter(mode), "Replicated")


def _unimplemented(message: str) -> str:
    return rpc_message("Unimplemented", message)


async def _read_spec(request: web.Request) -> dict[str, Any]:
    try:
        spec = decode(await request.read(), SERVICE_SPEC)
    except GoJSONError as exc:
        raise ApiError.bad_request(str(exc)) from None
    return dict(spec or {})


class ServiceRoutes:
    """The handlers of ``/services`` for one manager."""

    def __init__(self, manager: ManagerView, logs: TaskLogSource) -> None:
        """Answer from ``manager``'s store, write through it; task logs come from ``logs``."""
        self.manager = manager
        self.logs = logs

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [
            ("GET", "/services", guarded(self.list)),
            ("POST", "/services/create", guarded(self.create)),
            ("GET", "/services/{id}", guarded(self.inspect)),
            ("POST", "/services/{id}/update", guarded(self.update)),
            ("DELETE", "/services/{id}", guarded(self.remove)),
            ("GET", "/services/{id}/logs", guarded(self.service_logs)),
        ]

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /services?filters=&status=``: every service that matches every filter given."""
        filters = parse_filters(request.query.get("filters"))
        filters.validate(_FILTERS)
        tests: list[Callable[[StoredObject], bool]] = []
        if ids := filters.get("id"):
            tests.append(lambda s: any(s.id.startswith(p) for p in ids))
        if names := filters.get("name"):
            # swarmkit matches name prefixes (NamePrefixes), as it does IDs.
            tests.append(lambda s: any(s.name.startswith(p) for p in names))
        if labels := filters.get("label"):
            tests.append(lambda s: labels_match(s.spec.get("Labels"), labels))
        if modes := filters.get("mode"):
            for value in modes:
                if value not in _MODES:
                    raise ApiError.bad_request(f"Invalid filter: 'mode'='{value}'")
            wanted = {_MODES[m] for m in modes}
            tests.append(lambda s: service_mode_name(s) in wanted)
        if runtimes := filters.get("runtime"):
            tests.append(lambda s: str((s.spec.get("TaskTemplate") or {}).get("Runtime") or "container")
                         in runtimes)
        services = self.manager.store.find("service", filters=lambda s: all(t(s) for t in tests))
        with_status = query_bool(request, "status")
        out = []
        for service in services:
            status = None
            if with_status:
                status = service_status(service, self.manager.store.find("task", service_id=service.id))
            out.append(service_to_api(service, status))
        return json_response(out)

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /services/{id}?insertDefaults=``: by ID, name or unique ID prefix.

        The stored Spec already holds Swarm's defaults, so ``insertDefaults`` changes nothing.
        """
        service = self.manager.store.lookup("service", request.match_info["id"])
        return json_response(service_to_api(service))

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /services/create``: check, fill defaults, write; 201 ``{"ID", "Warnings"}``."""
        given = await _read_spec(request)
        check_spec(given)
        spec = with_defaults(given)
        # swarmkit checks the secrets and configs exist before the name (both in the write's
        # transaction); the store's rule that a used secret cannot be removed keeps them there.
        check_references_exist(self.manager.store, spec["TaskTemplate"]["ContainerSpec"])
        if self.manager.store.find("service", name=str(spec["Name"])):
            raise NameConflict(name_conflict_message("service", str(spec["Name"])))
        # Networks named by name or prefix become IDs; ports are checked; VIPs and automatic
        # ports are allocated (manager/engineapi/networks.py). A refusal draws no ID.
        endpoint = prepare_service_endpoint(self.manager.store, "", spec, None)
        service_id = new_id()
        # The check above answers early; the store's rule, checked when the write applies, is
        # the one that holds when two managers create "web" at once.
        extra: dict[str, Any] = {"Endpoint": endpoint}
        if {"ReplicatedJob", "GlobalJob"} & set(spec.get("Mode") or {}):
            # A job starts at iteration 0; every update runs it again under the next index.
            extra["JobStatus"] = {"JobIteration": {"Index": 0}}
        await self.manager.write([Create("service", service_id, spec, {}, extra)])
        # Warnings stay null: a daemon of API >= 1.30 resolves no image; the CLI warns itself
        # when /distribution could not give it a digest (nodeagent/engineapi/images.py).
        return json_response({"ID": service_id, "Warnings": None}, status=201)

    async def update(self, request: web.Request) -> web.StreamResponse:
        """``POST /services/{id}/update?version=&rollback=&registryAuthFrom=``: swarmkit's UpdateService.

        A plain update keeps the current Spec as PreviousSpec and clears UpdateStatus (the
        update supervisor starts anew); ``rollback=previous`` swaps Spec and PreviousSpec and
        sets UpdateStatus rollback_started, "manually requested rollback", as Swarm does, and
        ignores the body's spec.
        """
        given = await _read_spec(request)
        version = parse_version(request.query.get("version", ""), "service")
        service = self.manager.store.lookup("service", request.match_info["id"])
        check_spec(given)
        spec = with_defaults(given)
        auth_from = request.query.get("registryAuthFrom", "")
        if auth_from not in ("", "spec", "previous-spec"):
            raise ApiError(500, "unsupported registryAuthFrom value")
        if auth_from == "previous-spec" and not isinstance(service.extra.get("PreviousSpec"), dict):
            raise ApiError(500, "service does not have a previous spec")
        rollback = request.query.get("rollback", "")
        if rollback not in ("", "none", "previous"):
            raise ApiError(500, f"unrecognized rollback option {rollback}")
        # The body's references are checked even for a rollback, before the mode and the
        # name, as swarmkit's UpdateService does.
        check_references_exist(self.manager.store, spec["TaskTemplate"]["ContainerSpec"])
        if spec.get("Name") != service.spec.get("Name"):
            raise ApiError.not_implemented(_unimplemented("changing service name is not supported"))
        if service_mode_name(service) != next(iter(spec["Mode"])):
            raise ApiError.not_implemented(_unimplemented("service mode change is not allowed"))

        extra = copy.deepcopy(service.extra)
        current = copy.deepcopy(service.spec)
        if rollback == "previous":
            previous = extra.get("PreviousSpec")
            if not isinstance(previous, dict):
                raise ApiError.bad_request(rpc_message(
                    "FailedPrecondition", f"service {service.id} does not have a previous spec"))
            new_spec: dict[str, Any] = previous
            extra["UpdateStatus"] = {
                "State": "rollback_started",
                "StartedAt": format_timestamp(time.time()),
                "Message": "manually requested rollback",
            }
        else:
            new_spec = spec
            extra.pop("UpdateStatus", None)
        extra["PreviousSpec"] = current
        extra["Endpoint"] = prepare_service_endpoint(
            self.manager.store, service.id, new_spec, service.extra.get("Endpoint"))
        job = extra.get("JobStatus")
        if isinstance(job, dict):
            iteration = dict(job.get("JobIteration") or {})
            iteration["Index"] = int(iteration.get("Index", 0) or 0) + 1
            extra["JobStatus"] = {**job, "JobIteration": iteration}
        await self.manager.write([Update("service", service.id, version, spec=new_spec, extra=extra)])
        return json_response({"Warnings": None})

    async def remove(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /services/{id}``: remove the service; its tasks go through the orchestrator."""
        service = self.manager.store.lookup("service", request.match_info["id"])
        await self.manager.write([Delete("service", service.id)])
        return web.Response(status=200)

    async def service_logs(self, request: web.Request) -> web.StreamResponse:
        """``GET /services/{id}/logs``: every task's lines that has a node, merged."""
        query = parse_log_query(request)
        service = self.manager.store.lookup("service", request.match_info["id"])
        tasks = self.manager.store.find("task", service_id=service.id)
        targets = [LogTarget(t.id, str(t.extra["NodeID"]), service.id)
                   for t in tasks if t.extra.get("NodeID")]
        container = (service.spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        return await stream_logs(request, self.logs, targets, query, tty=bool(container.get("TTY")))

