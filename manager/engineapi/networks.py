"""``/networks``: list (filters), create (overlay, allocated at once), inspect, remove.

What a manager's daemon does in a swarm: swarm networks live in the store; the node-local
networks every engine lists (bridge, host, none, docker_gwbridge) are emulated
(render_networks.py). A network is allocated (VNI, subnet, gateway: manager/allocator/) when it
is created, from this manager's store, so ``docker network inspect`` right after ``create``
shows what a real Swarm shows. Services reach here too: :func:`prepare_service_endpoint`
resolves a service's network targets to IDs (as the daemon's populateNetworkID does), checks
its published ports (swarmkit's checks) and allocates its Endpoint (VIPs, automatic ports).

Every refusal carries Docker 20.10's status and words, as asked of a real Swarm (see
docs/networking.md), and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from manager.allocator.ipam import IpamError
from manager.allocator.networks import (
    allocate_network,
    allocate_service_endpoint,
    find_ingress,
    is_predefined,
    state_from_view,
)
from manager.allocator.ports import check_endpoint_spec, check_port_conflicts, ingress_ports
from manager.engineapi.base import ManagerView, guarded, rpc_message
from manager.engineapi.nodes import labels_match
from manager.engineapi.render_networks import (
    LOCAL_NETWORKS,
    PREDEFINED,
    local_networks,
    network_to_api,
    with_node_view,
)
from manager.engineapi.tasks import task_name
from manager.state.store import Create, Delete, InUse, NameConflict, Store, StoredObject, new_id
from manager.state.store.validate import check_create
from nodeagent.engineapi import ApiError, Route, decode, json_response, parse_filters
from nodeagent.engineapi.gojson import BOOL, STRING, GoJSONError, map_of, slice_of, struct
from nodeagent.engineapi.localnets import remove_refusal

__all__ = ["NETWORK_CREATE", "NetworkRoutes", "api_ipam_error", "prepare_service_endpoint"]

NETWORK_CREATE = struct(
    "types.NetworkCreateRequest",
    Name=STRING,
    CheckDuplicate=BOOL,
    Driver=STRING,
    Scope=STRING,
    EnableIPv6=BOOL,
    IPAM=struct(
        "network.IPAM",
        Driver=STRING,
        Options=map_of(STRING),
        Config=slice_of(struct("network.IPAMConfig", Subnet=STRING, IPRange=STRING, Gateway=STRING,
                               AuxiliaryAddresses=map_of(STRING))),
    ),
    Internal=BOOL,
    Attachable=BOOL,
    Ingress=BOOL,
    ConfigOnly=BOOL,
    ConfigFrom=struct("network.ConfigReference", Network=STRING),
    Options=map_of(STRING),
    Labels=map_of(STRING),
)
"""Docker's types.NetworkCreateRequest, as ``POST /networks/create`` reads it."""

_FILTERS = ("driver", "id", "label", "name", "scope", "type")


def api_ipam_error(exc: IpamError) -> ApiError:
    """An allocator refusal as Docker answers it: ``rpc error: code = ... desc = ...`` or plain."""
    message = rpc_message(exc.code, exc.message) if exc.code else exc.message
    return ApiError(exc.status, message)


def _matches(pattern: str, value: str) -> bool:
    # moby's filters.Match: the value as a regular expression, searched anywhere.
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return pattern in value


