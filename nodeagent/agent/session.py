"""The agent's side of the dispatcher: join once with a token, then heartbeat to the leader.

Every node runs one :class:`AgentSession`, managers too (a manager is also a node of the swarm).
The join is done once per data directory: a node that has joined remembers it in
``DATA_DIR/session.json`` and, after a restart, goes straight to its session; that is how a
restarted manager rejoins as a follower instead of asking to join again.

The session is a gRPC stream of heartbeats. Any manager may be asked; one that is not the leader
answers with the leader's address and the agent reconnects there. When the stream breaks, the
agent tries the next manager it knows of (from ``managers()`` and from what managers told it).

This module imports only nodeagent and the generated protos, never manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import logging
import os
import pathlib
import platform
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from nodeagent import tls
from nodeagent.identity import VERSION
from nodeagent.transport.planes import FaultGate

__all__ = ["JOIN_REFUSED_MESSAGE", "AgentSession", "JoinRefused", "fingerprint_mismatch"]

log = logging.getLogger(__name__)

JOIN_REFUSED_MESSAGE = "A valid join token is necessary to join this cluster"
_TOKEN_SHAPE = re.compile(r"SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}")
"""Swarm's words when a node has no join token or a wrong one."""

_SESSION_FILE = "session.json"
_CERT_CHECK_SECONDS = 1.0
_RENEW_AT_MOST_EVERY = 5.0
"""How often a joined node asks for the roots and looks whether its certificate is due (before the
time scale): a CA rotation reaches every node within a few of these."""
_REFUSING = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


STILL_CREATING = "the swarm is still being created"
"""How the bootstrap leader answers a join before it has written the Cluster object."""


def fingerprint_mismatch(digest: str) -> str:
    """swarmkit's words when the root CA a manager shows is not the one the join token names."""
    return f"remote CA does not match fingerprint. Expected: {digest}"


class JoinRefused(Exception):
    """The managers refused this node's join; ``str(e)`` is their message. The process exits 3."""


def _not_before(cert_pem: bytes) -> datetime.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem).not_valid_before_utc + datetime.timedelta(hours=1)


