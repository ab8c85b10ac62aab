"""Three managers as real processes on 127.0.0.x over gRPC: failover, durability, linearizability.

Clients write node labels through the control API (each write commits through Raft) while the
leader is SIGKILLed; the history of writes and linearizable reads is checked, and every
acknowledged write must be on all three managers after the killed one is back, and again after
all three were killed at once and restarted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import START_S, Cluster, NodeProc, free_port, loopback_hosts, wait_until

from manager.check.linearizable import check_history
from manager.controlapi import ControlError, cluster_info, inspect_node, list_nodes, update_node

LABELLED = "manager1"  # the node whose labels the clients write


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(3)
    try:
        yield c
    finally:
        c.stop_all()


def _leader(managers: list[NodeProc]) -> NodeProc | None:
    """The manager that says it leads, if every live one agrees on it."""
    seen = set()
    for m in managers:
        if not m.alive():
            continue
        info = cluster_info(m.target, timeout=1.0)
        seen.add(info["leader_addr"])
    if len(seen) != 1 or None in seen:
        return None
    addr = seen.pop()
    return next((m for m in managers if m.target == addr), None)


def _formed(c: Cluster) -> bool:
    managers = c.managers()
    for m in managers:
        rows = list_nodes(m.target, timeout=1.0)
        statuses = sorted(r.manager_status for r in rows if r.role == "manager")
        if statuses != ["Leader", "Reachable", "Reachable"]:
            return False
        info = cluster_info(m.target, timeout=1.0)
        if info["raft_role"] not in ("leader", "follower") or info["raft_voters"] != 3:
            return False
    return _leader(managers) is not None


def _start_and_form(c: Cluster) -> None:
    for m in c.managers():
        m.start()
    try:
        wait_until(lambda: _formed(c), START_S, 0.1, "three managers with a leader")
    except AssertionError:
        print(c.logs())
        raise


class Clients:
    """Client threads writing and reading labels; records a history in the checker's format."""

    def __init__(self, managers: list[NodeProc], count: int = 3) -> None:
        self.managers = managers
        self.events: list[dict[str, Any]] = []
        self.acked: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]
        self._seq = 0

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self, process: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            target = self.managers[(process + n) % len(self.managers)]
            if not target.alive():
                continue
            key = f"r{n % 2}"
            if n % 3 == 0:
                self._read(process, target, key)
            else:
                self._write(process, target, key)

    def _write(self, process: int, target: NodeProc, key: str) -> None:
        with self._lock:
            self._seq += 1
            value = self._seq
        marker = f"w{value}"
        self._record({"process": process, "type": "invoke", "f": "write", "key": key, "value": value})
        try:
            # One write sets the register and leaves its own marker, so that durability can be
            # checked for every acknowledged write even after later writes overwrite the register.
            update_node(target.target, LABELLED, labels_add={key: str(value), marker: "1"}, timeout=3.0)
        except ControlError as exc:
            definite = "does not have a leader" in str(exc) or "out of sequence" in str(exc)
            kind = "fail" if definite and "may or may not" not in str(exc) else "info"
            self._record({"process": process, "type": kind, "f": "write", "key": key, "value": value})
            time.sleep(0.02)
            return
        self._record({"process": process, "type": "ok", "f": "write", "key": key, "value": value})
        with self._lock:
            self.acked.add(marker)

    def _read(self, process: int, target: NodeProc, key: str) -> None:
        self._record({"process": process, "type": "invoke", "f": "read", "key": key, "value": None})
        try:
            row = inspect_node(target.target, LABELLED, timeout=3.0)
        except ControlError:
            self._record({"process": process, "type": "fail", "f": "read", "key": key, "value": None})
            time.sleep(0.02)
            return
        raw = (row.labels or {}).get(key)
        value = int(raw) if raw is not None else None
        self._record({"process": process, "type": "ok", "f": "read", "key": key, "value": value})

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def _labels_everywhere(c: Cluster, wanted: set[str]) -> bool:
    """Every manager's own store (no forwarding) holds every wanted marker."""
    for m in c.managers():
        labels = inspect_node(m.target, LABELLED, local=True, timeout=2.0).labels or {}
        if not wanted <= set(labels):
            return False
    return True


