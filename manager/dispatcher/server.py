"""The dispatcher: joins, agent sessions and heartbeats, and the Node objects they keep true.

Every node, managers included, joins once with a token and then keeps a session: a gRPC stream of
heartbeats to the leader. The leader alone writes what it observes:

* Join: the token's secret must be the Cluster object's worker or manager token; the role it
  grants is the node's role. A new Node object is created (or the existing one refreshed on a
  rejoin). A joining manager is added to Raft as a learner and promoted to voter once its log
  has caught up with the leader's, so a slow joiner never counts towards a quorum it cannot serve.
* Heartbeats: the servicer only records them, in memory on the leader; the liveness component
  (:mod:`manager.dispatcher.liveness`, run by a :class:`manager.component.ManagerHarness`) marks
  a node ``ready`` when it beats and ``down`` once it has been silent for the Cluster spec's
  HeartbeatPeriod times the grace multiplier, or gossip declares it dead. The period agents are
  told is the same spec value.
* ManagerStatus: ``Leader`` on the leader's own node; ``reachable``/``unreachable`` for the other
  managers as the leader sees them (a Raft message within an election timeout, or a heartbeat);
  the liveness component writes it too.
* Raft membership follows Spec.Role (:mod:`manager.dispatcher.roles`): managers are added as
  learners and promoted once caught up; demoted ones are removed, one change at a time and only
  while a reachable majority remains; a demoted leader hands its leadership over first. The
  leader looks whenever a Node object changes (a store watch) and every ``MONITOR_EVERY`` seconds.
  Each heartbeat answer tells the node which role to run, so a promoted worker starts its
  manager role and a demoted manager drops it once Raft has let it go.

A manager that is not the leader answers Join and Session with the leader's address, so agents
reconnect there; with no leader at all it says so in Swarm's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import prometheus_client
from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from manager.allocator.networks import find_ingress, network_to_swarm
from manager.ca.authority import CertificateRefused
from manager.ca.removed import CERT_EXPIRY_FIELD, certificate_expiry
from manager.ca.service import PRESENTED_ISSUER_FIELD, tls_info
from manager.ca.tokens import InvalidToken, parse_token
from manager.component import ComponentMetrics, ManagerHarness, StoreView
from manager.dispatcher.liveness import DEFAULT_HEARTBEAT_PERIOD, NodeLiveness
from manager.dispatcher.roles import MembershipStep, active_peers, plan_membership, session_role
from manager.state.raft.core import NotLeader
from manager.state.raft.messages import ConfChange, ConfChangeType
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError
from manager.state.store.commands import Create, Op, Update
from manager.state.store.errors import StoreError
from nodeagent.agent.session import STILL_CREATING
from nodeagent.identity import is_id, new_id
from nodeagent.transport.planes import FaultGate

__all__ = ["JOIN_REFUSED_MESSAGE", "Dispatcher"]

log = logging.getLogger(__name__)

JOIN_REFUSED_MESSAGE = "A valid join token is necessary to join this cluster"
"""Swarm's words for a join token that is well formed but not this cluster's."""

HEARTBEAT_PERIOD = DEFAULT_HEARTBEAT_PERIOD
"""Seconds between an agent's heartbeats before the Cluster spec says (before the time scale);
the bootstrap manager writes it, scaled, into Spec.Dispatcher.HeartbeatPeriod."""
MONITOR_EVERY = 0.2
"""Seconds between the leader's looks at Raft membership (before the time scale)."""


