"""Mutual TLS between real node processes (docs/security.md).

* plaintext gRPC to a manager's 2377 (and to a node's 7946) is refused at the handshake;
* a worker's certificate (CN its node ID, OU swarm-worker, O the cluster ID) cannot call Raft or
  the control API, and once its node is removed (``node rm``) it cannot even open its session;
* a join token of another CA is refused by the joining node itself, before the token is sent:
  the node says so in swarmkit's words and exits 3, and the manager never hears of it;
* ``docker swarm join-token --rotate worker`` and ``docker swarm ca --rotate``: every node holds
  a certificate of the new root within a minute, while a service's tasks keep running.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import START_S, Cluster, NodeProc, wait_until
from swarmlet.v1 import control_pb2, control_pb2_grpc, dispatcher_pb2, dispatcher_pb2_grpc

from manager.ca.tokens import ClusterCredentials, rotate_token
from manager.controlapi import ControlError, list_nodes, remove_node
from nodeagent import tls

pytestmark = pytest.mark.slow


def _ready(m: NodeProc, names: set[str]) -> bool:
    rows = {r.hostname: r.status for r in list_nodes(m.target, timeout=2.0)}
    return all(rows.get(n) == "Ready" for n in names)


def _creds(c: Cluster, name: str) -> tls.NodeCredentials:
    # The manager lists a node Ready once it has registered the join, a moment before the node
    # has the answer and has written its certificate.
    wait_until(lambda: tls.NodeCredentials.load(c.workdir / name) is not None, 10, 0.05,
               f"{name} to hold its certificate")
    held = tls.NodeCredentials.load(c.workdir / name)
    assert held is not None, f"{name} holds no certificate"
    return held


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    c.start_all()
    try:
        wait_until(lambda: _ready(c.managers()[0], {"manager1", "worker1"}), START_S, 0.2, "both nodes Ready")
        yield c
    finally:
        c.stop_all()


def test_plaintext_and_a_workers_certificate_are_refused(cluster: Cluster) -> None:
    m = cluster.managers()[0]
    operator = tls.credentials()
    worker, manager = _creds(cluster, "worker1"), _creds(cluster, "manager1")
    node_id = (cluster.workdir / "worker1" / "node_id").read_text().strip()
    assert (worker.identity.node_id, worker.identity.role) == (node_id, "worker")
    assert worker.identity.cluster_id == manager.identity.cluster_id != ""
    assert manager.identity.role == "manager"

    # Plaintext: the TLS handshake fails, nothing is answered.
    with grpc.insecure_channel(m.target) as channel, pytest.raises(grpc.RpcError) as plain:
        control_pb2_grpc.ControlStub(channel).ListNodes(control_pb2.ListNodesRequest(), timeout=5)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE

    # A worker's certificate: its session yes, Raft and the control API no.
    tls.set_credentials(worker)
    with pytest.raises(ControlError, match="unauthorized peer role"):
        list_nodes(m.target, timeout=5)
    with tls.channel(m.target, sync=True) as channel:
        raft = channel.stream_unary("/swarmlet.v1.RaftTransport/Stream")
        with pytest.raises(grpc.RpcError) as denied:
            raft(iter([b""]), timeout=5)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with tls.channel(m.target, sync=True) as channel:
        reply = dispatcher_pb2_grpc.NodeCAStub(channel).GetRootCACertificate(
            dispatcher_pb2.GetRootCACertificateRequest(), timeout=5)
    assert bytes(reply.certificate) == cluster.credentials.ca_cert_pem

    # Removed: the worker's certificate cannot open a session any more.
    tls.set_credentials(operator)
    cluster.nodes["worker1"].kill()
    remove_node(m.target, "worker1", force=True)
    tls.set_credentials(worker)

    def beat() -> Iterator[dispatcher_pb2.Heartbeat]:
        yield dispatcher_pb2.Heartbeat(node_id=node_id, hostname="worker1")

    def refused() -> None:
        with tls.channel(m.target, sync=True) as channel, pytest.raises(grpc.RpcError) as gone:
            next(iter(dispatcher_pb2_grpc.DispatcherStub(channel).Session(beat(), timeout=5)))
        assert gone.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert gone.value.details() == f"Permission denied: node {node_id} was removed from swarm"

    refused()
    # The removal is kept in the Raft store, not in the manager's memory: after a restart the
    # certificate is still refused.
    m.kill()
    m.start()
    tls.set_credentials(operator)
    wait_until(lambda: _ready(m, {"manager1"}), 60, 0.2, "the manager back")
    tls.set_credentials(worker)
    refused()


@requires_docker
def test_a_removed_node_stays_refused_once_its_removal_is_only_in_a_snapshot(cluster: Cluster) -> None:
    """The removal lives in the Cluster object: after the log that recorded it is compacted away
    (autolock on rotates the data key, which takes a snapshot and drops every older segment) and
    the manager restarts from that snapshot, the removed worker's certificate is still refused."""
    c = cluster
    m = c.managers()[0]
    worker = _creds(c, "worker1")
    node_id = worker.identity.node_id
    c.nodes["worker1"].kill()
    _cli(c, "node", "rm", "--force", "worker1")
    raft_dir = c.workdir / "manager1" / "manager" / "raft"
    before = {p.name for p in raft_dir.glob("wal-*.log")}
    key = _cli(c, "swarm", "update", "--autolock=true").split("SWMKEY-1-", 1)[1].split()[0]
    keys = raft_dir / "keys.json"
    wait_until(lambda: "autolock" in keys.read_text() and "pending_dek" not in keys.read_text()
               and "needs_rotation" not in keys.read_text(), 30, 0.2, "the data key rotated")
    # Every segment that held the removal is gone: only a snapshot taken after it remembers it.
    assert list(raft_dir.glob("snap-*.snap")) and not before & {p.name for p in raft_dir.glob("wal-*.log")}
    m.kill()
    m.start()
    wait_until(lambda: docker(c.workdir, m.host, "info", "--format", "{{.Swarm.LocalNodeState}}")
               .stdout.strip() == "locked", 60, 0.2, "manager1 locked")
    done = docker(c.workdir, m.host, "swarm", "unlock", stdin=f"SWMKEY-1-{key}\n")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _ready(m, {"manager1"}), 60, 0.2, "manager1 serving again")
    tls.set_credentials(worker)

    def beat() -> Iterator[dispatcher_pb2.Heartbeat]:
        yield dispatcher_pb2.Heartbeat(node_id=node_id, hostname="worker1")

    with tls.channel(m.target, sync=True) as channel, pytest.raises(grpc.RpcError) as gone:
        next(iter(dispatcher_pb2_grpc.DispatcherStub(channel).Session(beat(), timeout=5)))
    assert gone.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert gone.value.details() == f"Permission denied: node {node_id} was removed from swarm"


