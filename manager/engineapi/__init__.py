"""The Engine API's cluster routes, answered by managers: ``/swarm``, ``/nodes``, ``/services``, ``/tasks``,
``/networks``, ``/secrets``, ``/configs``.

The node agent serves the Engine API on every node (nodeagent/engineapi/); a manager attaches
these routes to it at start (:func:`install`, called by the manager runtime), and also serves
on its cluster port the gRPC method through which followers hand writes to the leader
(manager/engineapi/writes.py). Reads are local to the answering manager; see docs/engineapi.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
from swarmlet.v1 import control_pb2, control_pb2_grpc

from manager.controlapi.server import gone_managers
from manager.engineapi.base import ManagerView, api_error, control_error
from manager.engineapi.configs import ConfigRoutes
from manager.engineapi.logs import AgentLogSource, LogLine, NoLogSource, TaskLogSource
from manager.engineapi.networks import NetworkRoutes
from manager.engineapi.nodes import NodeRoutes
from manager.engineapi.render import HostFacts, cluster_to_api, node_to_api
from manager.engineapi.secrets import SecretRoutes
from manager.engineapi.services import ServiceRoutes
from manager.engineapi.swarm import SwarmRoutes, manager_stats, manager_swarm_info
from manager.engineapi.tasks import TaskRoutes
from manager.engineapi.writes import LeaderWrites, propose_watching_leadership, write_handler
from manager.state.store import Op, Store, StoredObject
from nodeagent import tls
from nodeagent.engineapi import Route, SwarmInfo
from nodeagent.transport.planes import FaultGate

_GONE_FRESH_S = 0.01
"""How long one answer of :meth:`RuntimeManager.unreachable` serves (seconds, before the time
scale): a tenth of Raft's heartbeat interval, far below the election timeout it measures."""

__all__ = [
    "HostFacts",
    "LogLine",
    "ManagerEngineApi",
    "ManagerView",
    "RuntimeManager",
    "TaskLogSource",
    "api_error",
    "cluster_to_api",
    "install",
    "node_to_api",
]


class ManagerEngineApi:
    """The cluster routes of one manager: a ``ClusterApi`` for the node's Engine API server."""

    def __init__(self, manager: ManagerView, logs: TaskLogSource | None = None) -> None:
        """Answer every cluster route from ``manager``; task logs from ``logs`` (none yet: errors)."""
        self.manager = manager
        source = logs if logs is not None else NoLogSource()
        self._routes: list[Route] = [
            *SwarmRoutes(manager).routes(),
            *NodeRoutes(manager).routes(),
            *ServiceRoutes(manager, source).routes(),
            *TaskRoutes(manager, source).routes(),
            *NetworkRoutes(manager).routes(),
            *SecretRoutes(manager).routes(),
            *ConfigRoutes(manager).routes(),
        ]

    def routes(self) -> list[Route]:
        """(method, path, handler) of every cluster route served."""
        return list(self._routes)

    def swarm_info(self, base: SwarmInfo) -> SwarmInfo:
        """/info's Swarm section as this manager sees it."""
        return manager_swarm_info(self.manager, base)

    def manager_stats(self) -> tuple[bool, int, int] | None:
        """The managers' reachability, for ``swarm leave`` without ``--force``."""
        return manager_stats(self.manager)


