"""A small synchronous client of the managers' control API.

Used by ``swarmlet status``, ``swarmlet up`` and the tests. Every call opens a channel to one
manager, asks, and closes it: the callers are command-line tools and tests, not hot paths.
Words in the results are Swarm's as ``docker node ls`` prints them (``Ready``, ``Leader`` ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from swarmlet.v1 import control_pb2, control_pb2_grpc

from nodeagent import tls

__all__ = [
    "ControlError",
    "NodeRow",
    "cluster_info",
    "inspect_node",
    "list_nodes",
    "remove_node",
    "update_node",
]

_STATUS = {"ready": "Ready", "down": "Down", "unknown": "Unknown", "disconnected": "Disconnected"}
_AVAILABILITY = {"active": "Active", "pause": "Pause", "drain": "Drain"}
_MANAGER_STATUS = {"leader": "Leader", "reachable": "Reachable", "unreachable": "Unreachable", "": ""}


class ControlError(Exception):
    """A manager refused or could not answer.

    ``str(e)`` is what Docker prints after "Error response from daemon: ", for example Swarm's
    no-leader message.
    """


@dataclass(frozen=True)
class NodeRow:
    """One row of ``docker node ls``, plus the node's address."""

    id: str  #: the node id (25 base-36 characters)
    hostname: str  #: the node's hostname
    role: str  #: "manager" or "worker"
    status: str  #: "Ready", "Down", "Unknown" or "Disconnected"
    availability: str  #: "Active", "Pause" or "Drain"
    manager_status: str  #: "Leader", "Reachable", "Unreachable", or "" for workers
    engine_version: str  #: swarmlet's version string
    addr: str  #: the node's advertised address
    is_self: bool  #: the node of the manager that answered (the ``*`` in ``docker node ls``)
    labels: Mapping[str, str] | None = None  #: the node's Spec.Labels
    version: int = 0  #: the node object's Version.Index


@contextmanager
def _stub(target: str) -> Iterator[control_pb2_grpc.ControlStub]:
    channel = tls.channel(target, sync=True)
    try:
        yield control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()


def _error(exc: grpc.RpcError, target: str) -> ControlError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not details:
        return ControlError(f"cannot reach the manager at {target}")
    if code == grpc.StatusCode.UNAVAILABLE and details and "connect" in details.lower():
        return ControlError(f"cannot reach the manager at {target}: {details}")
    return ControlError(details or f"request to {target} failed ({code})")


def _row(info: control_pb2.NodeInfo) -> NodeRow:
    return NodeRow(
        id=info.id,
        hostname=info.hostname,
        role=info.role,
        status=_STATUS.get(info.status, info.status.capitalize()),
        availability=_AVAILABILITY.get(info.availability, info.availability.capitalize()),
        manager_status=_MANAGER_STATUS.get(info.manager_status, info.manager_status.capitalize()),
        engine_version=info.engine_version,
        addr=info.addr,
        is_self=info.is_self,
        labels=dict(info.labels),
        version=info.version,
    )


def list_nodes(target: str, timeout: float = 3.0) -> list[NodeRow]:
    """The cluster's nodes as the manager at ``target`` ("host:port") sees them.

    Served from that manager's own store, so it answers even without quorum.
    """
    with _stub(target) as stub:
        try:
            reply = stub.ListNodes(control_pb2.ListNodesRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, target) from None
    return [_row(n) for n in reply.nodes]


def cluster_info(target: str, timeout: float = 3.0) -> dict[str, object]:
    """What the manager at ``target`` knows of the cluster and of Raft.

    Keys: cluster_id, node_id, hostname, leader (hostname or None), leader_addr, term, managers,
    quorum (bool), raft_role, commit_index, applied_index, raft_voters, raft_learners.
    """
    with _stub(target) as stub:
        try:
            r = stub.GetClusterInfo(control_pb2.ClusterInfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, target) from None
    return {
        "cluster_id": r.cluster_id,
        "node_id": r.node_id,
        "hostname": r.hostname,
        "leader": r.leader or None,
        "leader_addr": r.leader_addr or None,
        "term": r.term,
        "managers": r.managers,
        "quorum": r.quorum,
        "raft_role": r.raft_role,
        "commit_index": r.commit_index,
        "applied_index": r.applied_index,
        "raft_voters": r.raft_voters,
        "raft_learners": r.raft_learners,
    }


def inspect_node(target: str, node: str, *, local: bool = False, timeout: float = 5.0) -> NodeRow:
    """One node, read linearizably through the leader (or from ``target``'s store if ``local``).

    ``node`` is an id, a unique id prefix or a hostname.
    """
    with _stub(target) as stub:
        try:
            info = stub.InspectNode(control_pb2.InspectNodeRequest(node=node, local=local), timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, target) from None
    return _row(info)


def update_node(
    target: str,
    node: str,
    *,
    labels_add: Mapping[str, str] | None = None,
    labels_rm: Iterable[str] | None = None,
    availability: str | None = None,
    role: str | None = None,
    timeout: float = 5.0,
) -> None:
    """Change a node's spec, as ``docker node update`` does; returns once committed and applied.

    ``node`` is an id, a unique id prefix or a hostname. ``role`` ("manager" or "worker") is
    ``docker node promote`` / ``demote``: the node takes on or drops the manager role shortly
    after this returns. Raises :class:`ControlError` with Swarm's message when the swarm has no
    leader, when the node or the value is not valid, or when a demotion is refused.
    """
    request = control_pb2.UpdateNodeRequest(
        node=node,
        labels_add=dict(labels_add or {}),
        labels_rm=list(labels_rm or ()),
        availability=(availability or "").lower(),
        role=role or "",
    )
    with _stub(target) as stub:
        try:
            stub.UpdateNode(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, target) from None


def remove_node(target: str, node: str, *, force: bool = False, timeout: float = 5.0) -> None:
    """Remove a node from the swarm, as ``docker node rm [--force]`` does.

    Raises :class:`ControlError` with Swarm's message for a manager still in Raft (demote it
    first, even with ``force``), for a node that is not down without ``force``, or for a node
    that does not exist.
    """
    request = control_pb2.RemoveNodeRequest(node=node, force=force)
    with _stub(target) as stub:
        try:
            stub.RemoveNode(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, target) from None
