"""Certificates, who may call what, and CA rotation: nodeagent/tls.py and manager/ca/."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from manager.ca.authority import CertificateRefused, issue_from_csr, new_root
from manager.ca.service import PRESENTED_ISSUER_FIELD, CertificateGuard, ClusterCA, tls_info
from manager.ca.tokens import ClusterCredentials, make_token, parse_token
from nodeagent import tls

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def _issue(root: Any, node_id: str, role: str, *, csr_name: str | None = None) -> tls.NodeCredentials:
    key = tls.new_key()
    cert = issue_from_csr(root, tls.make_csr(key, csr_name or node_id), node_id=node_id, role=role,
                          cluster_id="c" * 25, expiry=DAY, now=NOW)
    return tls.NodeCredentials(cert, key, root.cert_pem)


def test_a_node_certificate_names_the_node_its_role_and_the_cluster() -> None:
    root = new_root(NOW)
    # The CSR asks for another name: the CA writes the one the managers decided.
    creds = _issue(root, "n" * 25, "worker", csr_name="manager-please")
    who = creds.identity
    assert (who.node_id, who.role, who.cluster_id) == ("n" * 25, "worker", "c" * 25)
    assert who.not_after == NOW + DAY
    assert tls.issued_by(creds.cert_pem, root.cert_pem) == root.cert_pem
    assert tls.issued_by(creds.cert_pem, new_root(NOW).cert_pem) is None
    manager = _issue(root, "m" * 25, "manager").identity
    assert (manager.role, manager.issuer) == ("manager", "swarm-ca")


def test_the_ca_refuses_a_role_it_does_not_know_and_a_broken_request() -> None:
    root = new_root(NOW)
    key = tls.new_key()
    with pytest.raises(CertificateRefused):
        issue_from_csr(root, tls.make_csr(key, "x"), node_id="x", role="admin", cluster_id="c",
                       expiry=DAY, now=NOW)
    with pytest.raises(CertificateRefused, match="not a certificate signing request"):
        issue_from_csr(root, b"garbage", node_id="x", role="worker", cluster_id="c", expiry=DAY, now=NOW)


def test_the_token_digest_is_the_digest_of_the_root_the_managers_show() -> None:
    creds = ClusterCredentials.create()
    token = parse_token(creds.worker_token)
    assert tls.ca_digest(creds.ca_cert_pem) == token.ca_digest
    assert tls.ca_digest(new_root(NOW).cert_pem) != token.ca_digest


def test_join_certificates_say_nothing_about_who_holds_them() -> None:
    cert, _key = tls.join_certificate()
    who = tls.identity_of(cert)
    assert (who.role, who.node_id, who.cluster_id) == ("join", "", "")
    assert tls.issued_by(cert, tls.JOIN_CA_CERT_PEM) is not None
    # The cross-signed copy of a cluster root carries the root's key under the join CA's name.
    root = new_root(NOW)
    cross = tls.cross_sign_for_joiners(root.cert_pem)
    assert tls.issued_by(cross, tls.JOIN_CA_CERT_PEM) is not None
    leaf = _issue(root, "m" * 25, "manager")
    assert tls.issued_by(leaf.cert_pem, cross) is not None


@dataclass
class _Peer:
    role: str
    node_id: str = "n" * 25

    def identity(self) -> tls.PeerIdentity:
        return tls.PeerIdentity(self.node_id if self.role != "join" else "", self.role, "c", NOW, "swarm-ca")


def test_the_guard_lets_each_role_call_only_what_it_may() -> None:
    removed: set[str] = {"r" * 25}
    guard = CertificateGuard(removed.__contains__)
    tls.set_enabled(True)
    raft = "/swarmlet.v1.RaftTransport/Stream"
    control = "/swarmlet.v1.Control/ListNodes"
    join = "/swarmlet.v1.Dispatcher/Join"
    session = "/swarmlet.v1.Dispatcher/Session"
    assert guard.check(join, _Peer("join").identity()) is None
    assert guard.check("/swarmlet.v1.NodeCA/GetRootCACertificate", _Peer("join").identity()) is None
    for method in (session, raft, control):
        refused = guard.check(method, _Peer("join").identity())
        assert refused is not None and refused[0] == grpc.StatusCode.PERMISSION_DENIED
    assert guard.check(session, _Peer("worker").identity()) is None
    for method in (raft, control, "/swarmlet.v1.Dispatcher/Write"):
        refused = guard.check(method, _Peer("worker").identity())
        assert refused == (grpc.StatusCode.PERMISSION_DENIED, "Permission denied: unauthorized peer role: "
                           "remote certificate not part of OUs: [swarm-manager]")
    assert guard.check(raft, _Peer("manager").identity()) is None
    refused = guard.check(session, _Peer("manager", "r" * 25).identity())
    assert refused == (grpc.StatusCode.PERMISSION_DENIED,
                       f"Permission denied: node {'r' * 25} was removed from swarm")
    assert guard.check(raft, None) is not None
    tls.set_enabled(False)
    assert guard.check(raft, None) is None  # plaintext clusters (the benchmark's switch) check nothing


@dataclass
class _Object:
    id: str
    spec: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = 1


class _Store:
    def __init__(self, nodes: list[_Object]) -> None:
        self.nodes = nodes

    def find(self, kind: str) -> list[_Object]:
        return self.nodes if kind == "node" else []


class _Runtime:
    def __init__(self, cluster: _Object, nodes: list[_Object]) -> None:
        self._cluster = cluster
        self.store = _Store(nodes)

    def cluster(self) -> _Object:
        return self._cluster


def _node(name: str, cert: bytes, roots: bytes, state: str = "ready", *,
          presented: bytes | None = None) -> _Object:
    """A Node that was issued ``cert`` and last presented ``presented`` (the same by default)."""
    shown = tls_info(presented or cert, roots)["CertIssuerPublicKey"]
    return _Object(name, status={"State": state}, extra={"Description": {"TLSInfo": tls_info(cert, roots)},
                                                         PRESENTED_ISSUER_FIELD: shown})


def test_a_rotation_ends_once_every_node_that_is_up_holds_a_certificate_of_the_new_root() -> None:
    old = new_root(NOW)
    token = make_token(old.cert_pem)
    extra = {"RootCA": old.to_store(), "JoinTokens": {"Worker": token}}
    rotated = ClusterCA.rotated(extra, NOW)
    assert rotated["RootRotationInProgress"] is True
    assert rotated["RootCA"]["PreviousCACert"] == old.cert_pem.decode()
    cluster = _Object("c" * 25, spec={"CAConfig": {"NodeCertExpiry": 3_600_000_000_000}}, extra=rotated)
    on_old = _issue(old, "a" * 25, "manager")
    nodes = [_node("a" * 25, on_old.cert_pem, old.cert_pem),
             _node("d" * 25, on_old.cert_pem, old.cert_pem, "down")]
    runtime = _Runtime(cluster, nodes)
    ca = ClusterCA(runtime)
    roots = ca.roots_pem()
    new_cert = tls.split_pems(roots)[0]
    assert tls.split_pems(roots)[1] == old.cert_pem  # both roots trusted while nodes move
    assert ca.expiry() == datetime.timedelta(hours=1)
    assert ca.rotation_step() == []  # node a still holds the old root's certificate
    key = tls.new_key()
    cert, _ = ca.issue(tls.make_csr(key, "a" * 25), node_id="a" * 25, role="manager")
    assert tls.issued_by(cert, new_cert) is not None
    # Issued, but the reply never reached node a: it still presents the old root's certificate,
    # and dropping the old root now would lock it out. The rotation waits.
    nodes[0] = _node("a" * 25, cert, roots, presented=on_old.cert_pem)
    assert ca.rotation_step() == []
    nodes[0] = _node("a" * 25, cert, roots)
    [done] = ca.rotation_step()  # the down node does not hold the rotation up
    assert done.extra["RootRotationInProgress"] is False
    assert "PreviousCACert" not in done.extra["RootCA"]
    assert "CrossSignedCACert" not in done.extra["RootCA"]
    assert done.extra["TLSInfo"]["TrustRoot"] == new_cert.decode()


def test_removed_nodes_are_kept_until_a_week_after_their_certificates_expire() -> None:
    from manager.ca.removed import (
        CERT_EXPIRY_FIELD,
        EXPIRED_CERT_GRACE,
        REMOVED_FIELD,
        certificate_expiry,
        pruned,
        removal_expiry,
        with_removed,
    )

    creds = _issue(new_root(NOW), "n" * 25, "worker")
    recorded = certificate_expiry(creds.cert_pem)
    assert datetime.datetime.fromisoformat(recorded) == NOW + DAY
    # The later of the recorded certificate's end and now + the current lifetime: a certificate
    # issued under a longer --cert-expiry is remembered as long as it lives.
    assert removal_expiry({CERT_EXPIRY_FIELD: recorded}, NOW, DAY / 2) == NOW + DAY
    assert removal_expiry({CERT_EXPIRY_FIELD: recorded}, NOW, 3 * DAY) == NOW + 3 * DAY
    assert removal_expiry({}, NOW, 3 * DAY) == NOW + 3 * DAY

    extra = with_removed({"JoinTokens": {"Worker": "w"}}, "a" * 25, NOW + DAY, NOW)
    extra = with_removed(extra, "b" * 25, None, NOW)  # no expiry known: kept for ever
    assert extra["JoinTokens"] == {"Worker": "w"} and set(extra[REMOVED_FIELD]) == {"a" * 25, "b" * 25}
    assert pruned(extra, NOW + DAY + EXPIRED_CERT_GRACE) is extra  # not yet past the grace
    later = NOW + DAY + EXPIRED_CERT_GRACE + datetime.timedelta(seconds=1)
    assert set(pruned(extra, later)[REMOVED_FIELD]) == {"b" * 25}
    # A removal prunes the list as it writes it.
    assert set(with_removed(extra, "c" * 25, later + DAY, later)[REMOVED_FIELD]) == {"b" * 25, "c" * 25}
