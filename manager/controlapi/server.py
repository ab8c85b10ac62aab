"""The control API service: node listing and cluster info from the local store, writes via Raft.

Reads that ``docker node ls`` makes come from the answering manager's own store, so they work
without quorum. ``InspectNode`` is linearizable by default: the leader confirms its leadership
(ReadIndex) and waits until it has applied everything committed before answering; a follower
forwards it. Writes go to the leader: a follower forwards them once. A request that found no
leader (none known, or the one known refused the connection or answered that it no longer
leads, before proposing) is tried again once one is known, until the request's deadline, as
swarmkit's LeaderConn waits (:mod:`manager.state.raft.leaderwait`); a manager that has known no
leader for several election timeouts fails it at once with Swarm's message. Errors carry, as
their details, what Docker prints after "Error response from daemon: ".
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from swarmlet.v1 import control_pb2, control_pb2_grpc

from manager.ca.removed import removal_expiry, with_removed
from manager.dispatcher.roles import (
    DEMOTE_LAST_MANAGER_MESSAGE,
    Refusal,
    active_peers,
    demote_refusal,
    remove_refusal,
)
from manager.orchestrator.common import orphan_tasks
from manager.state.raft.leaderwait import Unsent, retry_unsent
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError, ProposalDropped
from manager.state.store.commands import Delete, Op, Update
from manager.state.store.errors import StoreError, UpdateOutOfSequence
from nodeagent import tls
from nodeagent.transport.planes import FaultGate, LinkPartitioned

__all__ = [
    "AVAILABILITIES",
    "DEMOTE_LAST_MANAGER_MESSAGE",
    "ControlServer",
    "find_node",
    "node_info",
    "recently_heard",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

AVAILABILITIES = ("active", "pause", "drain")
"""A node's Spec.Availability values, as Swarm spells them."""

_WAIT_SHARE = 0.75
"""The share of a request's remaining time that may go to waiting for a leader; the rest is left
for the attempt that follows."""

_CODES = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.ALREADY_EXISTS,
    "out_of_sequence": grpc.StatusCode.ABORTED,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
}


def find_node(store: Any, ref: str) -> Any:
    """The node whose id, hostname or unique id prefix is ``ref``, as ``docker node`` resolves it.

    Raises NotFound ("node X not found") or Ambiguous, in Swarm's words.
    """
    return store.lookup("node", ref)


def _hostname(node: Any) -> str:
    desc = node.extra.get("Description") or {}
    return str(desc.get("Hostname") or "")


def node_info(
    node: Any, self_id: str, leader_id: str | None = None, unreachable: bool = False
) -> control_pb2.NodeInfo:
    """A Node object as the control API's NodeInfo.

    ``leader_id`` is the leader as the answering manager sees it now; when given, it decides which
    manager shows "leader", since the stored flag lags a failover (and no one else writes it
    while there is no leader). ``unreachable``: the answering manager's Raft sees this manager
    gone now (:func:`gone_managers`), which the stored reachability may not say yet.
    """
    desc = node.extra.get("Description") or {}
    engine = desc.get("Engine") or {}
    ms = node.extra.get("ManagerStatus")
    manager_status = ""
    # A demoted manager's ManagerStatus goes with its Raft membership, a moment later; its
    # MANAGER STATUS column is empty from the demotion on, as in Swarm.
    if isinstance(ms, dict) and node.spec.get("Role") == "manager":
        leads = bool(ms.get("Leader")) if leader_id is None else node.id == leader_id
        reachability = str(ms.get("Reachability") or "unknown")
        if reachability == "leader":
            reachability = "reachable"
        manager_status = "leader" if leads else ("unreachable" if unreachable else reachability)
    return control_pb2.NodeInfo(
        id=node.id,
        hostname=str(desc.get("Hostname") or ""),
        role=str(node.spec.get("Role") or "worker"),
        status=str(node.status.get("State") or "unknown"),
        availability=str(node.spec.get("Availability") or "active"),
        manager_status=manager_status,
        engine_version=str(engine.get("EngineVersion") or ""),
        addr=str(node.status.get("Addr") or ""),
        is_self=node.id == self_id,
        labels={str(k): str(v) for k, v in (node.spec.get("Labels") or {}).items()},
        version=int(node.version),
        status_message=str(node.status.get("Message") or ""),
    )


