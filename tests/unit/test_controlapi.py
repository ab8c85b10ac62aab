"""The control API (server + synchronous client) against a real store and a stand-in for Raft.

The server runs on 127.0.0.1 in a thread with its own event loop; the client is the one
`swarmlet status` uses. Raft is replaced by a shell that applies writes at once (when it "leads"),
refuses them with Swarm's no-leader error, or names another manager as the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from swarmlet.v1 import control_pb2_grpc

from manager.ca.removed import REMOVED_FIELD, is_removed
from manager.ca.service import CertificateGuard
from manager.controlapi import ControlError, cluster_info, inspect_node, list_nodes, remove_node, update_node
from manager.controlapi.server import ControlServer
from manager.engineapi.render_services import service_status
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, NotLeaderError
from manager.state.store import Create, Store, Update, encode_batch, format_timestamp
from nodeagent import tls

NO_LEADER = (
    "The swarm does not have a leader. It's possible that too few managers are online. "
    "Make sure more than half of the managers are online."
)


class _Conf:
    voters = ("a" * 25, "b" * 25)
    learners = ()


class _Node:
    term = 3
    commit = 0
    conf = _Conf()


class FakeShell:
    """Leads, follows (naming a leader) or has no leader, as a test sets it."""

    def __init__(self) -> None:
        self.mode = "leader"
        self.leader_addr = ""
        self.node = _Node()
        self.applied = 0
        # Without a leader for a minute: quorum long lost, a write is refused at once.
        self.leaderless = 60.0

    @property
    def is_leader(self) -> bool:
        return self.mode == "leader"

    @property
    def leader_id(self) -> str:
        return {"leader": "a" * 25, "follower": "b" * 25, "none": ""}[self.mode]

    @property
    def leader_address(self) -> str:
        return self.leader_addr if self.mode == "follower" else ""

    def role(self) -> str:
        return "leader" if self.mode == "leader" else "follower"

    def check(self) -> None:
        if self.mode == "none":
            raise NoLeaderError()
        if self.mode == "follower":
            raise NotLeaderError("b" * 25, self.leader_addr)

    async def read_barrier(self, timeout: float | None = None) -> None:
        self.check()

    def election_seconds(self) -> float:
        return 0.8

    def leaderless_seconds(self) -> float:
        return 0.0 if self.leader_id else self.leaderless


class _FakeCA:
    def expiry(self) -> datetime.timedelta:
        return datetime.timedelta(hours=2)


class FakeRuntime:
    """What ControlServer needs of a ManagerRuntime, with writes applied straight to the store."""

    def __init__(self, node_id: str, hostname: str) -> None:
        self.node_id = node_id
        self.hostname = hostname
        self.time_scale = 1.0
        self.store = Store()
        self.shell = FakeShell()
        self._index = itertools.count(1)
        self.ca = _FakeCA()

    async def write(self, ops: list[Any], timeout: float = 5.0) -> Any:
        self.shell.check()
        index = next(self._index)
        result = self.store.apply(index, encode_batch(ops, now=format_timestamp(time.time())))
        self.shell.node.commit = self.shell.applied = index
        if not result.ok:
            assert result.error is not None
            raise result.error
        return result

    def cluster(self) -> Any:
        found = self.store.find("cluster")
        return found[0] if found else None

    def seed(self) -> None:
        """A cluster object, two managers and a worker, as the dispatcher would have written them."""
        ops: list[Any] = [Create("cluster", "c" * 25, {"Name": "default"}, {}, {})]
        for nid, host, role, leader in (
            ("a" * 25, "manager1", "manager", True),
            ("b" * 25, "manager2", "manager", False),
            ("w" * 25, "worker1", "worker", False),
        ):
            extra: dict[str, Any] = {"Description": {"Hostname": host, "Engine": {"EngineVersion": "0.1.0"}}}
            if role == "manager":
                extra["ManagerStatus"] = {
                    "Leader": leader,
                    "Reachability": "reachable",
                    "Addr": f"127.0.0.1:{2377}",
                }
            spec = {"Name": "", "Role": role, "Availability": "active", "Labels": {}}
            ops.append(Create("node", nid, spec, {"State": "ready", "Addr": "127.0.0.1"}, extra))
        asyncio.run(self.write(ops))


class ServerThread:
    """A grpc.aio server for one FakeRuntime, on its own loop in a thread."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self._ready.wait(10), "server did not start"

    def _main(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server()
        control_pb2_grpc.add_ControlServicer_to_server(ControlServer(self.runtime), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(None)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


@contextlib.contextmanager
def _later(seconds: float, change: Callable[[], object]) -> Iterator[None]:
    """``change()`` called from a timer thread ``seconds`` from now, unless the block ended first."""
    timer = threading.Timer(seconds, change)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def _serving(node_id: str, hostname: str, *, leader: str | None = None
             ) -> Iterator[tuple[FakeRuntime, ServerThread]]:
    """A seeded manager's control API on a port of its own, closed at the end; with ``leader``, a
    follower of the manager listening there."""
    runtime = FakeRuntime(node_id, hostname)
    runtime.seed()
    if leader is not None:
        runtime.shell.mode = "follower"
        runtime.shell.leader_addr = leader
    server = ServerThread(runtime)
    try:
        yield runtime, server
    finally:
        server.close()


@pytest.fixture
def manager() -> Iterator[tuple[FakeRuntime, ServerThread]]:
    with _serving("a" * 25, "manager1") as serving:
        yield serving


def test_node_list_uses_swarms_words(manager: tuple[FakeRuntime, ServerThread]) -> None:
    runtime, server = manager
    runtime.shell.last_contact = {"b" * 25: time.monotonic()}  # type: ignore[attr-defined]
    rows = {r.hostname: r for r in list_nodes(server.target)}
    assert set(rows) == {"manager1", "manager2", "worker1"}
    assert (rows["manager1"].status, rows["manager1"].availability, rows["manager1"].manager_status) == (
        "Ready",
        "Active",
        "Leader",
    )
    assert rows["manager2"].manager_status == "Reachable"
    assert rows["worker1"].manager_status == ""
    assert rows["worker1"].role == "worker"
    assert [h for h, r in rows.items() if r.is_self] == ["manager1"]
    assert rows["worker1"].engine_version == "0.1.0"
    # The leader has not heard from manager2 for an election timeout: Unreachable, though its
    # Node object (which no write may have updated, e.g. without quorum) still says reachable.
    runtime.shell.last_contact = {}  # type: ignore[attr-defined]
    rows = {r.hostname: r for r in list_nodes(server.target)}
    assert (rows["manager2"].status, rows["manager2"].manager_status) == ("Ready", "Unreachable")
    assert rows["manager1"].manager_status == "Leader"


def test_label_added_by_hostname_is_read_back(manager: tuple[FakeRuntime, ServerThread]) -> None:
    _runtime, server = manager
    before = inspect_node(server.target, "worker1")
    update_node(server.target, "worker1", labels_add={"zone": "east"})
    after = inspect_node(server.target, "worker1")
    assert after.labels == {"zone": "east"}
    assert after.version > before.version
    # By id prefix too, and availability in Swarm's spelling.
    update_node(server.target, "www", availability="Drain")
    assert inspect_node(server.target, "w" * 25).availability == "Drain"


def test_bad_availability_is_refused_and_changes_nothing(manager: tuple[FakeRuntime, ServerThread]) -> None:
    runtime, server = manager
    before = runtime.store.get("node", "w" * 25)
    with pytest.raises(ControlError, match="invalid availability"):
        update_node(server.target, "worker1", availability="sleepy", labels_add={"a": "b"})
    assert runtime.store.get("node", "w" * 25) == before


def test_unknown_node_says_not_found(manager: tuple[FakeRuntime, ServerThread]) -> None:
    _, server = manager
    with pytest.raises(ControlError) as err:
        update_node(server.target, "nosuchnode", labels_add={"a": "b"})
    assert str(err.value) == "node nosuchnode not found"


def test_without_a_leader_writes_fail_with_swarms_message_but_reads_work(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    runtime, server = manager
    runtime.shell.mode = "none"
    before = runtime.store.get("node", "w" * 25)
    with pytest.raises(ControlError) as err:
        update_node(server.target, "worker1", labels_add={"a": "b"})
    assert str(err.value) == NO_LEADER == NO_LEADER_MESSAGE
    assert runtime.store.get("node", "w" * 25) == before
    rows = list_nodes(server.target)  # node ls still answers, from the local store
    assert len(rows) == 3
    # The stored Leader flag of a leader that is gone is not shown as if it still led; a manager
    # this one has not heard from within an election timeout is Unreachable, one it has, Reachable.
    assert [r.manager_status for r in rows if r.role == "manager"] == ["Reachable", "Unreachable"]
    runtime.shell.last_contact = {"b" * 25: time.monotonic()}  # type: ignore[attr-defined]
    rows = list_nodes(server.target)
    assert [r.manager_status for r in rows if r.role == "manager"] == ["Reachable", "Reachable"]
    info = cluster_info(server.target)
    assert info["quorum"] is False and info["leader"] is None


def test_follower_forwards_writes_to_the_leader(manager: tuple[FakeRuntime, ServerThread]) -> None:
    leader_runtime, leader = manager
    with _serving("b" * 25, "manager2", leader=leader.target) as (_, follower):
        update_node(follower.target, "worker1", labels_add={"via": "follower"})
        assert dict(leader_runtime.store.get("node", "w" * 25).spec["Labels"]) == {"via": "follower"}
        # A linearizable read on the follower is answered by the leader too.
        assert inspect_node(follower.target, "worker1").labels == {"via": "follower"}
        assert inspect_node(follower.target, "worker1", local=True).labels == {}


def test_follower_whose_leader_is_gone_answers_with_swarms_message(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    """The leader's port refuses the connection; the follower soon stops believing in it, and
    no other leader comes: Swarm's message, nothing written."""
    runtime, server = manager
    runtime.shell.mode = "follower"
    runtime.shell.leader_addr = "127.0.0.1:1"  # nothing listens there
    runtime.shell.leaderless = 0.0
    before = runtime.store.get("node", "w" * 25)

    def lose_the_leader() -> None:
        runtime.shell.mode = "none"
        runtime.shell.leaderless = 60.0  # and none since, for long

    start = time.monotonic()
    with _later(0.3, lose_the_leader), pytest.raises(ControlError) as err:
        update_node(server.target, "worker1", labels_add={"a": "b"}, timeout=10.0)
    assert str(err.value) == NO_LEADER
    assert time.monotonic() - start < 5.0  # answered once no leader was left, not at the deadline
    assert runtime.store.get("node", "w" * 25) == before


def test_a_write_waits_for_a_leader_elected_meanwhile(manager: tuple[FakeRuntime, ServerThread]) -> None:
    """As swarmkit's LeaderConn: a manager that has known no leader for a moment only (an
    election under way) waits for one and then writes, instead of refusing."""
    runtime, server = manager
    runtime.shell.mode = "none"
    runtime.shell.leaderless = 0.1
    start = time.monotonic()
    with _later(0.5, lambda: setattr(runtime.shell, "mode", "leader")):
        update_node(server.target, "worker1", labels_add={"zone": "east"})
    assert time.monotonic() - start >= 0.5
    assert dict(runtime.store.get("node", "w" * 25).spec["Labels"]) == {"zone": "east"}
    # A linearizable read and a removal wait the same way.
    runtime.shell.mode = "none"
    with _later(0.5, lambda: setattr(runtime.shell, "mode", "leader")):
        assert inspect_node(server.target, "worker1").labels == {"zone": "east"}
        remove_node(server.target, "worker1", force=True)
    assert sorted(_hostnames(runtime)) == ["manager1", "manager2"]


def test_a_write_is_refused_once_no_leader_came_for_several_elections(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    """No leader for a while already: Swarm's message, without waiting for the deadline; and a
    manager left without one in the middle of waiting gives up then too."""
    runtime, server = manager
    runtime.shell.mode = "none"
    before = runtime.store.get("node", "w" * 25)
    start = time.monotonic()
    with pytest.raises(ControlError) as err:
        update_node(server.target, "worker1", labels_add={"a": "b"}, timeout=10.0)
    assert str(err.value) == NO_LEADER
    assert time.monotonic() - start < 2.0
    runtime.shell.leaderless = 0.0
    start = time.monotonic()
    with _later(0.5, lambda: setattr(runtime.shell, "leaderless", 60.0)), pytest.raises(ControlError) as err:
        update_node(server.target, "worker1", labels_add={"a": "b"}, timeout=10.0)
    assert str(err.value) == NO_LEADER
    assert 0.5 <= time.monotonic() - start < 3.0
    assert runtime.store.get("node", "w" * 25) == before


def test_a_leader_that_no_longer_leads_is_asked_again_after_the_new_one_is_known(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    """The follower forwards to the manager it believes leads; that one has stepped down and
    refuses before proposing; once the follower learns of the new leader, the write goes there."""
    old_runtime, old = manager
    old_runtime.shell.mode = "none"  # stepped down: refuses forwarded writes at once
    with (_serving("c" * 25, "manager3") as (new_runtime, new),
          _serving("b" * 25, "manager2", leader=old.target) as (follower_runtime, follower),
          _later(0.5, lambda: setattr(follower_runtime.shell, "leader_addr", new.target))):
        update_node(follower.target, "worker1", labels_add={"via": "new leader"})
    assert dict(new_runtime.store.get("node", "w" * 25).spec["Labels"]) == {"via": "new leader"}
    assert dict(old_runtime.store.get("node", "w" * 25).spec["Labels"]) == {}


def test_cluster_info_names_the_leader(manager: tuple[FakeRuntime, ServerThread]) -> None:
    _, server = manager
    info = cluster_info(server.target)
    assert info["cluster_id"] == "c" * 25
    assert info["leader"] == "manager1" and info["quorum"] is True
    assert info["managers"] == 2 and info["raft_role"] == "leader"
    assert (info["raft_voters"], info["raft_learners"]) == (2, 0)


def test_unreachable_manager_is_reported_with_its_address() -> None:
    with pytest.raises(ControlError, match=r"127\.0\.0\.1:1"):
        list_nodes("127.0.0.1:1", timeout=1.0)


def _update_role(target: str, node: str, role: str) -> None:
    from swarmlet.v1 import control_pb2

    with grpc.insecure_channel(target) as channel:
        stub = control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
        stub.UpdateNode(control_pb2.UpdateNodeRequest(node=node, role=role), timeout=5)


def _conf(voters: tuple[str, ...], learners: tuple[str, ...] = ()) -> Any:
    conf = _Conf()
    conf.voters, conf.learners = voters, learners  # type: ignore[misc]
    return conf


def test_promote_and_demote_write_the_spec_role(manager: tuple[FakeRuntime, ServerThread]) -> None:
    runtime, server = manager
    _update_role(server.target, "worker1", "worker")  # restating the role changes nothing: fine
    _update_role(server.target, "worker1", "manager")
    assert runtime.store.get("node", "w" * 25).spec["Role"] == "manager"
    # manager2 is a voter; with it gone, manager1 (this leader) alone is a majority of one.
    _update_role(server.target, "manager2", "worker")
    demoted = runtime.store.get("node", "b" * 25)
    assert demoted.spec["Role"] == "worker"
    row = next(n for n in list_nodes(server.target) if n.hostname == "manager2")
    assert row.manager_status == ""  # the column empties at once, as in Swarm


def test_demoting_a_manager_not_yet_in_raft_is_refused_in_swarms_words(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    runtime, server = manager
    _update_role(server.target, "worker1", "manager")  # promoted, not yet added to Raft
    with pytest.raises(grpc.RpcError) as err:
        _update_role(server.target, "worker1", "worker")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "rpc error: code = NotFound desc = can't find manager in raft memberlist"
    assert runtime.store.get("node", "w" * 25).spec["Role"] == "manager"


def test_demoting_that_would_lose_quorum_is_refused_and_changes_nothing(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    runtime, server = manager
    _update_role(server.target, "worker1", "manager")
    # Three voters, manager2 silent: without worker1 only manager1 of the two left is reachable.
    runtime.shell.node.conf = _conf(("a" * 25, "b" * 25, "w" * 25))  # type: ignore[assignment]
    runtime.shell.last_contact = {"w" * 25: time.monotonic()}  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        _update_role(server.target, "worker1", "worker")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == (
        "rpc error: code = FailedPrecondition desc = can't remove member from the raft: "
        "this would result in a loss of quorum"
    )
    assert runtime.store.get("node", "w" * 25).spec["Role"] == "manager"
    runtime.shell.last_contact["b" * 25] = time.monotonic()  # type: ignore[attr-defined]
    _update_role(server.target, "worker1", "worker")  # manager2 answers again: allowed
    assert runtime.store.get("node", "w" * 25).spec["Role"] == "worker"


def test_a_follower_forwards_a_role_change_to_the_leader(manager: tuple[FakeRuntime, ServerThread]) -> None:
    leader_runtime, leader = manager
    with _serving("b" * 25, "manager2", leader=leader.target) as (follower_runtime, follower):
        _update_role(follower.target, "worker1", "manager")
    assert leader_runtime.store.get("node", "w" * 25).spec["Role"] == "manager"
    assert follower_runtime.store.get("node", "w" * 25).spec["Role"] == "worker"


def test_node_rm_refuses_a_raft_member_and_a_live_node_without_force(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    runtime, server = manager
    with pytest.raises(ControlError) as err:
        remove_node(server.target, "manager2", force=True)
    assert str(err.value) == (
        f"rpc error: code = FailedPrecondition desc = node {'b' * 25} is a cluster manager and is a "
        "member of the raft cluster. It must be demoted to worker before removal"
    )
    with pytest.raises(ControlError) as err:
        remove_node(server.target, "worker1")
    assert str(err.value) == (
        f"rpc error: code = FailedPrecondition desc = node {'w' * 25} is not down and can't be removed"
    )
    with pytest.raises(ControlError) as err:
        remove_node(server.target, "nosuchnode")
    assert str(err.value) == "node nosuchnode not found"
    assert len(runtime.store.find("node")) == 3
    assert runtime.cluster().extra.get(REMOVED_FIELD) is None
    remove_node(server.target, "worker1", force=True)
    assert sorted(_hostnames(runtime)) == ["manager1", "manager2"]
    # The removal is in the Cluster object: a store rebuilt from a snapshot (a manager that
    # restarts after compaction, a new member) still refuses the node's certificate.
    removed = runtime.cluster().extra[REMOVED_FIELD]
    assert list(removed) == ["w" * 25]
    expiry = datetime.datetime.fromisoformat(removed["w" * 25]["Expiry"])
    now = datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=1.9) < expiry - now <= datetime.timedelta(hours=2)
    rebuilt = Store()
    rebuilt.restore(runtime.store.snapshot(), 10)
    guard = CertificateGuard(lambda node_id: is_removed(rebuilt.find("cluster")[0], node_id))
    tls.set_enabled(True)
    try:
        peer = tls.PeerIdentity("w" * 25, "worker", "c" * 25, now, "swarm-ca")
        assert guard.check("/swarmlet.v1.Dispatcher/Session", peer) == (
            grpc.StatusCode.PERMISSION_DENIED, f"Permission denied: node {'w' * 25} was removed from swarm")
        other = tls.PeerIdentity("b" * 25, "manager", "c" * 25, now, "swarm-ca")
        assert guard.check("/swarmlet.v1.Dispatcher/Session", other) is None
    finally:
        tls.set_enabled(False)


def _hostnames(runtime: FakeRuntime) -> list[str]:
    return [n.extra["Description"]["Hostname"] for n in runtime.store.find("node")]


def test_demoting_the_last_manager_says_so_in_swarms_words() -> None:
    runtime = FakeRuntime("a" * 25, "manager1")
    runtime.seed()
    other = runtime.store.get("node", "b" * 25)
    spec = {**other.spec, "Role": "worker"}
    asyncio.run(runtime.write([Update("node", other.id, other.version, spec=spec)]))
    server = ServerThread(runtime)
    try:
        with pytest.raises(grpc.RpcError) as err:
            _update_role(server.target, "manager1", "worker")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == (
            "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"
        )
        assert runtime.store.get("node", "a" * 25).spec["Role"] == "manager"
    finally:
        server.close()


def test_node_rm_force_orphans_the_nodes_tasks_so_service_ls_no_longer_counts_them(
    manager: tuple[FakeRuntime, ServerThread],
) -> None:
    """As swarmkit's RemoveNode (orphanNodeTasks): in the removing write, every task of the node
    that had not stopped moves to ``orphaned``, since no agent will report on it again; a
    stopped one keeps its state. ``docker service ls`` then shows 2/3 until the replacement runs,
    then 3/3 (it showed 3/3, then 4/3: the removed node's task still counted as running)."""
    runtime, server = manager
    service = {"Name": "web", "Mode": {"Replicated": {"Replicas": 3}}, "TaskTemplate": {}}
    ops: list[Any] = [Create("service", "s" * 25, service, {}, {})]
    for task_id, node_id, slot, task_state in (
        ("t1", "a" * 25, 1, "running"),
        ("t2", "b" * 25, 2, "running"),
        ("t3", "w" * 25, 3, "running"),
        ("t4", "w" * 25, 3, "shutdown"),  # an earlier task of the slot, stopped
    ):
        extra = {"ServiceID": "s" * 25, "NodeID": node_id, "Slot": slot, "DesiredState": "running"}
        ops.append(Create("task", task_id * 5, {}, {"State": task_state, "Message": "started"}, extra))
    asyncio.run(runtime.write(ops))

    def running_tasks() -> int:
        stored = runtime.store.get("service", "s" * 25)
        return service_status(stored, runtime.store.find("task", service_id="s" * 25))["RunningTasks"]

    assert running_tasks() == 3
    remove_node(server.target, "worker1", force=True)
    assert running_tasks() == 2
    orphaned = runtime.store.get("task", "t3" * 5)
    assert (orphaned.status["State"], orphaned.status["Message"]) == (
        "orphaned", "Task belonged to a node that has been deleted")
    assert runtime.store.get("task", "t4" * 5).status["State"] == "shutdown"
    assert [runtime.store.get("task", t * 5).status["State"] for t in ("t1", "t2")] == ["running", "running"]
