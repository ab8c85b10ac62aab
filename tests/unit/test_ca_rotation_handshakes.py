"""CA rotation at the TLS handshake (gRPC's own TLS, as between node processes): every pair of
nodes keeps talking while the root changes under them, whichever of them has moved.

The race this guards against: a manager renews its certificate from the new root at once, while a
worker has not fetched the new root yet (it asks once a second). Without the new root
cross-signed by the old one in the manager's chain, the worker can no longer verify the manager,
so it can never fetch the new root: the rotation never ends.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from manager.ca.authority import RootCA, new_root
from manager.ca.service import ClusterCA
from nodeagent import tls

NOW = datetime.datetime.now(datetime.UTC)  # real handshakes check validity against the clock
_METHOD = "/test.Echo/Echo"


@dataclass
class _Object:
    id: str
    version: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class _Runtime:
    def __init__(self, extra: dict[str, Any]) -> None:
        self._cluster = _Object("c" * 25, extra=extra)

    def cluster(self) -> _Object:
        return self._cluster


def _node(ca: ClusterCA, node_id: str, role: str) -> tls.NodeCredentials:
    key = tls.new_key()
    cert, roots = ca.issue(tls.make_csr(key, node_id), node_id=node_id, role=role)
    return tls.NodeCredentials(cert, key, roots)


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(creds)``: a gRPC server presenting ``creds`` as a node's server would; its address."""
    servers: list[grpc.Server] = []

    def start(creds: tls.NodeCredentials) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        echo = grpc.method_handlers_generic_handler("test.Echo", {"Echo": handler})
        server.add_generic_rpc_handlers((echo,))
        _, chain = tls.presented_chains(creds)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(creds.key_pem, chain)], root_certificates=creds.roots_pem + tls.JOIN_CA_CERT_PEM,
            require_client_auth=True))
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def _talks(target: str, creds: tls.NodeCredentials | None, name: str = tls.MANAGER_TARGET) -> bool:
    """Whether a client holding ``creds`` (None: a joining node) completes a call to ``target``
    (whose certificate must carry ``name``: any joined node's for a worker's server)."""
    if creds is None:
        cert, key = tls.join_certificate()
        roots, chain = tls.JOIN_CA_CERT_PEM, cert
    else:
        roots, key, chain = creds.roots_pem, creds.key_pem, tls.presented_chains(creds)[0]
    channel_creds = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key,
                                                 certificate_chain=chain)
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(target, channel_creds, options=options) as channel:
        try:
            return channel.unary_unary(_METHOD)(b"ping", timeout=10) == b"ping"
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return False


def test_nodes_on_either_root_talk_to_each_other_throughout_a_rotation(serve: Any) -> None:
    old = new_root(NOW)
    ca = ClusterCA(_Runtime({"RootCA": old.to_store()}))
    worker_old = _node(ca, "w" * 25, "worker")
    manager_old = _node(ca, "m" * 25, "manager")

    # docker swarm ca --rotate: the manager renews at once; the worker has not heard of it yet.
    ca.runtime._cluster.extra = ClusterCA.rotated(ca.runtime._cluster.extra, NOW)
    new = RootCA.from_store(ca.runtime._cluster.extra["RootCA"])
    assert new is not None
    manager_new = _node(ca, "m" * 25, "manager")
    assert len(tls.split_pems(manager_new.cert_pem)) == 2  # the leaf, the new root cross-signed
    assert tls.split_pems(manager_new.roots_pem) == [new.cert_pem, old.cert_pem]
    manager = serve(manager_new)
    assert _talks(manager, worker_old)  # a worker that trusts only the old root yet
    assert _talks(manager, None)  # a joining node (the join CA)
    assert _talks(manager, manager_new)
    # The worker that has not moved serves the manager that has (gossip, the overlay).
    assert _talks(serve(worker_old), manager_new, tls.NODE_TARGET)

    # The worker fetched the roots, then renewed: both directions still work.
    worker_trusting = worker_old.with_roots(manager_new.roots_pem)
    assert _talks(manager, worker_trusting)
    worker_new = _node(ca, "w" * 25, "worker")
    assert _talks(manager, worker_new)
    assert _talks(serve(worker_new), manager_old, tls.NODE_TARGET)  # a manager that did not renew yet

    # The rotation ends: the old root is dropped, and with it the cross-signed copy of the new.
    ended = dict(ca.runtime._cluster.extra)
    ended["RootCA"] = new.to_store()
    ca.runtime._cluster.extra = ended
    final_roots = ca.roots_pem()
    assert tls.split_pems(final_roots) == [new.cert_pem]
    manager_final = manager_new.with_roots(final_roots)
    worker_final = worker_new.with_roots(final_roots)
    assert tls.split_pems(worker_final.cert_pem) == tls.split_pems(worker_new.cert_pem)[:1]
    manager = serve(manager_final)
    assert _talks(manager, worker_final)
    assert _talks(manager, None)
    assert _talks(serve(worker_final), manager_final, tls.NODE_TARGET)
    # A certificate of the old root is no longer trusted by anyone.
    assert not _talks(manager, worker_old)
    assert _node(ca, "x" * 25, "worker").cert_pem.count(b"BEGIN CERTIFICATE") == 1


