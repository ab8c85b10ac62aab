"""``/swarm`` (inspect, update, unlock key) and the manager's part of ``/info`` (Swarm: Nodes, Managers...).

``POST /swarm/update`` is the one route that changes the Cluster object from outside: the spec
is read as Docker's daemon reads it, checked as swarmkit's UpdateCluster checks it
(manager/engineapi/clusterspec.py), and written with the version the client read through the
one write path (LeaderWrites), join tokens and the autolock key rotated in the same write (every
manager then re-wraps its Raft data key: manager/keysync.py). The dispatcher checks
joins against the Cluster object's tokens, so a rotated token is refused from the next join on.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from aiohttp import web

from manager.ca.removed import pruned
from manager.engineapi.base import ManagerView, guarded, rpc_message
from manager.engineapi.clusterspec import SpecRefused, rotated_tokens, updated_spec, with_unlock_key
from manager.engineapi.nodes import parse_version
from manager.engineapi.render import cluster_to_api
from manager.keysync import wanted_unlock_key
from manager.state.raft.encryption import format_unlock_key, new_key
from manager.state.store import Update
from nodeagent.engineapi import NOT_IN_SWARM, ApiError, Route, SwarmInfo, decode, json_response
from nodeagent.engineapi.gojson import GoJSONError
from nodeagent.engineapi.swarmnode import CLUSTER_SPEC

__all__ = ["SwarmRoutes", "manager_stats", "manager_swarm_info"]

_SPEC_HTTP = {"InvalidArgument": 400, "Unimplemented": 501}


def manager_swarm_info(manager: ManagerView, base: SwarmInfo) -> SwarmInfo:
    """/info's Swarm section on a manager: counts, the managers' addresses and the cluster."""
    nodes = manager.store.find("node")
    remote = []
    managers = 0
    for node in nodes:
        if node.spec.get("Role") == "manager":
            managers += 1
            status = node.extra.get("ManagerStatus")
            if isinstance(status, dict) and status.get("Addr"):
                remote.append((node.id, str(status["Addr"])))
    cluster = manager.cluster()
    return dataclasses.replace(
        base,
        local_node_state="active",
        node_id=manager.node_id,
        control_available=True,
        remote_managers=tuple(sorted(remote, key=lambda r: r[1])),
        nodes=len(nodes),
        managers=managers,
        cluster=cluster_to_api(cluster, join_tokens=False) if cluster is not None else None,
    )


def manager_stats(manager: ManagerView) -> tuple[bool, int, int]:
    """(this manager reachable, reachable managers, unreachable managers), as moby's managerStats
    counts them for ``swarm leave``: from the Node objects' ManagerStatus."""
    me, reachable, unreachable = False, 0, 0
    for node in manager.store.find("node"):
        status = node.extra.get("ManagerStatus")
        if node.spec.get("Role") != "manager" or not isinstance(status, dict):
            continue
        if status.get("Leader") or status.get("Reachability") == "reachable":
            reachable += 1
            me = me or node.id == manager.node_id
        elif status.get("Reachability") == "unreachable":
            unreachable += 1
    return me, reachable, unreachable


def _flag(request: web.Request, name: str) -> bool:
    """A query flag as moby reads the rotation flags (strconv.ParseBool when given)."""
    raw = request.query.get(name, "")
    if raw in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    raise ApiError.bad_request(
        f'invalid value for {name}: strconv.ParseBool: parsing "{raw}": invalid syntax')