@pytest.mark.slow
def test_leader_sigkill_during_writes_then_everything_acknowledged_survives(cluster: Cluster) -> None:
    c = cluster
    _start_and_form(c)
    managers = c.managers()
    with Clients(managers) as clients:
        wait_until(lambda: len(clients.acked) >= 30, 20, what="30 acknowledged writes")
        old = _leader(managers)
        assert old is not None
        survivors = [m for m in managers if m is not old]
        old.kill(signal.SIGKILL)
        killed_at = time.monotonic()

        def new_leader() -> NodeProc | None:
            leader = _leader(survivors)
            return leader if leader is not None and leader is not old else None

        wait_until(new_leader, 5, 0.01, "a new leader")
        failover = time.monotonic() - killed_at
        acked_during = len(clients.acked)
        wait_until(lambda: len(clients.acked) >= acked_during + 20, 20, what="writes after failover")
        old.start()
        wait_until(lambda: len(clients.acked) >= acked_during + 40, 20, what="writes after the restart")
    print(f"failover: new leader {failover:.3f} s after SIGKILL; {len(clients.acked)} writes acknowledged")
    # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy loop):
    # min 0.033 s, median 0.054 s, max 0.078 s (5 later runs at load average 7 to 10: max
    # 0.080 s); the bound is 12 times that worst.
    assert failover < 1.0, f"no new leader within 1 s (took {failover:.3f} s)\n{c.logs()}"

    wait_until(lambda: _labels_everywhere(c, clients.acked), 15, 0.2, "every acknowledged write on all three")
    result = check_history(clients.events, model="kv")
    assert result.ok, result.explanation

    # All three at once: nothing acknowledged may be lost.
    for m in managers:
        m.kill(signal.SIGKILL)
    for m in managers:
        m.start()
    try:
        wait_until(lambda: _leader(managers), START_S, 0.1, "a leader after restarting all three")
        wait_until(lambda: _labels_everywhere(c, clients.acked), 20, 0.2, "acknowledged writes after restart")
    except AssertionError:
        print(c.logs())
        raise


@pytest.mark.slow
def test_a_paused_leader_is_replaced_after_the_election_timeout_and_steps_down_on_resume(
    cluster: Cluster,
) -> None:
    """A paused (SIGSTOP) leader still accepts connections, so only the election timeout can tell:
    a new leader within that timeout (at most 0.8 s) plus 1 s; resumed, the old one follows."""
    c = cluster
    _start_and_form(c)
    managers = c.managers()
    old = _leader(managers)
    assert old is not None and old.proc is not None
    survivors = [m for m in managers if m is not old]
    old.proc.send_signal(signal.SIGSTOP)
    try:
        paused_at = time.monotonic()

        def new_leader() -> NodeProc | None:
            leader = _leader(survivors)
            return leader if leader is not None and leader is not old else None

        wait_until(new_leader, 5, 0.01, "a new leader")
        took = time.monotonic() - paused_at
        print(f"paused leader replaced after {took:.3f} s")
        # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy
        # loop): min 0.367 s, median 0.398 s, max 0.599 s (5 later runs at load average 7 to 10:
        # max 0.677 s); the bound (election timeout at most 0.8 s, plus 1 s) is 2.7 times that.
        assert took < 1.8, f"no new leader within the election timeout plus 1 s ({took:.3f} s)"
        update_node(survivors[0].target, LABELLED, labels_add={"during": "pause"}, timeout=3.0)
    finally:
        old.proc.send_signal(signal.SIGCONT)
    wait_until(
        lambda: cluster_info(old.target, timeout=1.0)["raft_role"] == "follower",
        5,
        0.05,
        "old leader follows",
    )
    wait_until(lambda: _leader(managers) is not None and _leader(managers) is not old, 5, 0.05, "one leader")
    wait_until(
        lambda: _labels_everywhere(c, {"during"}), 5, 0.1, "the write made during the pause everywhere"
    )