class Dispatcher(dispatcher_pb2_grpc.DispatcherServicer):
    """Serves Join and Session, and on the leader keeps Node status and ManagerStatus current."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` is the ManagerRuntime: its shell, store, tokens and ``write``."""
        self.runtime = runtime
        scale = runtime.time_scale
        self.default_period = HEARTBEAT_PERIOD * scale
        self.monitor_every = MONITOR_EVERY * scale
        self.clock = time.monotonic  # the liveness harness's clock; heartbeats are stamped with it
        # Injected link faults: a beat from a node behind a partitioned link never arrived.
        self.faults = FaultGate(getattr(runtime, "faults", None), "dispatcher")
        self._join_lock = asyncio.Lock()
        self._membership_wake = asyncio.Event()
        self._transferring_to = ""
        registry = getattr(runtime.context, "registry", None)
        if registry is None:
            registry = prometheus_client.CollectorRegistry()
        self._nodes_gauge = prometheus_client.Gauge(
            "swarmlet_dispatcher_nodes", "Nodes by Status.State, as this manager's store has them", ["state"],
            registry=registry,
        )  # fmt: skip
        self._heartbeats = prometheus_client.Counter(
            "swarmlet_dispatcher_heartbeats",
            "Heartbeats this manager answered as the leader",
            registry=registry,
        )
        self._joins = prometheus_client.Counter(
            "swarmlet_dispatcher_joins", "Join requests by outcome", ["outcome"], registry=registry
        )
        self.liveness = NodeLiveness(
            runtime.node_id,
            default_period=self.default_period,
            contacts=self._contacts,
            reach_window=self._reach_window(),
        )
        metrics = getattr(runtime, "component_metrics", None)
        self.harness = ManagerHarness(
            self.liveness,
            runtime.store,
            lambda ops: runtime.write(ops, timeout=2.0 * scale),
            is_leader=self._is_leader,
            clock=self.clock,
            check_every=0.1 * scale,
            retry_after=0.1 * scale,
            metrics=metrics if isinstance(metrics, ComponentMetrics) else None,
        )
        gossip = getattr(runtime.context, "gossip", None)
        if gossip is not None and hasattr(gossip, "subscribe"):
            try:
                gossip.subscribe(self._on_gossip)
            except Exception:  # gossip is an optimisation here; heartbeats alone still work
                log.exception("dispatcher: cannot subscribe to gossip")

    # ------------------------------------------------------------------ helpers

    @property
    def shell(self) -> Any:
        return self.runtime.shell

    def _is_leader(self) -> bool:
        shell = self.shell
        return shell is not None and bool(shell.is_leader)

    def _contacts(self) -> dict[str, float]:
        shell = self.shell
        return dict(getattr(shell, "last_contact", {}) or {}) if shell is not None else {}

    def _reach_window(self) -> float:
        shell = self.shell
        if shell is None or not hasattr(shell, "election_seconds"):
            return 0.8 * float(self.runtime.time_scale)
        return float(shell.election_seconds())

    def period(self) -> float:
        """The heartbeat period in force (seconds): the Cluster spec's, as agents are told."""
        return self.liveness.period(StoreView(self.runtime.store))

    def _managers(self) -> list[str]:
        addrs = self.shell.addresses()
        leader = self.shell.leader_address
        out = [leader] if leader else []
        voters = set(addrs)
        for node in self.runtime.store.find("node"):
            ms = node.extra.get("ManagerStatus")
            if isinstance(ms, dict) and ms.get("Addr"):
                voters.add(node.id)
                addrs.setdefault(node.id, str(ms["Addr"]))
        out.extend(a for _, a in sorted(addrs.items()) if a and a not in out)
        return out

    def _lookup(self, node_id: str) -> Any:
        try:
            return self.runtime.store.get("node", node_id)
        except StoreError:
            return None

    def _ingress(self) -> bytes:
        """The ingress network as every node's session carries it (the routing mesh joins it)."""
        try:
            network = find_ingress(self.runtime.store.find("network"))
        except StoreError:
            return b""
        return json.dumps(network_to_swarm(network), separators=(",", ":")).encode() if network else b""

    async def _redirect(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The leader's address if this manager is a follower; aborts without a leader."""
        try:
            await self.shell._await_leader()
        except NoLeaderError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER_MESSAGE)
        if self.shell.is_leader:
            return ""
        return str(self.shell.leader_address)

    def _on_gossip(self, event: Any) -> None:
        member = getattr(event, "member", event)
        state = str(getattr(getattr(member, "state", ""), "name", getattr(member, "state", ""))).lower()
        name = str(getattr(member, "node_id", "") or getattr(member, "name", ""))
        if not name:
            return
        if state in ("dead", "left"):
            self.liveness.gossip_state(name, dead=True)
        elif state == "alive":
            self.liveness.gossip_state(name, dead=False)

    # ------------------------------------------------------------------ Join

    async def Join(
        self, request: dispatcher_pb2.JoinRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dispatcher_pb2.JoinResponse:
        """Check the token, then register the node (and add a manager to Raft)."""
        try:
            token = parse_token(request.token)
        except InvalidToken as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        if not request.hostname:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a join needs a hostname")
        if request.node_id and not is_id(request.node_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a node ID is 25 base-36 characters")
        leader_addr = await self._redirect(context)
        if leader_addr:
            return dispatcher_pb2.JoinResponse(leader_addr=leader_addr, managers=self._managers())
        cluster = self.runtime.cluster()
        if cluster is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{STILL_CREATING}; try again")
        tokens = cluster.extra.get("JoinTokens") or {}
        role = ""
        for name, key in (("manager", "Manager"), ("worker", "Worker")):
            mine = str(tokens.get(key) or "")
            if mine and mine.strip() == str(token):
                role = name
        if not role:
            log.info("dispatcher: refused %s (%s): wrong join token", request.hostname, request.node_id)
            self._joins.labels("refused").inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, JOIN_REFUSED_MESSAGE)
        if role == "manager" and request.role != "manager":
            # Only a node started as a manager runs Raft; a worker process with the manager
            # token joins as a worker rather than as a manager that could never vote.
            role = "worker"
        # The CA names the node, as swarmkit's does: a node that joins with no ID (one started with
        # --join) gets a fresh random one here, on the leader. A blank engine's `docker swarm join`
        # sends the ID its running agent already answers to (docs/security.md).
        node_id = request.node_id or new_id()
        certificate = roots = b""
        if request.csr:
            # The certificate names that node ID, the role the token granted and this cluster:
            # never the CSR's words.
            try:
                certificate, roots = self.runtime.ca.issue(bytes(request.csr), node_id=node_id, role=role)
            except CertificateRefused as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self._join_lock:
            try:
                await self._register(request, role, tls_info(certificate, roots) if certificate else None,
                                     certificate_expiry(certificate) if certificate else "", node_id=node_id)
            except (NotLeaderError, NoLeaderError):
                await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER_MESSAGE)
            except StoreError as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        self.liveness.heartbeat(
            node_id, self.clock(), request.addr, request.cluster_addr if role == "manager" else ""
        )
        self._joins.labels(role).inc()
        log.info("dispatcher: %s joined as %s %s", request.hostname, role, node_id)
        return dispatcher_pb2.JoinResponse(cluster_id=cluster.id, role=role, managers=self._managers(),
                                           certificate=certificate, root_ca=roots, node_id=node_id)

    async def _register(self, request: dispatcher_pb2.JoinRequest, role: str,
                        tls: dict[str, str] | None = None, cert_expiry: str = "", *, node_id: str) -> None:
        existing = self._lookup(node_id)
        description: dict[str, Any] = {"Hostname": request.hostname,
                                       "Engine": {"EngineVersion": request.engine_version}}
        if request.architecture:
            description["Platform"] = {"Architecture": request.architecture, "OS": request.os or "linux"}
        if request.nano_cpus or request.memory_bytes:
            description["Resources"] = {"NanoCPUs": request.nano_cpus, "MemoryBytes": request.memory_bytes}
        if tls is not None:
            description["TLSInfo"] = tls
        status = {"State": "ready", "Message": "", "Addr": request.addr}
        extra: dict[str, Any] = {"Description": description}
        if cert_expiry:
            extra[CERT_EXPIRY_FIELD] = cert_expiry  # how long a removal must be remembered
        if role == "manager":
            cluster_addr = request.cluster_addr or f"{request.addr}:2377"
            leader = node_id == self.runtime.node_id
            extra["ManagerStatus"] = {"Leader": leader, "Reachability": "reachable", "Addr": cluster_addr}
            self.shell.set_peer_address(node_id, cluster_addr)
        op: Op
        if existing is None:
            spec = {"Name": "", "Role": role, "Availability": "active", "Labels": {}}
            op = Create("node", node_id, spec, status, extra)
        else:
            spec = copy.deepcopy(existing.spec)
            spec["Role"] = role
            merged = copy.deepcopy(existing.extra)
            merged.update(extra)
            op = Update("node", node_id, existing.version, spec=spec, status=status, extra=merged)
        await self.runtime.write([op])
        if role == "manager":
            self._add_to_raft(node_id)

    def _add_to_raft(self, node_id: str) -> bool:
        """Propose adding a manager as a learner; False if it must wait for a pending change."""
        conf = _conf_state(self.shell.node)
        if node_id in conf.voters or node_id in conf.learners:
            return True
        log.info("dispatcher: adding manager %s to Raft as a learner", node_id)
        try:
            self.shell.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node_id))
        except (ValueError, NotLeader) as exc:  # a change is pending, or leadership moved: retry later
            log.info("dispatcher: adding %s deferred: %s", node_id, exc)
            return False
        return True

    def _promote_learners(self) -> None:
        """Ask the shell to promote every learner that is a manager node (once it has caught up)."""
        conf = _conf_state(self.shell.node)
        for learner in conf.learners:
            node = self._lookup(learner)
            if node is not None and node.spec.get("Role") == "manager":
                self.shell.promote(learner)

    # ------------------------------------------------------------------ Session

    async def Session(
        self,
        request_iterator: AsyncIterator[dispatcher_pb2.Heartbeat],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[dispatcher_pb2.SessionMessage]:
        """Answer each heartbeat with the period and the managers; followers redirect.

        The leader only records the heartbeat: the liveness component decides what it means
        for the Node object (ready again, new addresses) and writes that.
        """
        async for beat in request_iterator:
            if self.faults.active and beat.addr and self.faults.blocked(beat.addr):
                continue
            period = self.period()
            period_ms = round(period * 1000)
            leader_addr = await self._redirect(context)
            if leader_addr:
                yield dispatcher_pb2.SessionMessage(
                    heartbeat_period_ms=period_ms, managers=self._managers(), leader_addr=leader_addr
                )
                return
            node = self._lookup(beat.node_id)
            if node is None:
                yield dispatcher_pb2.SessionMessage(error="node not found: join the swarm first")
                return
            self._heartbeats.inc()
            is_manager = node.spec.get("Role") == "manager"
            cluster_addr = beat.cluster_addr if is_manager else ""
            if cluster_addr and beat.node_id != self.runtime.node_id:
                # A promoted worker reports its cluster port once it runs the manager role:
                # that is where Raft will reach it (a no-op when already known).
                self.shell.set_peer_address(beat.node_id, cluster_addr)
            self.liveness.heartbeat(beat.node_id, self.clock(), beat.addr, cluster_addr, period=period)
            conf = _conf_state(self.shell.node)
            member = beat.node_id in conf.voters or beat.node_id in conf.learners
            yield dispatcher_pb2.SessionMessage(
                heartbeat_period_ms=period_ms,
                managers=self._managers(),
                role=session_role(str(node.spec.get("Role") or "worker"), member),
                ingress=self._ingress(),
            )

    # ------------------------------------------------------------------ the leader's loops

    async def run(self) -> None:
        """Run the liveness component (on the leader) and keep Raft membership and the gauge current."""
        liveness = asyncio.create_task(self.harness.run(), name="dispatcher-liveness")
        try:
            await self._membership_loop()
        finally:
            self.harness.stop()
            liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await liveness

    async def _membership_loop(self) -> None:
        """On a Node change (a store watch) or every ``monitor_every``: count states; as leader,
        add managers missing from Raft and promote caught-up learners."""
        with self.runtime.store.watch(["node"], on_change=self._membership_wake.set) as watch:
            while True:
                self._membership_wake.clear()
                watch.poll()  # what changed does not matter: the pass looks at every node
                try:
                    self._membership_once()
                    await self._rotation_once()
                except (NotLeaderError, NoLeaderError, StoreError) as exc:
                    log.debug("dispatcher: membership pass skipped: %s", exc)
                except Exception:
                    log.exception("dispatcher: membership pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._membership_wake.wait(), self.monitor_every)

    def role_of(self, node_id: str, spec_role: str) -> str:
        """The role a node is told to run (and certified as): its Spec.Role, or manager while
        a demoted manager is still a Raft member."""
        conf = _conf_state(self.shell.node)
        return session_role(spec_role, node_id in conf.voters or node_id in conf.learners)

    async def _rotation_once(self) -> None:
        """As leader: end a CA rotation once every node has moved to the new root."""
        if not self._is_leader():
            return
        ops = self.runtime.ca.rotation_step()
        if ops:
            await self.runtime.write(ops)

    async def record_certificate(self, node_id: str, certificate: bytes, roots: bytes,
                                 presented: bool = False) -> None:
        """Keep a renewed certificate's TLSInfo in its Node (``docker node inspect`` shows it).

        ``presented``: the node presented ``certificate`` in a handshake (it holds it): also
        record its issuer as the one a CA rotation waits for (:data:`PRESENTED_ISSUER_FIELD`);
        the expiry recorded stays the one of the last certificate issued."""
        for _ in range(3):
            node = self._lookup(node_id)
            if node is None:
                return
            extra = copy.deepcopy(node.extra)
            description = dict(extra.get("Description") or {})
            description["TLSInfo"] = info = tls_info(certificate, roots)
            extra["Description"] = description
            if presented:
                extra[PRESENTED_ISSUER_FIELD] = info["CertIssuerPublicKey"]
            else:
                extra[CERT_EXPIRY_FIELD] = certificate_expiry(certificate)
            try:
                await self.runtime.write([Update("node", node_id, node.version, extra=extra)])
                return
            except StoreError as exc:  # written meanwhile (a heartbeat): read it again
                log.debug("dispatcher: recording %s's certificate: %s", node_id, exc)

    def _count_states(self) -> None:
        counts = {"ready": 0, "down": 0, "unknown": 0, "disconnected": 0}
        for node in self.runtime.store.find("node"):
            state = str(node.status.get("State") or "unknown")
            counts[state] = counts.get(state, 0) + 1
        for state, n in counts.items():
            self._nodes_gauge.labels(state).set(n)

    def _membership_once(self) -> None:
        shell = self.shell
        if shell is None:
            return
        self._count_states()
        if not shell.is_leader:
            return
        self._promote_learners()
        conf = _conf_state(shell.node)
        roles = {n.id: str(n.spec.get("Role") or "worker") for n in self.runtime.store.find("node")}
        progress = getattr(shell.node, "progress", {}) or {}
        step = plan_membership(
            roles,
            voters=conf.voters,
            learners=conf.learners,
            self_id=self.runtime.node_id,
            addressed=set(shell.addresses()),
            match={peer: int(pr.match) for peer, pr in progress.items()},
            active=active_peers(self._contacts(), self.clock(), self._reach_window()),
        )
        if step is not None:
            self._take(step)

    def _take(self, step: MembershipStep) -> None:
        """Make one membership change; a change still committing defers it to the next pass."""
        if step.action == "add":
            self._add_to_raft(step.node_id)
            return
        try:
            if step.action == "remove":
                self.shell.propose_conf_change(ConfChange(ConfChangeType.REMOVE, step.node_id))
                log.info("dispatcher: removing demoted manager %s from Raft", step.node_id)
            elif step.action == "transfer":
                if self._transferring_to != step.node_id:
                    log.info("dispatcher: this leader was demoted; handing leadership to %s", step.node_id)
                self._transferring_to = step.node_id
                self.shell.transfer_leadership(step.node_id)
        except (ValueError, NotLeader) as exc:
            log.debug("dispatcher: %s of %s deferred: %s", step.action, step.node_id, exc)


def _conf_state(node: Any) -> Any:
    return node.conf