class RuntimeManager:
    """The manager runtime (manager/runtime.py) seen as a :class:`ManagerView`."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` gives ``store``, ``shell``, ``node_id``, ``time_scale``, ``cluster()``, ``write``."""
        self.runtime = runtime
        scale = float(getattr(runtime, "time_scale", 1.0) or 1.0)
        self.writes = LeaderWrites(self._propose, runtime.store, timeout=5.0 * scale, settle=0.8 * scale,
                                   faults=FaultGate(getattr(runtime, "faults", None), "control"),
                                   leadership=lambda: runtime.shell)
        self._host = HostFacts()
        self._scale = scale
        self._gone: tuple[float, Any, frozenset[str]] | None = None

    async def _propose(self, ops: Sequence[Op]) -> Any:
        shell = self.runtime.shell
        return await propose_watching_leadership(self._write, ops, shell, self._stored_leader_is_self)

    async def _write(self, ops: Sequence[Op]) -> Any:
        return await self.runtime.write(ops, timeout=self.writes.timeout)

    def _stored_leader_is_self(self) -> bool:
        """Whether this manager's own Node object says it leads (the flag lags a failover)."""
        node = self.runtime.store.get("node", self.node_id)
        status = node.extra.get("ManagerStatus") if node is not None else None
        return isinstance(status, dict) and bool(status.get("Leader"))

    @property
    def store(self) -> Store:
        """The runtime's store."""
        store: Store = self.runtime.store
        return store

    @property
    def node_id(self) -> str:
        """This manager's node id."""
        return str(self.runtime.node_id)

    @property
    def host(self) -> HostFacts:
        """The machine's facts."""
        return self._host

    def leader_id(self) -> str:
        """The leader Raft knows of now, "" when none."""
        shell = self.runtime.shell
        return str(shell.leader_id or "") if shell is not None else ""

    def unreachable(self) -> frozenset[str]:
        """The Raft members not heard from within an election timeout, on a leader or a manager
        that knows no leader (manager.controlapi.server.gone_managers).

        Worked out at most once per :data:`_GONE_FRESH_S` (a tenth of Raft's heartbeat): requests
        that come together (``GET /nodes`` from many clients) share one answer."""
        now = time.monotonic()
        shell = self.runtime.shell
        if self._gone is not None and now < self._gone[0] and self._gone[1] is shell:
            return self._gone[2]
        gone = frozenset(gone_managers(shell, self.node_id))
        self._gone = (now + _GONE_FRESH_S * self._scale, shell, gone)
        return gone

    def cluster(self) -> StoredObject | None:
        """The Cluster object, if written yet."""
        found: StoredObject | None = self.runtime.cluster()
        return found

    async def write(self, ops: Sequence[Op]) -> None:
        """Commit through the leader (see manager/engineapi/writes.py)."""
        await self.writes.write(ops)

    async def change_role(self, node_id: str, role: str) -> None:
        """Ask this manager's control API (which forwards to the leader) to change the role."""
        request = control_pb2.UpdateNodeRequest(node=node_id, role=role)
        await self._control("UpdateNode", request)

    async def remove_node(self, node_id: str, force: bool) -> None:
        """Ask this manager's control API (which forwards to the leader) to remove the node."""
        await self._control("RemoveNode", control_pb2.RemoveNodeRequest(node=node_id, force=force))

    async def _control(self, method: str, request: Any) -> None:
        target = str(self.runtime.cluster_address)
        async with tls.channel(target) as channel:
            stub = control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
            try:
                await getattr(stub, method)(request, timeout=10.0 * self.writes.timeout / 5.0)
            except grpc.aio.AioRpcError as exc:
                raise control_error(exc.code(), exc.details() or "") from None

    def write_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The leader's side of forwarded writes, for the cluster port's gRPC server."""
        return write_handler(self._propose, self.runtime.store)


def install(runtime: Any, grpc_server: grpc.aio.Server) -> ManagerEngineApi:
    """Serve forwarded writes on ``grpc_server`` and attach the cluster routes to the node's Engine API.

    The node's Engine API server comes in the role's context (``context.engine_api``); a
    manager run without one (``python -m manager.runtime``) only serves the forwarded writes.
    """
    view = RuntimeManager(runtime)
    grpc_server.add_generic_rpc_handlers((view.write_handler(),))
    api = ManagerEngineApi(view, AgentLogSource(runtime.context.gossip))
    engine = getattr(runtime.context, "engine_api", None)
    if engine is not None:
        engine.attach(api)
    return api