# ---------------------------------------------------------------------- snapshots, in one process


class _Dict:
    """A replicated dict as the state machine, so that snapshots are easy to compare."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, index: int, data: bytes) -> int:
        key, _, value = data.decode().partition("=")
        self.data[key] = value
        return index

    def snapshot(self) -> bytes:
        return json.dumps(self.data, sort_keys=True).encode()

    def restore(self, data: bytes, index: int) -> None:
        self.data = json.loads(data)


def test_a_manager_that_fell_behind_the_compacted_log_catches_up_from_a_snapshot(tmp_path: Any) -> None:
    """Shells on loopback gRPC with small snapshots: a stopped member returns after the leader
    compacted past it, receives the snapshot, and everyone restarts from disk with the same state."""
    asyncio.run(_snapshot_scenario(tmp_path))


async def _snapshot_scenario(tmp_path: Any) -> None:
    import grpc

    from manager.state.raft.config import RaftConfig
    from manager.state.raft.shell import NotLeaderError, RaftShell, raft_transport_handler

    hosts = loopback_hosts(3)
    addrs = {f"n{i}": f"{h}:{free_port(h)}" for i, h in enumerate(hosts)}
    config = RaftConfig.test()  # snapshot every 50 entries, keep 10 behind
    shells: dict[str, RaftShell] = {}
    servers: dict[str, grpc.aio.Server] = {}

    async def up(name: str) -> None:
        shell = RaftShell(
            name, addrs[name], tmp_path / name, _Dict(), voters=tuple(addrs), peers=addrs, raft_config=config
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((raft_transport_handler(lambda: shell),))
        server.add_insecure_port(addrs[name])
        await shell.start()
        await server.start()
        shells[name], servers[name] = shell, server

    async def down(name: str) -> None:
        await servers.pop(name).stop(None)
        await shells.pop(name).stop()

    async def leader() -> RaftShell:
        for _ in range(200):
            found = [s for s in shells.values() if s.is_leader]
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        raise AssertionError("no leader")

    async def write(first: int, count: int) -> None:
        i = first
        while i < first + count:
            try:
                await (await leader()).propose(f"k{i % 70}=v{i}".encode(), timeout=5)
                i += 1
            except NotLeaderError:
                await asyncio.sleep(0.05)

    async def converged(names: list[str]) -> None:
        for _ in range(300):
            states = [shells[n].state_machine.data for n in names]  # type: ignore[attr-defined]
            if all(s == states[0] for s in states) and len({shells[n].applied for n in names}) == 1:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the managers did not converge")

    try:
        for name in addrs:
            await up(name)
        await write(0, 60)
        lead = (await leader()).node_id
        behind = next(n for n in addrs if n != lead)
        await down(behind)
        await write(60, 200)
        # The entries the stopped member lacks are gone from the leader's log: only a snapshot helps.
        first_index = (await leader()).node.status()["first_index"]
        assert isinstance(first_index, int) and first_index > 61
        await up(behind)
        await converged(list(addrs))
        expected = dict(shells[lead].state_machine.data)  # type: ignore[attr-defined]
        assert expected[f"k{259 % 70}"] == "v259"
        # Everyone from disk: the snapshot plus the log after it give the same state.
        for name in list(addrs):
            await down(name)
        for name in addrs:
            await up(name)
        await leader()
        await write(260, 1)
        await converged(list(addrs))
        for name in addrs:
            data = shells[name].state_machine.data  # type: ignore[attr-defined]
            assert {k: v for k, v in data.items() if k != f"k{260 % 70}"} == {
                k: v for k, v in expected.items() if k != f"k{260 % 70}"
            }
    finally:
        for name in list(shells):
            await down(name)


def test_every_failover_is_fast_when_leaders_are_killed_and_restarted_in_turn(cluster: Cluster) -> None:
    """Kill the leader, restart it, kill the next leader, and so on: each new leader within 1 s.

    Regression: after a peer had been down, messages to it went to the request generators of the
    streams that failed meanwhile (gRPC keeps consuming them), so the first elections after a
    restart took 2 to 20 s. Found on compose by bench/compose_failover.py.
    """
    c = cluster
    _start_and_form(c)
    managers = c.managers()
    took = []
    for _ in range(3):
        old = wait_until(lambda: _leader(managers), 10, 0.05, "one leader")
        survivors = [m for m in managers if m is not old]
        time.sleep(1.0)  # let the followers' streams to each other go idle, as between elections
        old.kill(signal.SIGKILL)
        killed_at = time.monotonic()

        def new_leader(survivors: list[NodeProc] = survivors, old: NodeProc = old) -> NodeProc | None:
            leader = _leader(survivors)
            return leader if leader is not None and leader is not old else None

        wait_until(new_leader, 10, 0.01, "a new leader")
        took.append(time.monotonic() - killed_at)
        old.start()
        wait_until(lambda: _formed(c), START_S, 0.1, "the killed manager back as a follower")
    print("failovers:", ", ".join(f"{t:.3f} s" for t in took))
    # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy loop),
    # 18 failovers: min 0.034 s, median 0.049 s, max 0.075 s (15 more at load average 7 to 10: max
    # 0.138 s); the bound is 7 times that worst, and far below the 2 to 20 s of the regression.
    assert max(took) < 1.0, f"a failover took more than 1 s: {took}\n{c.logs()}"


@pytest.mark.slow
def test_a_partitioned_leader_loses_nothing_acknowledged_and_the_history_stays_linearizable(
    cluster: Cluster,
) -> None:
    """The leader's links to both other managers cut (`swarmlet chaos partition`'s rules, set on
    every agent's admin service) while clients write and read through all three: the majority
    elects, the old leader answers with Swarm's errors, and after the heal every acknowledged
    write is on all three and the history is linearizable."""
    from deploy.linkfaults import plan
    from nodeagent.transport.faults import get_link_faults, set_link_faults

    c = cluster
    _start_and_form(c)
    managers = c.managers()
    admin = {m.name: f"{m.host}:7946" for m in managers}

    def tell(action: str, node: str | None, peers: list[str]) -> None:
        current = {name: get_link_faults(addr) for name, addr in admin.items()}
        for name, rules in plan(action, node, peers, None, current).items():
            set_link_faults(admin[name], rules)

    with Clients(managers) as clients:
        wait_until(lambda: len(clients.acked) >= 30, 20, what="30 acknowledged writes")
        old = _leader(managers)
        assert old is not None
        majority = [m for m in managers if m is not old]
        tell("partition", old.name, [m.name for m in majority])
        cut_at = time.monotonic()

        def new_leader() -> NodeProc | None:
            leader = _leader(majority)
            return leader if leader is not None and leader is not old else None

        wait_until(new_leader, 10, 0.01, "a new leader on the majority side")
        took = time.monotonic() - cut_at
        acked_during = len(clients.acked)
        wait_until(lambda: len(clients.acked) >= acked_during + 20, 20, what="writes after the partition")
        tell("heal", None, [])
        wait_until(lambda: _leader(managers) is not None, 10, 0.05, "one leader after heal")
        acked_healed = len(clients.acked)
        wait_until(lambda: len(clients.acked) >= acked_healed + 20, 20, what="writes after heal")
    print(f"partition: new leader {took:.3f} s after the rules were set; {len(clients.acked)} writes acked")
    # A liveness bound (the election timeout is at most 0.8 s); the speed figure is bench's.
    assert took < 5.0, f"no new leader within 5 s of the partition ({took:.3f} s)\n{c.logs()}"
    wait_until(lambda: _labels_everywhere(c, clients.acked), 15, 0.2, "every acknowledged write on all three")
    result = check_history(clients.events, model="kv")
    assert result.ok, result.explanation
