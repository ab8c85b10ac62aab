"""The managers' CA at work: the ``NodeCA`` service, who may call what on 2377, and CA rotation.

* ``GetRootCACertificate`` answers anyone (a joining node checks the answer against its token).
* ``RenewNodeCertificate`` signs a joined node's new key on the leader (it records the issuer in
  the Node object's ``Description.TLSInfo``, which is how a CA rotation knows who has moved).
* :class:`CertificateGuard` checks the peer's verified certificate before any handler runs:
  a join certificate reaches only the two join RPCs, a worker's only its session, its
  assignments and its renewal, a manager's everything; a removed node's certificate nothing.
* :class:`ClusterCA` reads the CA from the Cluster object and runs ``docker swarm ca --rotate``:
  a new root, both roots trusted while nodes renew, the old one dropped once every node that is
  not down holds a certificate from the new root.
"""

from __future__ import annotations

import base64
import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from manager.ca.authority import (
    DEFAULT_CERT_EXPIRY,
    CertificateRefused,
    RootCA,
    issue_from_csr,
    issued_by,
    new_root,
)
from manager.ca.removed import removed_denied
from manager.state.store.commands import Op, Update
from nodeagent import tls

__all__ = ["JOIN_METHODS", "PRESENTED_ISSUER_FIELD", "WORKER_METHODS", "CertificateGuard", "ClusterCA",
           "NodeCAServicer", "tls_info"]

log = logging.getLogger(__name__)

JOIN_METHODS = frozenset({
    "/swarmlet.v1.NodeCA/GetRootCACertificate",
    "/swarmlet.v1.NodeCA/IssueOperatorCertificate",
    "/swarmlet.v1.Dispatcher/Join",
})
"""What a node without a certificate of the cluster (a join certificate) may call."""
WORKER_METHODS = JOIN_METHODS | {
    "/swarmlet.v1.NodeCA/RenewNodeCertificate",
    "/swarmlet.v1.Dispatcher/Session",
    "/swarmlet.v1.Assignments/Assignments",
    "/swarmlet.v1.Assignments/UpdateTaskStatus",
}
"""What a worker's certificate may call; a manager's may call everything on 2377."""


PRESENTED_ISSUER_FIELD = "PresentedCertIssuerPublicKey"
"""In a Node's extra: the issuer (its public key, as TLSInfo's CertIssuerPublicKey) of the
certificate the node last presented to the leader. A rotation ends on this, not on what was
issued: a certificate whose reply was lost on the way never reached its node, and dropping the
old root then would lock that node out for good."""

OPERATOR_REFUSED = "A valid manager join token is necessary for an operator certificate"


def _denied_role() -> str:
    return ("Permission denied: unauthorized peer role: "
            f"remote certificate not part of OUs: [{tls.MANAGER_OU}]")