def _network_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Spec stored for a swarm network: the create request's fields, Swarm's defaults filled."""
    ipam = dict(body.get("IPAM") or {})
    configs = [{k: v for k, v in dict(c).items() if v} for c in ipam.get("Config") or []]
    return {
        "Name": str(body.get("Name") or ""),
        "Labels": dict(body.get("Labels") or {}),
        "Driver": str(body.get("Driver") or "overlay"),
        "Scope": "swarm",
        "EnableIPv6": bool(body.get("EnableIPv6")),
        "IPAM": {"Driver": ipam.get("Driver") or "default", "Options": ipam.get("Options") or None,
                 "Config": configs},
        "Internal": bool(body.get("Internal")),
        "Attachable": bool(body.get("Attachable")),
        "Ingress": bool(body.get("Ingress")),
        "Options": dict(body.get("Options") or {}),
    }


def lookup_network(store: Store, term: str) -> StoredObject:
    """A swarm network by full ID, exact name or unique ID prefix (the daemon's getNetwork).

    Not found is the daemon's plain ``network X not found`` (a 500 when a service names it, as
    Docker 20.10 answered); the caller picks the status.
    """
    found = store.find("network", filters=lambda n: n.id == term)
    if not found:
        found = store.find("network", name=term)
    if not found and term:
        found = store.find("network", filters=lambda n: n.id.startswith(term))
    if not found:
        raise ApiError(500, f"network {term} not found")
    if len(found) > 1:
        raise ApiError(500, f"network {term} is ambiguous ({len(found)} matches found)")
    return found[0]


def prepare_service_endpoint(
    store: Store, service_id: str, spec: dict[str, Any], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Resolve ``spec``'s networks to IDs in place, check its ports, and allocate its Endpoint.

    As the daemon and swarmkit do before a service is stored: a network target is an ID, a
    name or an ID prefix (``network nosuch not found``, 500); the ingress network cannot be
    named (``Service cannot be explicitly attached to the ingress network "ingress"``); a
    node-local network cannot be used; then swarmkit's port checks (dnsrr with ingress ports,
    duplicates, another service's port) and, with an ingress port, an ingress network must
    exist. Returns the Endpoint to store in the service's ``extra``.
    """
    template = spec.get("TaskTemplate")
    attachments = template.get("Networks") if isinstance(template, dict) else None
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, dict):
            continue
        target = str(attachment.get("Target") or "")
        if target in PREDEFINED:
            # The daemon's own host/bridge/none: use the swarm's predefined network of that name.
            found = store.find("network", name=target)
            if not found or not is_predefined(found[0]):
                raise ApiError.not_found(f"could not find the corresponding predefined swarm network: "
                                         f"network {target} not found")
            attachment["Target"] = found[0].id
            continue
        if target in LOCAL_NETWORKS:
            raise ApiError(403, f"The network {target} cannot be used with services. Only networks scoped "
                                "to the swarm can be used, such as those created with the overlay driver.")
        network = lookup_network(store, target)
        if network.spec.get("Ingress"):
            message = f'Service cannot be explicitly attached to the ingress network "{network.name}"'
            raise ApiError.bad_request(rpc_message("InvalidArgument", message))
        attachment["Target"] = network.id
    endpoint_spec = spec.get("EndpointSpec")
    try:
        check_endpoint_spec(endpoint_spec)
        check_port_conflicts(endpoint_spec, service_id, store.find("service"))
        networks = {n.id: n for n in store.find("network")}
        if ingress_ports(endpoint_spec) and find_ingress(networks.values()) is None:
            raise IpamError("service needs ingress network, but no ingress network is present",
                            code="FailedPrecondition")
        state = state_from_view(store)
        return allocate_service_endpoint(service_id, spec, previous, networks, state)
    except IpamError as exc:
        raise api_ipam_error(exc) from None