def test_without_the_cross_signed_root_a_worker_that_has_not_moved_cannot_verify_the_manager(
        serve: Any) -> None:
    """The failure the cross-signed root prevents (what the processes' logs showed)."""
    old = new_root(NOW)
    ca = ClusterCA(_Runtime({"RootCA": old.to_store()}))
    worker_old = _node(ca, "w" * 25, "worker")
    ca.runtime._cluster.extra = ClusterCA.rotated(ca.runtime._cluster.extra, NOW)
    manager_new = _node(ca, "m" * 25, "manager")
    leaf_only = tls.NodeCredentials(tls.split_pems(manager_new.cert_pem)[0], manager_new.key_pem,
                                    manager_new.roots_pem)
    assert not _talks(serve(leaf_only), worker_old)
    assert _talks(serve(manager_new), worker_old)


class _Context:
    def __init__(self, cert_pem: bytes) -> None:
        self._cert = cert_pem

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._cert]}


class _Leader:
    is_leader = True


class _CAStore:
    def __init__(self, nodes: dict[str, _Object]) -> None:
        self.nodes = nodes

    def get(self, kind: str, object_id: str) -> _Object:
        return self.nodes[object_id]


def test_the_leader_records_the_issuer_of_the_certificate_a_node_presents() -> None:
    """A rotation ends on what nodes present, not on what was issued: the root call of a node
    (every second) records the issuer of the certificate it showed, once per change."""
    from manager.ca.service import PRESENTED_ISSUER_FIELD, NodeCAServicer, tls_info

    old = new_root(NOW)
    runtime = _Runtime({"RootCA": old.to_store()})
    runtime.ca = ca = ClusterCA(runtime)  # type: ignore[attr-defined]
    runtime.shell = _Leader()  # type: ignore[attr-defined]
    worker = _node(ca, "w" * 25, "worker")
    node = _Object("w" * 25)
    runtime.store = _CAStore({"w" * 25: node})  # type: ignore[attr-defined]
    recorded: list[tuple[str, bytes, bool]] = []

    async def record(node_id: str, cert: bytes, roots: bytes, presented: bool = False) -> None:
        recorded.append((node_id, cert, presented))
        node.extra = {"Description": {"TLSInfo": tls_info(cert, roots)},
                      PRESENTED_ISSUER_FIELD: tls_info(cert, roots)["CertIssuerPublicKey"]}

    servicer = NodeCAServicer(runtime, record)

    async def ask(cert: bytes) -> bytes:
        reply = await servicer.GetRootCACertificate(None, _Context(cert))  # type: ignore[arg-type]
        return bytes(reply.certificate)

    import asyncio

    assert asyncio.run(ask(worker.cert_pem)) == old.cert_pem
    assert recorded == [("w" * 25, worker.cert_pem, True)]
    asyncio.run(ask(worker.cert_pem))
    assert len(recorded) == 1  # nothing changed: nothing written
    # During a rotation: the old certificate is what it holds until it presents the new one.
    runtime._cluster.extra = ClusterCA.rotated(runtime._cluster.extra, NOW)
    asyncio.run(ask(worker.cert_pem))
    assert len(recorded) == 1
    renewed = _node(ca, "w" * 25, "worker")
    asyncio.run(ask(renewed.cert_pem))
    assert recorded[-1] == ("w" * 25, renewed.cert_pem, True)
    # An operator's certificate, a join certificate and a follower record nothing.
    operator = _node(ca, tls.OPERATOR_CN, "manager")
    asyncio.run(ask(operator.cert_pem))
    asyncio.run(ask(tls.join_certificate()[0]))
    runtime.shell.is_leader = False  # type: ignore[attr-defined]
    asyncio.run(ask(worker.cert_pem))  # a change, but only the leader writes
    assert len(recorded) == 2
    runtime.shell.is_leader = True  # type: ignore[attr-defined]
    asyncio.run(ask(worker.cert_pem))
    assert recorded[-1] == ("w" * 25, worker.cert_pem, True)