def tls_info(cert_pem: bytes, roots_pem: bytes) -> dict[str, str]:
    """Docker's TLSInfo for a certificate: the trust root, and its issuer's subject and public
    key (base64 DER), as ``docker node inspect`` and ``GET /swarm`` show them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    issuer_pem = issued_by(cert_pem, roots_pem) or tls.split_pems(roots_pem)[0]
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"TrustRoot": issuer_pem.decode(),
            "CertIssuerSubject": base64.b64encode(issuer.subject.public_bytes()).decode(),
            "CertIssuerPublicKey": base64.b64encode(spki).decode()}


class ClusterCA:
    """The CA as the Cluster object holds it (``extra.RootCA``), and its rotation."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` is the ManagerRuntime: its ``cluster()``, ``store`` and ``write``."""
        self.runtime = runtime
        self.bootstrap_root: RootCA | None = None
        """The CA a bootstrapping manager starts with, until the Cluster object holds it."""

    def root(self) -> RootCA | None:
        """The active root (the one that signs)."""
        cluster = self.runtime.cluster()
        if cluster is not None:
            found = RootCA.from_store(cluster.extra.get("RootCA"))
            if found is not None:
                return found
        return self.bootstrap_root

    def roots_pem(self) -> bytes:
        """The roots nodes must trust: the active one first, the previous one while rotating."""
        root = self.root()
        if root is None:
            return b""
        cluster = self.runtime.cluster()
        previous = ""
        if cluster is not None:
            previous = str((cluster.extra.get("RootCA") or {}).get("PreviousCACert") or "")
        return root.cert_pem + previous.encode()

    def expiry(self) -> datetime.timedelta:
        """``Spec.CAConfig.NodeCertExpiry`` (90 days unless ``swarm update --cert-expiry``)."""
        cluster = self.runtime.cluster()
        ns = 0
        if cluster is not None:
            ns = int(((cluster.spec.get("CAConfig") or {}).get("NodeCertExpiry")) or 0)
        return datetime.timedelta(microseconds=ns / 1000) if ns > 0 else DEFAULT_CERT_EXPIRY

    def issue(self, csr_pem: bytes, *, node_id: str, role: str) -> tuple[bytes, bytes]:
        """(certificate, roots) for a node's CSR; raises CertificateRefused."""
        root = self.root()
        if root is None:
            raise CertificateRefused("the cluster has no root CA yet")
        cluster = self.runtime.cluster()
        cluster_id = cluster.id if cluster is not None else str(getattr(self.runtime, "cluster_id", ""))
        cert = issue_from_csr(root, csr_pem, node_id=node_id, role=role, cluster_id=cluster_id,
                              expiry=self.expiry(), now=datetime.datetime.now(datetime.UTC))
        return cert + self.cross_signed(), self.roots_pem()

    def cross_signed(self) -> bytes:
        """While a rotation runs: the new root signed by the previous one, sent with every
        certificate issued, so that nodes still trusting only the previous root verify it."""
        cluster = self.runtime.cluster()
        stored = (cluster.extra.get("RootCA") or {}) if cluster is not None else {}
        if not stored.get("PreviousCACert"):
            return b""
        return str(stored.get("CrossSignedCACert") or "").encode()

    # ------------------------------------------------------------------ rotation

    @staticmethod
    def rotated(extra: dict[str, Any], now: datetime.datetime,
                signing: tuple[bytes, bytes] | None = None) -> dict[str, Any]:
        """The Cluster extra after ``docker swarm ca --rotate``: a new root (or the one given),
        the old root kept as PreviousCACert and RootRotationInProgress until every node moved."""
        old = RootCA.from_store(extra.get("RootCA"))
        if signing is not None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization

            x509.load_pem_x509_certificate(signing[0])  # both raise ValueError when malformed
            serialization.load_pem_private_key(signing[1], None)
        new = RootCA(*signing) if signing is not None else new_root(now)
        out = dict(extra)
        stored = new.to_store()
        if old is not None and old.cert_pem != new.cert_pem:
            stored["PreviousCACert"] = old.cert_pem.decode()
            # swarmkit's cross-signed root: certificates of the new root chain up to the old one
            # through it, so a node that has not fetched the new root yet still trusts them.
            stored["CrossSignedCACert"] = tls.cross_sign(new.cert_pem, old.cert_pem, old.key_pem).decode()
            out["RootRotationInProgress"] = True
        out["RootCA"] = stored
        return out

    def rotation_step(self) -> list[Op]:
        """On the leader: the write that ends a rotation once every node not down has shown a
        certificate from the new root in a handshake (none otherwise)."""
        cluster = self.runtime.cluster()
        if cluster is None or not cluster.extra.get("RootRotationInProgress"):
            return []
        root = self.root()
        if root is None:
            return []
        wanted = tls_info(root.cert_pem, root.cert_pem)["CertIssuerPublicKey"]
        for node in self.runtime.store.find("node"):
            if str((node.status or {}).get("State", "")) == "down":
                continue
            if node.extra.get(PRESENTED_ISSUER_FIELD) != wanted:
                return []
        extra = dict(cluster.extra)
        stored = dict(extra.get("RootCA") or {})
        stored.pop("PreviousCACert", None)
        stored.pop("CrossSignedCACert", None)
        extra["RootCA"] = stored
        extra["RootRotationInProgress"] = False
        extra["TLSInfo"] = tls_info(root.cert_pem, root.cert_pem)
        log.info("CA rotation complete: every node up has presented a certificate from the new root")
        return [Update("cluster", cluster.id, cluster.version, extra=extra)]