def _machine_memory() -> int:
    """The machine's memory in bytes: what a node declares unless told otherwise (--memory)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


class AgentSession:
    """Join the swarm (once), then keep a heartbeat session with the leader until stopped."""

    def __init__(
        self,
        context: Any,
        managers: Callable[[], list[str]],
        *,
        role: Callable[[], str] | None = None,
        on_role: Callable[[str], None] | None = None,
        join_role: str | None = None,
    ) -> None:
        """``context`` is the NodeContext; ``managers()`` gives cluster addresses to try.

        ``role()`` is the role this node runs now (``--role`` when not given): a manager reports
        its cluster address in each heartbeat. ``on_role(role)`` is called with the role each
        heartbeat answer says the node should run (promote and demote). ``join_role`` is the
        role asked for in the join (``--role`` when not given): ``docker swarm join`` asks for
        ``manager``, so that the token alone decides, as in Swarm.
        """
        self.context = context
        self.options = context.options
        self._managers = managers
        self._role = role if role is not None else (lambda: str(getattr(self.options, "role", "")))
        self._on_role = on_role
        self._join_role = join_role
        self._learned: list[str] = []
        self._silent = ""
        """The manager whose session last ended in silence: tried last next time."""
        self._stopping = asyncio.Event()
        self._call: Any = None
        self.joined = False
        """Whether this node has joined (now or in an earlier run)."""
        self.joined_role = ""
        """The role the managers granted at the join ("" if it joined in an earlier run)."""
        self.node_id = str(getattr(context, "node_id", "") or "")
        """The node's ID: after a join without one, the ID the managers chose (its certificate's CN)."""
        self.connected_to = ""
        """The manager the session is open with, "" while reconnecting."""
        self._ingress_seen: bytes | None = None
        self.time_scale = float(getattr(self.options, "time_scale", 1.0) or 1.0)
        self.faults = FaultGate(getattr(context, "faults", None), "dispatcher")
        """The node's injected link faults on the links to the managers: a heartbeat into a
        partitioned link is not sent and an answer from one never arrives, so the session
        times out as with a cut cable; delay and loss hold heartbeats back."""
        self._wanted_role = ""
        self._cert_due = asyncio.Event()

    # ------------------------------------------------------------------ helpers

    def _state_file(self) -> pathlib.Path:
        return pathlib.Path(self.options.data_dir) / _SESSION_FILE

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        path = self._state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _token(self) -> str:
        path = getattr(self.options, "token_file", None)
        if not path and getattr(self.options, "role", "") == "manager":
            # The bootstrap manager joins its own cluster with the manager token it created it with.
            path = getattr(self.options, "manager_token_file", None)
        if not path:
            return ""
        try:
            return pathlib.Path(path).read_text().strip()
        except OSError as exc:
            raise JoinRefused(f"cannot read the join token file {path}: {exc.strerror}") from None

    def _candidates(self, prefer: str = "", last: str = "") -> list[str]:
        """Managers to try in turn: ``prefer`` first, ``last`` (one that went silent) at the end."""
        out: list[str] = []
        for addr in [prefer, *self._learned, *self._managers()]:
            if addr and addr not in out and addr != last:
                out.append(addr)
        if last:
            out.append(last)
        return out

    def _learn(self, managers: list[str]) -> None:
        if managers:
            self._learned = [m for m in managers if m]

    def _cluster_addr(self) -> str:
        if self._role() != "manager":
            return ""
        return f"{self.options.advertise_addr}:{self.options.cluster_port}"

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds * self.time_scale)

    # ------------------------------------------------------------------ join

    async def join(self) -> None:
        """Join with the token unless this data directory has joined before; raises JoinRefused."""
        state = self._load_state()
        if state.get("joined"):
            self.joined = True
            self.node_id = str(state.get("node_id") or self.context.node_id)
            self._learn(list(state.get("managers") or []))
            return
        token = self._token()
        # The key and its CSR do not depend on the token: made first, they cost nothing while a
        # node waits for its token (--await-token), rather than after it came (0.1-0.3 s of CPU
        # on a machine where five nodes start at once).
        key = tls.new_key() if tls.enabled() else b""
        csr = tls.make_csr(key, self.context.node_id or "swarm-node") if key else b""
        if getattr(self.options, "await_token", False) and not _TOKEN_SHAPE.fullmatch(token):
            token = await self._await_token()
        if not token:
            raise JoinRefused(JOIN_REFUSED_MESSAGE)
        if not _TOKEN_SHAPE.fullmatch(token):
            # Refused here, before any manager is asked: a malformed token can never succeed,
            # so retrying while no manager answers would only hide the mistake.
            raise JoinRefused("invalid join token")
        join_role = self._join_role or self.options.role
        cluster_addr = self._cluster_addr()
        if join_role == "manager" and not cluster_addr:
            # Joining with what may be a manager token: where Raft will reach this node once the
            # leader has told it to run the manager role.
            cluster_addr = f"{self.options.advertise_addr}:{self.options.cluster_port}"
        # No ID yet (a node started with --join, joining before anything else runs): the managers
        # choose it and put it in the certificate.
        request = dispatcher_pb2.JoinRequest(
            csr=csr,
            node_id=self.context.node_id,
            hostname=self.context.hostname,
            role=join_role,
            token=token,
            addr=self.options.advertise_addr,
            cluster_addr=cluster_addr,
            engine_version=VERSION,
            nano_cpus=getattr(self.options, "nano_cpus", None) or (os.cpu_count() or 1) * 1_000_000_000,
            memory_bytes=getattr(self.options, "memory_bytes", None) or _machine_memory(),
            os="linux",
            architecture=platform.machine() or "x86_64",
        )
        prefer = ""
        while not self._stopping.is_set():
            for target in self._candidates(prefer):
                prefer = ""
                if self.faults.blocked(target):
                    log.info("join via %s: the link is partitioned (swarmlet chaos)", target)
                    continue
                try:
                    roots = await self._root_ca(target, token) if key else b""
                    async with tls.channel(target, joining=True, roots=roots or None) as channel:
                        stub = dispatcher_pb2_grpc.DispatcherStub(channel)  # type: ignore[no-untyped-call]
                        reply = await stub.Join(request, timeout=5.0 * self.time_scale)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _REFUSING:
                        raise JoinRefused(exc.details() or JOIN_REFUSED_MESSAGE) from None
                    log.info("join via %s: %s", target, exc.details() or exc.code())
                    if (exc.details() or "").startswith(STILL_CREATING):
                        # The leader answered: it is writing the Cluster object now. Ask it again
                        # in a moment rather than the managers that are not in the swarm yet.
                        prefer = target
                        break
                    continue
                self._learn(list(reply.managers))
                if reply.leader_addr:
                    prefer = reply.leader_addr
                    break
                node_id = str(reply.node_id or self.context.node_id)
                if key:
                    if not reply.certificate:
                        raise JoinRefused(f"{target} answered the join without a certificate")
                    credentials = tls.NodeCredentials(bytes(reply.certificate), key, bytes(reply.root_ca))
                    if credentials.identity.node_id != node_id:
                        raise JoinRefused(f"{target} answered the join with a certificate for "
                                          f"{credentials.identity.node_id}, not {node_id}")
                    credentials.save(self.options.data_dir)
                    tls.set_credentials(credentials)
                self.joined = True
                self.joined_role = str(reply.role)
                self.node_id = node_id
                self._save_state({"joined": True, "cluster_id": reply.cluster_id, "managers": self._learned,
                                  "node_id": node_id})
                log.info("joined cluster %s as a %s, node ID %s", reply.cluster_id, reply.role, node_id)
                return
            await self._pause(0.05 if prefer else 0.2)
        raise asyncio.CancelledError()

    async def _await_token(self) -> str:
        """``--await-token``: the token once the file holds a whole one (it is written in place,
        so a read may see it empty or half written), or what it holds after AWAIT_TOKEN_SECONDS."""
        from nodeagent.options import AWAIT_TOKEN_SECONDS

        log.info("waiting for a join token in the token file")
        deadline = asyncio.get_running_loop().time() + AWAIT_TOKEN_SECONDS
        token = self._token()
        while not _TOKEN_SHAPE.fullmatch(token) and asyncio.get_running_loop().time() < deadline:
            if self._stopping.is_set():
                raise asyncio.CancelledError()
            await asyncio.sleep(0.02)
            token = self._token()
        return token

    async def _root_ca(self, target: str, token: str) -> bytes:
        """The roots ``target`` shows, checked against the token's digest before the token is sent.

        Raises JoinRefused (the node exits) when they do not match: the token is never sent to
        a manager of another cluster, or to someone posing as one."""
        digest = token.split("-")[2]
        async with tls.channel(target, joining=True, roots=tls.JOIN_CA_CERT_PEM) as channel:
            stub = dispatcher_pb2_grpc.NodeCAStub(channel)  # type: ignore[no-untyped-call]
            reply = await stub.GetRootCACertificate(dispatcher_pb2.GetRootCACertificateRequest(),
                                                    timeout=5.0 * self.time_scale)
        roots = bytes(reply.certificate)
        try:
            matches = bool(roots) and tls.ca_digest(roots) == digest
        except ValueError:
            matches = False
        if not matches:
            log.error("the root CA of %s does not match the join token's digest: the token was not sent",
                      target)
            raise JoinRefused(fingerprint_mismatch(digest))
        return roots

    # ------------------------------------------------------------------ certificates

    async def renew(self, target: str) -> bool:
        """Ask ``target`` (the leader) for a new certificate for a new key; True if one came."""
        key = tls.new_key()
        request = dispatcher_pb2.RenewNodeCertificateRequest(csr=tls.make_csr(key, self.context.node_id))
        async with tls.channel(target) as channel:
            stub = dispatcher_pb2_grpc.NodeCAStub(channel)  # type: ignore[no-untyped-call]
            reply = await stub.RenewNodeCertificate(request, timeout=5.0 * self.time_scale)
        if not reply.certificate:
            return False
        credentials = tls.NodeCredentials(bytes(reply.certificate), key, bytes(reply.root_ca))
        credentials.save(self.options.data_dir)
        tls.set_credentials(credentials)
        identity = credentials.identity
        log.info("new certificate: %s, valid until %s", identity.role, identity.not_after.isoformat())
        return True

    def _needs_renewal(self, roots: bytes, role: str) -> bool:
        """Whether this node's certificate must be replaced now: half its life is gone, the
        active root (the first of ``roots``) did not sign it, or its role is not ``role``."""
        held = tls.credentials()
        if held is None:
            return False
        identity = held.identity
        if role in ("manager", "worker") and identity.role != role:
            return True
        first = tls.split_pems(roots)[:1]
        if first and tls.issued_by(held.cert_pem, first[0]) is None:
            return True
        issued = _not_before(held.cert_pem)
        now = datetime.datetime.now(datetime.UTC)
        return now >= issued + (identity.not_after - issued) / 2

    async def keep_certificate(self) -> None:
        """While joined: follow the cluster's roots and renew this node's certificate when due
        (half its life gone, a CA rotation, a promotion or demotion)."""
        loop = asyncio.get_running_loop()
        last_renewal = float("-inf")
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cert_due.wait(), _CERT_CHECK_SECONDS * self.time_scale)
            self._cert_due.clear()
            target = self.connected_to
            held = tls.credentials()
            if not target or held is None or not tls.enabled():
                continue
            try:
                async with tls.channel(target) as channel:
                    stub = dispatcher_pb2_grpc.NodeCAStub(channel)  # type: ignore[no-untyped-call]
                    reply = await stub.GetRootCACertificate(dispatcher_pb2.GetRootCACertificateRequest(),
                                                            timeout=5.0 * self.time_scale)
                roots = bytes(reply.certificate)
                if roots and roots != held.roots_pem and tls.issued_by(held.cert_pem, roots) is not None:
                    # A rotation started or ended: trust what the managers trust now (and drop
                    # the cross-signed copy of the new root once the old one is gone).
                    held = held.with_roots(roots)
                    tls.set_credentials(held)
                    held.save(self.options.data_dir)
                due = self._needs_renewal(roots, self._wanted_role) if roots else False
                # At most one renewal per few seconds: a role that is about to change (a demoted
                # manager that Raft has not let go yet) must not make a renewal a second.
                if self._stopping.is_set():
                    return
                if due and loop.time() - last_renewal >= _RENEW_AT_MOST_EVERY * self.time_scale:
                    last_renewal = loop.time()
                    await self.renew(target)
            except grpc.aio.AioRpcError as exc:
                log.info("certificate check with %s: %s", target, exc.details() or exc.code())
            except Exception:
                log.exception("certificate check with %s failed", target)

    # ------------------------------------------------------------------ session

    async def run(self) -> None:
        """Join (once), then heartbeat to the leader forever, reconnecting on failure."""
        await self.join()
        keeper = asyncio.get_running_loop().create_task(self.keep_certificate(), name="certificates")
        try:
            await self._heartbeat_forever()
        finally:
            keeper.cancel()

    async def _heartbeat_forever(self) -> None:
        prefer = ""
        while not self._stopping.is_set():
            progressed = False
            # A manager that went silent (cut off, paused, a leader that lost its quorum) is tried
            # last: the others know the new leader, and every node must reach it within the
            # grace a new leader gives them (manager.dispatcher.liveness), or it is marked down
            # and its tasks move.
            for target in self._candidates(prefer, last=self._silent):
                if self._stopping.is_set():
                    return
                prefer = ""
                self._silent = ""
                redirect = await self._session(target)
                if redirect is None:
                    continue
                progressed = True
                prefer = redirect
                break
            if not progressed:
                await self._pause(0.1)

    async def _session(self, target: str) -> str | None:
        """One session with ``target``; returns where to go next ("" any), None if it failed at once."""
        period = 0.5 * self.time_scale
        period_box = [period]
        beats = 0

        def beat(seq: int) -> dispatcher_pb2.Heartbeat:
            return dispatcher_pb2.Heartbeat(
                node_id=self.context.node_id,
                hostname=self.context.hostname,
                addr=self.options.advertise_addr,
                cluster_addr=self._cluster_addr(),
                engine_version=VERSION,
                sequence=seq,
            )

        async def heartbeats() -> AsyncIterator[dispatcher_pb2.Heartbeat]:
            # Beats are made on time and handed over when the link lets them through: with
            # injected link faults a delay shifts every beat (it does not slow the beating) and a
            # partitioned link loses them.
            out: asyncio.Queue[dispatcher_pb2.Heartbeat] = asyncio.Queue()

            async def beating() -> None:
                seq = 0
                while not self._stopping.is_set():
                    seq += 1
                    message = beat(seq)
                    if not self.faults.active:
                        out.put_nowait(message)
                    elif (delay := self.faults.stream(target)) is not None:
                        self.faults.send_later(target, delay, functools.partial(out.put_nowait, message))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), period_box[0])

            producer = asyncio.get_running_loop().create_task(beating(), name="heartbeats")
            try:
                while not self._stopping.is_set():
                    yield await out.get()
            finally:
                producer.cancel()

        try:
            async with tls.channel(target) as channel:
                stub = dispatcher_pb2_grpc.DispatcherStub(channel)  # type: ignore[no-untyped-call]
                call = stub.Session(heartbeats())
                self._call = call
                # A silent manager (paused, cut off) must not hold the session: give up after
                # three periods without an answer.
                loop = asyncio.get_running_loop()
                heard = loop.time()
                while True:
                    try:
                        wait = heard + 3 * period_box[0] + 0.5 - loop.time()
                        msg = await asyncio.wait_for(call.read(), max(wait, 0.0))
                    except TimeoutError:
                        call.cancel()
                        self._silent = target
                        return "" if beats else None
                    if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                        return "" if beats else None
                    if self.faults.active and self.faults.blocked(target):
                        continue  # sent across a partitioned link: it never arrives
                    heard = loop.time()
                    self._learn(list(msg.managers))
                    if msg.error:
                        # e.g. a new leader that has not applied this node's join yet: retry.
                        log.warning("session with %s refused: %s", target, msg.error)
                        return None
                    if msg.leader_addr:
                        return str(msg.leader_addr)
                    if msg.heartbeat_period_ms:
                        period_box[0] = msg.heartbeat_period_ms / 1000.0
                    if msg.role:
                        self._wanted_role = str(msg.role)
                        held = tls.credentials()
                        if held is not None and held.identity.role != self._wanted_role:
                            self._cert_due.set()  # promoted or demoted: a new certificate now
                    if msg.role and self._on_role is not None:
                        self._on_role(str(msg.role))
                    self._ingress(bytes(msg.ingress))
                    beats += 1
                    self.connected_to = target
        except grpc.aio.AioRpcError as exc:
            log.debug("session with %s ended: %s", target, exc.details() or exc.code())
            return "" if beats else None
        except asyncio.CancelledError:
            raise
        finally:
            self._call = None
            self.connected_to = ""

    def _ingress(self, raw: bytes) -> None:
        """Hand the ingress network to the routing mesh when it changes (``context.mesh``)."""
        mesh = getattr(self.context, "mesh", None)
        if mesh is None or raw == self._ingress_seen:
            return
        self._ingress_seen = raw
        try:
            network = json.loads(raw) if raw else None
        except ValueError:
            log.warning("session: the ingress network sent is not JSON; ignored")
            return
        mesh.configure(network if isinstance(network, dict) else None)

    async def stop(self) -> None:
        """End the session at once (the process must exit within a second)."""
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