class SwarmRoutes:
    """The handlers of ``/swarm`` for one manager."""

    def __init__(self, manager: ManagerView) -> None:
        """Answer from ``manager``'s store, write through its leader."""
        self.manager = manager

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [
            ("GET", "/swarm", guarded(self.inspect)),
            ("POST", "/swarm/update", guarded(self.update)),
            ("GET", "/swarm/unlockkey", guarded(self.unlock_key)),
        ]

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /swarm``: the cluster object with its join tokens (api/swarm.json's shape)."""
        cluster = self.manager.cluster()
        if cluster is None:
            # The bootstrap manager has not written the cluster yet: no swarm to show.
            raise ApiError.unavailable(NOT_IN_SWARM)
        return json_response(cluster_to_api(cluster, join_tokens=True))

    async def update(self, request: web.Request) -> web.StreamResponse:
        """``POST /swarm/update?version=&rotateWorkerToken=&rotateManagerToken=``: a new Spec."""
        try:
            given = decode(await request.read(), CLUSTER_SPEC)
        except GoJSONError as exc:
            raise ApiError.bad_request(str(exc)) from None
        version = parse_version(request.query.get("version", ""), "swarm")
        worker = _flag(request, "rotateWorkerToken")
        manager = _flag(request, "rotateManagerToken")
        rotate_unlock = _flag(request, "rotateManagerUnlockKey")
        cluster = self.manager.cluster()
        if cluster is None:
            raise ApiError.unavailable(NOT_IN_SWARM)
        try:
            spec = updated_spec(dict(cluster.spec), given if isinstance(given, dict) else {})
            extra = dict(cluster.extra)
            extra["JoinTokens"] = rotated_tokens(dict(extra.get("JoinTokens") or {}), worker=worker,
                                                 manager=manager)
            extra = with_unlock_key(extra, spec, rotate=rotate_unlock, fresh=format_unlock_key(new_key()))
            extra = _ca_rotation(dict(cluster.spec), spec, extra)
            extra = pruned(extra, datetime.datetime.now(datetime.UTC))  # removed nodes long expired
        except SpecRefused as exc:
            raise ApiError(_SPEC_HTTP.get(exc.code, 500), rpc_message(exc.code, str(exc))) from None
        await self.manager.write([Update("cluster", cluster.id, version, spec=spec, extra=extra)])
        return web.Response(status=200)

    async def unlock_key(self, request: web.Request) -> web.StreamResponse:
        """``GET /swarm/unlockkey``: the autolock key (``SWMKEY-1-...``); "" without autolock
        (api/swarm-unlockkey.json)."""
        cluster = self.manager.cluster()
        if cluster is None:
            raise ApiError.unavailable(NOT_IN_SWARM)
        key = wanted_unlock_key(cluster)
        return json_response({"UnlockKey": format_unlock_key(key) if key is not None else ""})


def _ca_rotation(current: dict[str, Any], spec: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``docker swarm ca --rotate`` (a new ``CAConfig.ForceRotate``) or a new signing CA given
    (``--ca-cert`` and ``--ca-key``): the Cluster extra with the new root, rotation in progress,
    and join tokens that name the new root (same secrets). The signing key is never kept in the
    spec (``GET /swarm`` shows the spec)."""
    import datetime

    from manager.ca.service import ClusterCA
    from manager.ca.tokens import make_token, parse_token

    ca = spec.get("CAConfig") or {}
    old = current.get("CAConfig") or {}
    cert, key = str(ca.pop("SigningCACert", "") or ""), str(ca.pop("SigningCAKey", "") or "")
    forced = int(ca.get("ForceRotate") or 0) != int(old.get("ForceRotate") or 0)
    if not forced and not cert:
        return extra
    if bool(cert) != bool(key):
        raise SpecRefused("InvalidArgument", "both a signing CA certificate and its key are needed")
    try:
        out = ClusterCA.rotated(extra, datetime.datetime.now(datetime.UTC),
                                (cert.encode(), key.encode()) if cert else None)
    except ValueError as exc:
        raise SpecRefused("InvalidArgument", f"invalid signing CA: {exc}") from None
    root = out["RootCA"]["CACert"].encode()
    tokens = dict(out.get("JoinTokens") or {})
    for name in ("Worker", "Manager"):
        if tokens.get(name):
            tokens[name] = make_token(root, secret=parse_token(str(tokens[name])).secret)
    out["JoinTokens"] = tokens
    return out