class NodeCAServicer(dispatcher_pb2_grpc.NodeCAServicer):
    """``swarmlet.v1.NodeCA`` on 2377."""

    def __init__(self, runtime: Any, record: Callable[..., Awaitable[None]]) -> None:
        """``record(node_id, cert, roots, presented=False)`` writes a certificate's TLSInfo into
        its Node (leader): one just issued, or (``presented``) one the node showed."""
        self.runtime = runtime
        self._record = record

    async def GetRootCACertificate(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The roots, to anyone. A joined node asks every second: on the leader, the certificate
        it presents says which root it has really moved to (what a rotation waits for)."""
        roots = self.runtime.ca.roots_pem()
        if not roots:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the swarm is still being created; try again")
        try:
            await self._note_presented(tls.peer_certificate(context), roots)
        except Exception as exc:  # the roots are answered anyway; the next call tries again
            log.debug("recording a presented certificate: %s", exc)
        return dispatcher_pb2.GetRootCACertificateResponse(certificate=roots)

    async def _note_presented(self, cert_pem: bytes | None, roots: bytes) -> None:
        if cert_pem is None:
            return
        peer = tls.identity_of(cert_pem)
        if peer.role not in ("manager", "worker") or not peer.node_id or peer.node_id == tls.OPERATOR_CN:
            return
        shell = self.runtime.shell
        if shell is not None and not shell.is_leader:
            return
        issuer = issued_by(cert_pem, roots)
        if issuer is None:
            return
        try:
            node = self.runtime.store.get("node", peer.node_id)
        except Exception:
            return
        info = tls_info(cert_pem, roots)
        recorded = (node.extra.get("Description") or {}).get("TLSInfo")
        if node.extra.get(PRESENTED_ISSUER_FIELD) == info["CertIssuerPublicKey"] and recorded == info:
            return
        await self._record(peer.node_id, cert_pem, roots, presented=True)

    async def IssueOperatorCertificate(self, request: Any,
                                       context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """A host tool's manager certificate (CN ``operator``) for the holder of the manager token."""
        cluster = self.runtime.cluster()
        if cluster is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the swarm is still being created; try again")
        wanted = str((cluster.extra.get("JoinTokens") or {}).get("Manager") or "")
        if not wanted or not secrets.compare_digest(request.token.strip().encode(), wanted.strip().encode()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, OPERATOR_REFUSED)
        try:
            cert, roots = self.runtime.ca.issue(bytes(request.csr), node_id=tls.OPERATOR_CN, role="manager")
        except CertificateRefused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        log.info("issued an operator certificate")
        return dispatcher_pb2.IssueOperatorCertificateResponse(certificate=cert, root_ca=roots)

    async def RenewNodeCertificate(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """A new certificate for the node the current one names, with its Node's role."""
        peer = tls.peer_identity(context)
        if peer is None or not peer.node_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "a certificate of this swarm is needed")
            raise AssertionError("unreachable")
        shell = self.runtime.shell
        if shell is not None and not shell.is_leader:
            return dispatcher_pb2.RenewNodeCertificateResponse(leader_addr=str(shell.leader_address or ""))
        try:
            node = self.runtime.store.get("node", peer.node_id)
        except Exception:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"node {peer.node_id} is not a member of the swarm")
            raise AssertionError("unreachable") from None
        # The role its session is told: a demoted manager keeps serving Raft until Raft lets it go.
        role = self.runtime.dispatcher.role_of(peer.node_id, str(node.spec.get("Role") or "worker"))
        try:
            cert, roots = self.runtime.ca.issue(bytes(request.csr), node_id=peer.node_id, role=role)
        except CertificateRefused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        await self._record(peer.node_id, cert, roots)
        return dispatcher_pb2.RenewNodeCertificateResponse(certificate=cert, root_ca=roots)


class CertificateGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks the caller's certificate (its OU, whether its node was removed) before any handler."""

    def __init__(self, removed: Callable[[str], bool]) -> None:
        """``removed(node_id)``: whether that node was removed from the swarm (the Cluster
        object's list in this manager's store, :func:`manager.ca.removed.is_removed`)."""
        self._removed = removed

    def check(self, method: str, peer: tls.PeerIdentity | None) -> tuple[grpc.StatusCode, str] | None:
        """Why ``peer`` may not call ``method`` (a status and message), or None if it may."""
        if not tls.enabled():
            return None
        if peer is None:
            return grpc.StatusCode.UNAUTHENTICATED, "a client certificate is needed"
        if peer.role == "join":
            allowed = method in JOIN_METHODS
        elif peer.role == "worker":
            allowed = method in WORKER_METHODS
        else:
            allowed = peer.role == "manager"
        if peer.node_id and self._removed(peer.node_id):
            return grpc.StatusCode.PERMISSION_DENIED, removed_denied(peer.node_id)
        if not allowed:
            return grpc.StatusCode.PERMISSION_DENIED, _denied_role()
        return None

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not tls.enabled():
            return handler
        return tls.guarded_handler(handler, lambda context: self.check(handler_call_details.method,
                                                                       tls.peer_identity(context)))
