"""``GET /swarm`` and the manager's part of ``/info`` (Swarm: Nodes, Managers, Cluster...)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from manager.engineapi.base import ManagerView, guarded
from manager.engineapi.render import cluster_to_api
from nodeagent.engineapi import NOT_IN_SWARM, ApiError, Route, SwarmInfo, json_response

__all__ = ["SwarmRoutes", "manager_swarm_info"]


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


class SwarmRoutes:
    """The handlers of ``/swarm`` for one manager."""

    def __init__(self, manager: ManagerView) -> None:
        """Answer from ``manager``'s store."""
        self.manager = manager

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [("GET", "/swarm", guarded(self.inspect))]

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /swarm``: the cluster object with its join tokens (api/swarm.json's shape)."""
        cluster = self.manager.cluster()
        if cluster is None:
            # The bootstrap manager has not written the cluster yet: no swarm to show.
            raise ApiError.unavailable(NOT_IN_SWARM)
        return json_response(cluster_to_api(cluster, join_tokens=True))