def test_a_token_of_another_ca_is_refused_before_it_is_sent(tmp_path: pathlib.Path) -> None:
    c = Cluster(tmp_path)
    (m,) = c.add_managers(1)
    try:
        m.start()
        wait_until(lambda: _ready(m, {"manager1"}), START_S, 0.2, "the manager Ready")
        other = ClusterCredentials.create()
        stranger = c.add_worker("stranger", token=other.worker_token)
        guesser = c.add_worker("guesser", token=rotate_token(c.credentials.worker_token))
        for node in (stranger, guesser):
            node.start()
            assert node.proc is not None and node.proc.wait(30) == 3
        digest = other.worker_token.split("-")[2]
        assert (f"swarmlet: remote CA does not match fingerprint. Expected: {digest}"
                in stranger.log_path.read_text())
        manager_log = m.log_path.read_text()
        # The guesser's token (right CA, wrong secret) reached the manager and was refused there;
        # the stranger's never left its node.
        assert "refused guesser" in manager_log
        assert "stranger" not in manager_log
        assert "A valid join token is necessary to join this cluster" in guesser.log_path.read_text()
    finally:
        c.stop_all()


def _cli(c: Cluster, *args: str, timeout: float = 90) -> str:
    done = docker(c.workdir, c.managers()[0].host, *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


@requires_docker
def test_token_and_ca_rotation_move_every_node_while_tasks_run(cluster: Cluster) -> None:
    c = cluster
    _cli(c, "service", "create", "--name", "web", "--replicas", "2", "--detach", "nginx:1.25")

    def running() -> set[str]:
        out = _cli(c, "service", "ps", "web", "--filter", "desired-state=running", "--format",
                   "{{.ID}} {{.CurrentState}}")
        return {line.split()[0] for line in out.splitlines() if " Running" in line}

    tasks = wait_until(lambda: (found := running()) and len(found) == 2 and found, 60, 0.5, "2 tasks running")

    old_token = _cli(c, "swarm", "join-token", "-q", "worker").strip()
    _cli(c, "swarm", "join-token", "--rotate", "-q", "worker")
    new_token = _cli(c, "swarm", "join-token", "-q", "worker").strip()
    assert new_token != old_token and new_token.split("-")[2] == old_token.split("-")[2]

    old_root = _cli(c, "swarm", "ca").strip()
    began = time.monotonic()
    rotated = docker(c.workdir, c.managers()[0].host, "swarm", "ca", "--rotate", "--detach", timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    seen: list[set[str]] = []

    def moved() -> bool:
        seen.append(running())
        inspect = _cli(c, "swarm", "ca").strip()
        if inspect == old_root:
            return False
        root = inspect.encode() + b"\n"
        held = [_creds(c, n) for n in ("manager1", "worker1")]
        return all(tls.split_pems(h.roots_pem) == [root] and tls.issued_by(h.cert_pem, root) for h in held)

    wait_until(moved, 60, 1.0, "every node on the new root, the old one no longer trusted")
    took = time.monotonic() - began
    print(f"\nCA rotation: every node on the new root after {took:.1f} s")
    assert took < 60
    assert all(s == tasks for s in seen), f"tasks changed during the rotation: {seen}"
    assert running() == tasks
    # The join tokens name the new root now.
    assert _cli(c, "swarm", "join-token", "-q", "worker").strip().split("-")[2] == tls.ca_digest(
        _cli(c, "swarm", "ca").encode())