def recently_heard(shell: Any) -> set[str]:
    """The managers the Raft shell heard from within an election timeout (the leader's view)."""
    contacts = dict(getattr(shell, "last_contact", None) or {})
    return active_peers(contacts, time.monotonic(), float(shell.election_seconds()))


def gone_managers(shell: Any, self_id: str) -> set[str]:
    """The Raft members this manager has not heard from within an election timeout, when it leads
    (every live member answers its heartbeats) or knows no leader (a leader that lost its quorum
    and stepped down, or a follower left alone: live members' campaigns reach it). A follower
    of a leader hears from the leader only: none then."""
    if shell is None or (not shell.is_leader and shell.leader_id):
        return set()
    try:
        conf = shell.node.conf
    except (AssertionError, AttributeError):  # asked before Raft started (the Engine API serves first)
        return set()
    return (set(conf.voters) | set(conf.learners)) - {self_id} - recently_heard(shell)


class ControlServer(control_pb2_grpc.ControlServicer):
    """The Control service of one manager."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` gives the store, the Raft shell, this node's id and ``write``."""
        self.runtime = runtime
        # Role changes are checked and written one at a time, so that two demotions at once
        # cannot both pass the checks ("the last manager", quorum) that either alone would.
        self._role_lock = asyncio.Lock()

    # ------------------------------------------------------------------ reads

    async def ListNodes(
        self, request: control_pb2.ListNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.ListNodesResponse:
        """Every node, from this manager's store."""
        nodes = sorted(self.runtime.store.find("node"), key=lambda n: (_hostname(n), n.id))
        leader = self.runtime.shell.leader_id
        gone = gone_managers(self.runtime.shell, self.runtime.node_id)
        rows = [node_info(n, self.runtime.node_id, leader, n.id in gone) for n in nodes]
        return control_pb2.ListNodesResponse(nodes=rows)

    async def GetClusterInfo(
        self, request: control_pb2.ClusterInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.ClusterInfoResponse:
        """This manager's view: cluster id, leader, term, quorum."""
        shell = self.runtime.shell
        cluster = self.runtime.cluster()
        leader_id = shell.leader_id
        leader_name = ""
        managers = 0
        for node in self.runtime.store.find("node"):
            if node.spec.get("Role") == "manager":
                managers += 1
            if node.id == leader_id:
                leader_name = _hostname(node)
        if leader_id and not leader_name and leader_id == self.runtime.node_id:
            leader_name = self.runtime.hostname
        node = shell.node
        return control_pb2.ClusterInfoResponse(
            cluster_id=cluster.id if cluster is not None else "",
            node_id=self.runtime.node_id,
            hostname=self.runtime.hostname,
            leader=leader_name or (leader_id or ""),
            term=int(node.term),
            managers=managers,
            quorum=bool(leader_id),
            raft_role=shell.role(),
            leader_addr=shell.leader_address,
            commit_index=int(node.commit),
            applied_index=int(shell.applied),
            raft_voters=len(node.conf.voters),
            raft_learners=len(node.conf.learners),
        )

    async def InspectNode(
        self, request: control_pb2.InspectNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.NodeInfo:
        """One node; linearizable unless ``local`` is set."""
        if not request.local:

            async def barrier() -> control_pb2.NodeInfo | None:
                try:
                    await self.runtime.shell.read_barrier(timeout=3.0 * self.runtime.time_scale)
                except NotLeaderError as exc:
                    if not exc.leader_addr:
                        raise Unsent(NoLeaderError()) from None
                    info: control_pb2.NodeInfo = await self._forward(
                        exc.leader_addr, "InspectNode", request, context
                    )
                    return info
                except NoLeaderError:
                    raise Unsent(NoLeaderError()) from None
                except (TimeoutError, ProposalDropped):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER_MESSAGE)
                return None

            forwarded = await self._with_leader(barrier, context)
            if forwarded is not None:
                return forwarded
        try:
            node = find_node(self.runtime.store, request.node)
        except StoreError as exc:
            await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))
            raise AssertionError("unreachable") from None
        return node_info(node, self.runtime.node_id, self.runtime.shell.leader_id)

    # ------------------------------------------------------------------ writes

    async def UpdateNode(
        self, request: control_pb2.UpdateNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.UpdateNodeResponse:
        """Change a node's Spec (labels, availability, role); returns once committed and applied.

        This is the one entry point for role changes (``docker node promote`` / ``demote``):
        only Spec.Role is written here; the leader's dispatcher then changes Raft's membership
        and tells the node which role to run (:mod:`manager.dispatcher.roles`). A role change is
        decided by the leader, which knows Raft's configuration: a follower forwards it. A
        demotion is refused, in Swarm's words, for the last manager, a manager not in Raft yet,
        or one whose removal would leave no reachable majority; nothing is written then.
        """
        def attempt() -> Awaitable[control_pb2.UpdateNodeResponse]:
            return self._update_node(request, context)

        if request.role:
            async with self._role_lock:
                return await self._with_leader(attempt, context, wait=not request.forwarded)
        return await self._with_leader(attempt, context, wait=not request.forwarded)

    async def _update_node(
        self, request: control_pb2.UpdateNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.UpdateNodeResponse:
        availability = request.availability.lower()
        if availability and availability not in AVAILABILITIES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid availability {request.availability!r}: want one of active, pause, drain",
            )
        if request.role and request.role not in ("manager", "worker"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid role {request.role!r}")
        for key in list(request.labels_add) + list(request.labels_rm):
            if not key:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid label '': empty key")
        # Read-modify-write under the store's version check; a concurrent writer makes the
        # proposal fail with "update out of sequence", and then we read again.
        for _attempt in range(5):
            try:
                node = find_node(self.runtime.store, request.node)
            except StoreError as exc:
                shell = self.runtime.shell
                if not shell.is_leader and shell.leader_address and not request.forwarded:
                    # A follower may not have applied the node yet: let the leader decide.
                    return await self._forward_write(request, context)
                await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))
                raise AssertionError("unreachable") from None
            role_changes = bool(request.role) and request.role != str(node.spec.get("Role") or "worker")
            if role_changes and not self.runtime.shell.is_leader:
                if request.forwarded or not self.runtime.shell.leader_address:
                    raise Unsent(NoLeaderError())
                return await self._forward_write(request, context)
            refusal = self._role_change_refusal(node, request.role) if role_changes else None
            if refusal is not None:
                await context.abort(getattr(grpc.StatusCode, refusal.code), refusal.message)
            spec = copy.deepcopy(node.spec)
            if role_changes:
                spec["Role"] = request.role
                verb = "promoting" if request.role == "manager" else "demoting"
                log.info("control: %s %s (%s)", verb, _hostname(node) or node.id, node.id)
            labels = dict(spec.get("Labels") or {})
            labels.update(dict(request.labels_add))
            for key in request.labels_rm:
                labels.pop(key, None)
            spec["Labels"] = labels
            if availability:
                spec["Availability"] = availability
            try:
                await self.runtime.write(
                    [Update("node", node.id, node.version, spec=spec)], timeout=5.0 * self.runtime.time_scale
                )
            except UpdateOutOfSequence:
                continue
            except NotLeaderError as exc:
                if request.forwarded or not exc.leader_addr:
                    raise Unsent(NoLeaderError()) from None
                return await self._forward_write(request, context)
            except NoLeaderError:  # the shell waited for a leader in vain, before proposing
                raise Unsent(NoLeaderError()) from None
            except ProposalDropped as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{NO_LEADER_MESSAGE} ({exc})")
            except ConnectionAbortedError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except TimeoutError:
                # Indeterminate: the write may still commit. Say so rather than guess.
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "context deadline exceeded: the update may or may not apply",
                )
            except StoreError as exc:
                await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))
            try:
                version = int(self.runtime.store.get("node", node.id).version)
            except StoreError:
                version = 0
            return control_pb2.UpdateNodeResponse(version=version)
        await context.abort(grpc.StatusCode.ABORTED, "update out of sequence")
        raise AssertionError("unreachable")

    def _role_change_refusal(self, node: Any, role: str) -> Refusal | None:
        """Why this role change cannot be made now (the leader's view), or None."""
        if role != "worker":
            return None  # a promotion is always accepted, as in swarmkit
        shell = self.runtime.shell
        conf = shell.node.conf
        found = self.runtime.store.find("node", filters=lambda n: n.spec.get("Role") == "manager")
        managers = [n.id for n in found]
        return demote_refusal(
            node.id, managers=managers, voters=conf.voters, learners=conf.learners,
            self_id=self.runtime.node_id, active=recently_heard(shell),
        )  # fmt: skip

    async def RemoveNode(
        self, request: control_pb2.RemoveNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.RemoveNodeResponse:
        """Remove a node (``docker node rm``); the leader decides, with Raft's membership at hand.

        A manager still in Raft is refused in Swarm's words, with or without force; a node that
        is not down only goes with ``force``. Its agent session then ends ("node not found").
        """

        def attempt() -> Awaitable[control_pb2.RemoveNodeResponse]:
            return self._remove_node(request, context)

        return await self._with_leader(attempt, context, wait=not request.forwarded)

    async def _remove_node(
        self, request: control_pb2.RemoveNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.RemoveNodeResponse:
        shell = self.runtime.shell
        if not shell.is_leader:
            if request.forwarded or not shell.leader_address:
                raise Unsent(NoLeaderError())
            forwarded = control_pb2.RemoveNodeRequest()
            forwarded.CopyFrom(request)
            forwarded.forwarded = True
            result: control_pb2.RemoveNodeResponse = await self._forward(
                shell.leader_address, "RemoveNode", forwarded, context
            )
            return result
        try:
            node = find_node(self.runtime.store, request.node)
        except StoreError as exc:
            await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))
            raise AssertionError("unreachable") from None
        conf = shell.node.conf
        refusal = remove_refusal(
            node.id,
            role=str(node.spec.get("Role") or "worker"),
            members=(*conf.voters, *conf.learners),
            state=str(node.status.get("State") or ""),
            force=request.force,
        )
        if refusal is not None:
            await context.abort(getattr(grpc.StatusCode, refusal.code), refusal.message)
        try:
            await self._remove(node)
        except (NotLeaderError, NoLeaderError):  # refused before proposing
            raise Unsent(NoLeaderError()) from None
        except ProposalDropped as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{NO_LEADER_MESSAGE} ({exc})")
        except ConnectionAbortedError as exc:  # the manager stopped mid-write: indeterminate
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except TimeoutError:
            indeterminate = "context deadline exceeded: the removal may or may not apply"
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, indeterminate)
        except StoreError as exc:
            await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))
        log.info("control: removed node %s (%s)", _hostname(node) or node.id, node.id)
        return control_pb2.RemoveNodeResponse()

    async def _remove(self, node: Any) -> None:
        """Delete the Node and, in the same write, list it in the Cluster object as removed, so
        that every manager refuses its certificate from then on (manager/ca/removed.py), and
        orphan its tasks that had not stopped (swarmkit's orphanNodeTasks)."""
        for attempt in range(3):
            now = datetime.datetime.now(datetime.UTC)
            tasks = self.runtime.store.find("task", node_id=node.id)
            ops: list[Op] = [*orphan_tasks(tasks, now.timestamp()), Delete("node", node.id, node.version)]
            cluster = self.runtime.cluster()
            if cluster is not None:
                expiry = removal_expiry(node.extra, now, self.runtime.ca.expiry())
                extra = with_removed(cluster.extra, node.id, expiry, now)
                ops.append(Update("cluster", cluster.id, cluster.version, extra=extra))
            try:
                await self.runtime.write(ops, timeout=5.0 * self.runtime.time_scale)
                return
            except UpdateOutOfSequence:
                # The Cluster object or a task was written meanwhile (a rotation step, swarm
                # update, a task's status): the batch changed nothing; read them all again.
                if attempt == 2:
                    raise
                node = find_node(self.runtime.store, node.id)

    async def _with_leader(
        self, attempt: Callable[[], Awaitable[T]], context: grpc.aio.ServicerContext[Any, Any],
        wait: bool = True,
    ) -> T:
        """``attempt()``, tried again while it finds no leader and one may yet be known
        (:func:`manager.state.raft.leaderwait.retry_unsent`); then Swarm's no-leader answer.
        ``wait`` is False for a request another manager forwarded here: that one waits."""
        remaining = context.time_remaining()
        budget = 5.0 * self.runtime.time_scale if remaining is None else _WAIT_SHARE * remaining
        leadership = self.runtime.shell if wait else None
        try:
            return await retry_unsent(attempt, leadership, time.monotonic() + budget)
        except NoLeaderError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER_MESSAGE)
            raise AssertionError("unreachable") from None

    async def _forward_write(
        self, request: control_pb2.UpdateNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> control_pb2.UpdateNodeResponse:
        forwarded = control_pb2.UpdateNodeRequest()
        forwarded.CopyFrom(request)
        forwarded.forwarded = True
        result: control_pb2.UpdateNodeResponse = await self._forward(
            self.runtime.shell.leader_address, "UpdateNode", forwarded, context
        )
        return result

    async def _forward(
        self, leader_addr: str, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Ask the leader the same question and relay its answer (or its error) unchanged.

        Raises :class:`Unsent` when the leader surely never saw the request: its link is cut,
        its channel never became ready, it refused the connection, or it answered that it no
        longer leads (Swarm's no-leader words alone, which it gives only before proposing).
        """
        remaining = context.time_remaining()
        timeout = 5.0 if remaining is None else max(0.1, remaining - 0.05)
        gate = FaultGate(getattr(self.runtime, "faults", None), "control")
        try:
            await gate.call(leader_addr, min(timeout, self.runtime.shell.election_seconds()))
        except LinkPartitioned:  # injected (swarmlet chaos): as unreachable as a gone host
            raise Unsent(NoLeaderError()) from None
        async with tls.channel(leader_addr) as channel:
            # A leader this manager cannot reach within an election timeout is as good as none
            # (this manager will stop believing in it by then); the request never left, so
            # saying so is exact. This also bounds the wait for a host that is gone.
            try:
                await asyncio.wait_for(
                    channel.channel_ready(), min(timeout, self.runtime.shell.election_seconds())
                )
            except (TimeoutError, grpc.aio.AioRpcError):
                raise Unsent(NoLeaderError()) from None
            stub = control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
            try:
                return await asyncio.wait_for(getattr(stub, method)(request), timeout)
            except grpc.aio.AioRpcError as exc:
                # A refused connection, or the leader's own no-leader answer, means it never
                # proposed the request; anything else is relayed as it came.
                details = exc.details() or ""
                if exc.code() == grpc.StatusCode.UNAVAILABLE and (
                    "failed to connect" in details or details == NO_LEADER_MESSAGE
                ):
                    raise Unsent(NoLeaderError()) from None
                await context.abort(exc.code(), details)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
        raise AssertionError("unreachable")