class NetworkRoutes:
    """The handlers of ``/networks`` for one manager."""

    def __init__(self, manager: ManagerView) -> None:
        """Answer from ``manager``'s store; write through it."""
        self.manager = manager

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [
            ("GET", "/networks", guarded(self.list)),
            ("POST", "/networks/create", guarded(self.create)),
            ("GET", "/networks/{id}", guarded(self.inspect)),
            ("DELETE", "/networks/{id}", guarded(self.remove)),
        ]

    def _local(self) -> list[dict[str, Any]]:
        store = self.manager.store
        node = store.find("node", filters=lambda n: n.id == self.manager.node_id)
        cluster = self.manager.cluster()
        created = node[0].created_at if node else (cluster.created_at if cluster else "0001-01-01T00:00:00Z")
        return local_networks(self.manager.node_id, created)

    def _all(self, scope: str = "") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if scope in ("", "swarm"):
            # The swarm's predefined host and bridge are found only when swarm scope is asked.
            out.extend(network_to_api(n) for n in self.manager.store.find("network")
                       if scope == "swarm" or not is_predefined(n))
        if scope in ("", "local"):
            out.extend(self._local())
        return out

    def _find(self, term: str, scope: str = "") -> dict[str, Any]:
        """moby's findUniqueNetwork: full ID, then exact name, then unique ID prefix."""
        candidates = self._all(scope)
        tests: list[tuple[Callable[[dict[str, Any]], bool], str]] = [
            (lambda n: bool(n["Id"] == term), ""),
            (lambda n: bool(n["Name"] == term), " based on name"),
            (lambda n: bool(term) and str(n["Id"]).startswith(term), " based on ID prefix"),
        ]
        for test, what in tests:
            found = [n for n in candidates if test(n)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ApiError.bad_request(f"network {term} is ambiguous ({len(found)} matches found{what})")
        raise ApiError.not_found(f"network {term} not found")

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /networks?filters=``: swarm networks, then the node's own, that match every filter."""
        filters = parse_filters(request.query.get("filters"))
        filters.validate(_FILTERS)
        tests: list[Callable[[dict[str, Any]], bool]] = []
        if drivers := filters.get("driver"):
            tests.append(lambda n: n["Driver"] in drivers)
        if names := filters.get("name"):
            tests.append(lambda n: any(_matches(p, n["Name"]) for p in names))
        if ids := filters.get("id"):
            tests.append(lambda n: any(_matches(p, n["Id"]) for p in ids))
        if labels := filters.get("label"):
            tests.append(lambda n: labels_match(n["Labels"] or {}, labels))
        if scopes := filters.get("scope"):
            tests.append(lambda n: n["Scope"] in scopes)
        if types := filters.get("type"):
            for value in types:
                if value not in ("custom", "builtin"):
                    raise ApiError(500, f"invalid filter: 'type'='{value}'")
            tests.append(lambda n: ("builtin" if n["Name"] in PREDEFINED else "custom") in types)
        return json_response([n for n in self._all() if all(t(n) for t in tests)])

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /networks/{id}?scope=&verbose=``: by ID, name or unique ID prefix."""
        scope = request.query.get("scope", "")
        found = self._find(request.match_info["id"], "" if scope == "global" else scope)
        if found["Scope"] != "swarm":
            return json_response(found)
        return json_response(self._node_view(found))

    def _node_view(self, rendered: dict[str, Any]) -> dict[str, Any]:
        """The network as this node's daemon shows it: with Containers and Peers if it carries it."""
        store = self.manager.store
        tasks = [t for t in store.find("task") if t.status.get("State") == "running"]
        services = {s.id: s.name for s in store.find("service")}
        names: dict[str, str] = {}
        for task in tasks:
            annotations = task.extra.get("ServiceAnnotations")
            service = annotations.get("Name") if isinstance(annotations, Mapping) else None
            service = service or services.get(str(task.extra.get("ServiceID")), "")
            names[task.id] = task_name(task, str(service))
        return with_node_view(rendered, self.manager.node_id, tasks, store.find("node"), names)

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /networks/create``: an overlay network scoped to the swarm; 201 ``{"Id", "Warning"}``."""
        try:
            body = dict(decode(await request.read(), NETWORK_CREATE) or {})
        except GoJSONError as exc:
            raise ApiError.bad_request(str(exc)) from None
        name = str(body.get("Name") or "")
        driver = str(body.get("Driver") or "bridge")
        if not name:
            raise ApiError(500, "invalid name: ")
        if name == "default":
            raise ApiError(403, "operation is not permitted on predefined default network ")
        store = self.manager.store
        if name in LOCAL_NETWORKS or store.find("network", name=name):
            raise ApiError.conflict(f"network with name {name} already exists")
        if driver == "overlay" and body.get("Scope") == "local":
            raise ApiError(403, "cannot downgrade network scope for overlay networks")
        if driver != "overlay":
            raise ApiError.not_implemented(
                f"swarmlet makes overlay networks scoped to the swarm only, not {driver!r} networks")
        spec = _network_spec(body)
        if spec["Ingress"] and spec["Attachable"]:
            raise ApiError.bad_request(rpc_message("InvalidArgument", "ingress network cannot be attachable"))
        existing = find_ingress(store.find("network"))
        if spec["Ingress"] and existing is not None:
            raise ApiError.conflict(rpc_message(
                "AlreadyExists", f"ingress network ({existing.id}) is already present"))
        check_create("network", spec, {}, {})
        network_id = new_id()
        try:
            extra = allocate_network(network_id, spec, state_from_view(store))
        except IpamError as exc:
            raise api_ipam_error(exc) from None
        try:
            await self.manager.write([Create("network", network_id, spec, {}, extra)])
        except NameConflict:
            raise ApiError.conflict(f"network with name {name} already exists") from None
        return json_response({"Id": network_id, "Warning": ""}, status=201)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /networks/{id}``: 204; refused while a service or a task uses it, as Swarm."""
        found = self._find(request.match_info["id"])
        if found["Scope"] == "local":
            raise remove_refusal(found)
        network = self.manager.store.get("network", found["Id"])
        if network.spec.get("Ingress"):
            for service in self.manager.store.find("service"):
                if ingress_ports(service.spec.get("EndpointSpec")):
                    raise ApiError.bad_request(rpc_message(
                        "FailedPrecondition",
                        f"ingress network cannot be removed because service {service.id} depends on it"))
        try:
            await self.manager.write([Delete("network", network.id)])
        except InUse as exc:
            raise ApiError.bad_request(rpc_message("FailedPrecondition", exc.message)) from None
        return web.Response(status=204)

