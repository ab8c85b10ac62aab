"""One simulated manager for :mod:`manager.state.raft.simcluster`: the core, storage, the real store.

:class:`SimStorage` is what survives a crash; :class:`SimManager` is one incarnation of a manager:
a :class:`RaftNode` on a simulated host that ticks, persists every Ready to its storage, applies
committed entries to the replicated :class:`~manager.state.store.Store` through the same
:class:`~manager.state.machine.StoreMachine` the managers run (batches made by ``encode_batch``,
the store's snapshots and restores) and answers client requests.

The clients speak a small key-value language (read, write, cas) that the linearizability
checker knows. Each key is a worker Node object whose ID is the key; its value is the JSON text
of the node label ``value``, as ``docker node update --label-add value=...`` would set it. So:

* read: a linearizable read (ReadIndex, or an empty batch through the log), then the label;
* write: an Update carrying the version this manager holds (a Create if it holds none); when the
  store answers "update out of sequence" (or the Create finds the node there), the manager reads
  its store again and retries, as a Swarm API client does;
* cas: a linearizable read; if the value is not the expected one, the cas fails; otherwise an
  Update carrying the version read, so it applies only if nobody wrote the node since: the store's
  optimistic concurrency is the compare. Out of sequence: read and compare again.

This module needs from its cluster only what :class:`Harness` lists, so it imports nothing of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from manager.state.machine import StoreMachine
from manager.state.raft.config import RaftConfig
from manager.state.raft.core import NotLeader, RaftNode
from manager.state.raft.messages import Message, Ready, Role
from manager.state.raft.types import Entry, EntryType, HardState, SnapshotMeta
from manager.state.store import (
    ApplyResult,
    Create,
    NameConflict,
    NotFound,
    Op,
    Store,
    Update,
    UpdateOutOfSequence,
    encode_batch,
    format_timestamp,
)
from nodeagent.sim import SimHost, Simulator

__all__ = [
    "KEY_KIND",
    "VALUE_LABEL",
    "Harness",
    "SimManager",
    "SimRequest",
    "SimStorage",
    "key_ops",
    "key_value",
]

KEY_KIND = "node"
"""The Store kind a client key lives in: one worker Node per key, its ID the key."""

VALUE_LABEL = "value"
"""The node label that holds a key's value, as JSON text (labels map strings to strings)."""

#: Virtual time 0 is this instant (2026-01-01T00:00:00Z): batches carry it as their ``now``.
_EPOCH_S = 1_767_225_600.0

#: A write or cas that meets "update out of sequence" this many times in a row gives up (refused).
_MAX_ATTEMPTS = 8


class SimStorage:
    """What a manager keeps on disk: it survives crashes."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""

    def append(self, entries: list[Entry]) -> None:
        """Write ``entries``, replacing what was stored from the first one's index on."""
        first = entries[0].index
        while self.entries and self.entries[-1].index >= first:
            self.entries.pop()
        self.entries.extend(entries)

    def compact(self, offset: int) -> None:
        """Forget the entries up to ``offset`` (they are in the snapshot)."""
        if self.entries and self.entries[0].index <= offset:
            self.entries = [e for e in self.entries if e.index > offset]


@dataclass
class SimRequest:
    """One client operation on its way through a manager."""

    client: int
    process: int
    seq: int
    f: str
    key: str
    value: Any
    manager: str = ""
    invoke: dict[str, Any] = field(default_factory=dict)


class Harness(Protocol):
    """What a simulated manager needs from the cluster that runs it (and is told by it)."""

    @property
    def sim(self) -> Simulator:
        """The simulator: random streams are forked from it."""
        ...

    @property
    def raft_config(self) -> RaftConfig:
        """The managers' Raft settings, ``snapshot_every`` included."""
        ...

    @property
    def incarnations(self) -> dict[str, int]:
        """How many times each manager was started; a new incarnation adds one for itself."""
        ...

    def on_soft_state(self, m: SimManager, role: Role, term: int) -> None:
        """``m``'s role or term changed."""
        ...

    def probe_delay(self) -> float:
        """How long a connection attempt takes to be answered (one round trip)."""
        ...

    def refuses(self, name: str) -> bool:
        """Whether a connection to manager ``name`` is refused now (it crashed and is still down)."""
        ...

    def note(self, text: str) -> None:
        """Add a line to the trace, when tracing."""
        ...

    def on_apply(self, m: SimManager, entry: Entry) -> None:
        """``m`` is about to apply ``entry`` (``m.applied`` is still the index before)."""
        ...

    def on_snapshot_installed(self, m: SimManager, meta: SnapshotMeta) -> None:
        """``m`` installed a snapshot from its leader (``m.applied`` is still the index before)."""
        ...

    def after_ready(self, m: SimManager) -> None:
        """``m`` handled every Ready it had."""
        ...

    def respond(self, req: SimRequest, outcome: str, result: Any) -> None:
        """Answer a client: outcome ok, fail or refused (certainly not done); a read's value."""
        ...

    def violation(self, text: str) -> None:
        """Something that must never happen did."""
        ...


def key_value(store: Store, key: str) -> tuple[Any, int | None]:
    """A key's value in ``store`` and the version of its node; (None, None) before it exists."""
    try:
        obj = store.get(KEY_KIND, key)
    except NotFound:
        return None, None
    labels = obj.spec.get("Labels") or {}
    text = labels.get(VALUE_LABEL)
    return (None if text is None else json.loads(text)), obj.version


def key_ops(key: str, value: Any, version: int | None) -> list[Op]:
    """The batch that sets ``key`` to ``value``: an Update of ``version`` (a Create with None)."""
    spec = {
        "Name": key,
        "Role": "worker",
        "Availability": "active",
        "Labels": {VALUE_LABEL: json.dumps(value, sort_keys=True)},
    }
    if version is None:
        return [Create(KEY_KIND, key, spec, {"State": "unknown"}, {"Description": {"Hostname": key}})]
    return [Update(KEY_KIND, key, version, spec=spec)]


class SimManager:
    """One manager's incarnation: the core, its state machine and its outstanding requests."""

    def __init__(
        self, cluster: Harness, name: str, host: SimHost, storage: SimStorage, voters: tuple[str, ...]
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.host = host
        self.storage = storage
        cluster.incarnations[name] = cluster.incarnations.get(name, 0) + 1
        rng = cluster.sim.fork_rng(f"raft/{name}/{cluster.incarnations[name]}")
        snap = storage.snapshot
        self.store = Store()
        self.machine = StoreMachine(self.store)
        if snap is not None:
            self.machine.restore(storage.snapshot_data, snap.index)
        self.applied = snap.index if snap is not None else 0
        self.node = RaftNode(
            cluster.raft_config,
            name,
            rng,
            voters=voters,
            hard_state=storage.hard_state,
            entries=storage.entries,
            snapshot=snap,
            applied=self.applied,
            snapshot_data=storage.snapshot_data,
        )
        # log index -> (term proposed in, request, what to do with the store's answer once applied)
        self.proposals: dict[int, tuple[int, SimRequest, Callable[[ApplyResult], None]]] = {}
        self.reads: dict[bytes, tuple[SimRequest, Callable[[], None]]] = {}  # ReadIndex context -> request
        self.read_waits: list[tuple[int, Callable[[], None]]] = []  # confirmed reads waiting for apply
        self.then: list[Callable[[], None]] = []  # continuations, run once the Ready is advanced
        self.ctx_seq = 0
        self.snapshot_every = cluster.raft_config.snapshot_every
        host.set_handler(self._receive)
        host.call_later(rng.random() * cluster.raft_config.tick_s, self._tick)

    # Driving the core -------------------------------------------------------------------------
    def _tick(self) -> None:
        self.host.call_later(self.cluster.raft_config.tick_s, self._tick)
        self.node.tick()
        self.drain()

    def _receive(self, sender: str, message: Any, reliable: bool) -> None:
        if isinstance(message, Message):
            self.node.step(message)
            self.drain()

    def drain(self) -> None:
        """Handle every Ready the core has: persist, send, apply, then advance."""
        node = self.node
        while node.has_ready():
            rd = node.ready()
            self._handle(rd)
            node.advance(rd)
            self._release_reads()
            # Answers and retries come after advance: a retry proposes, which the core takes
            # only between Readys.
            while self.then:
                todo, self.then = self.then, []
                for step in todo:
                    step()
            self._maybe_snapshot()
        self.cluster.after_ready(self)

    def _handle(self, rd: Ready) -> None:
        cluster = self.cluster
        st = self.storage
        if rd.soft_state is not None:
            cluster.on_soft_state(self, rd.soft_state.role, rd.soft_state.term)
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            st.snapshot, st.snapshot_data = meta, data
            st.entries = []
        if rd.entries:
            st.append(rd.entries)
        if rd.hard_state is not None:
            st.hard_state = rd.hard_state
        for m in rd.messages:
            self.host.send_packet(m.to, m)
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            self.machine.restore(data, meta.index)
            cluster.on_snapshot_installed(self, meta)
            self.applied = meta.index
        for entry in rd.committed:
            self._apply(entry)
        for rs in rd.read_states:
            found = self.reads.pop(rs.context, None)
            if found is not None:
                self.read_waits.append((rs.index, found[1]))

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return
        self.cluster.on_apply(self, entry)
        self.applied = entry.index
        result = ApplyResult(True)
        if entry.type == EntryType.NORMAL and entry.data:
            # What the Raft shell does: only commands reach the store, not no-ops or membership.
            result = self.machine.apply(entry.index, entry.data)
        waiting = self.proposals.pop(entry.index, None)
        if waiting is None:
            return
        term, req, on_applied = waiting
        if term != entry.term:
            # Another leader's entry took this index: ours is gone for good.
            self.cluster.respond(req, "refused", None)
        else:
            self.then.append(lambda: on_applied(result))

    def _release_reads(self) -> None:
        if not self.read_waits:
            return
        still = []
        for index, then in self.read_waits:
            if index <= self.applied:
                self.then.append(then)
            else:
                still.append((index, then))
        self.read_waits = still

    def _maybe_snapshot(self) -> None:
        node = self.node
        if self.snapshot_every and self.applied - node.snapshot.index >= self.snapshot_every:
            data = self.machine.snapshot()
            node.compact(self.applied, data)
            self.storage.snapshot, self.storage.snapshot_data = node.snapshot, data
            self.storage.compact(node.log.offset)

    # A peer's process died ---------------------------------------------------------------------
    def connection_broke(self, peer: str) -> None:
        """The connection to ``peer`` broke; if ``peer`` is the leader, probe its port, as the shell
        does, and report a refusal to the core (which ignores it if it is stale by then)."""
        node = self.node
        if peer == node.leader:
            self.host.call_later(self.cluster.probe_delay(), self._probed, peer, node.term)

    def _probed(self, peer: str, term: int) -> None:
        if not self.cluster.refuses(peer):
            return  # it listens again (restarted): a broken connection, not a dead leader
        if self.node.report_leader_unreachable(peer, term):
            self.cluster.note(f"{self.name} heard {peer} refuse connections (term {term})")
        self.drain()

    # Client requests ---------------------------------------------------------------------------
    def request(self, req: SimRequest, via_index: bool) -> None:
        """A client request arrived: read, write or cas as the module's docstring says."""
        if req.f == "read":
            self._guard(req, lambda: self._read(req, via_index, lambda: self._answer_read(req)))
        elif req.f == "write":
            self._guard(req, lambda: self._write(req, 1))
        else:
            self._guard(req, lambda: self._read(req, via_index, lambda: self._compare(req, via_index, 1)))
        self.drain()

    def _guard(self, req: SimRequest, step: Callable[[], None]) -> None:
        """Run one step of a request; a manager that cannot lead refuses it (nothing was done)."""
        try:
            step()
        except NotLeader:
            self.cluster.respond(req, "refused", None)

    def _now(self) -> str:
        return format_timestamp(_EPOCH_S + self.host.now())

    def _must_lead(self) -> None:
        """Raise what ``propose`` would on a follower, before any batch is built for nothing."""
        if self.node.role != Role.LEADER:
            raise NotLeader(self.node.leader)

    def _propose(self, req: SimRequest, ops: list[Op], on_applied: Callable[[ApplyResult], None]) -> None:
        self._must_lead()
        index = self.node.propose(encode_batch(ops, now=self._now()))
        self.proposals[index] = (self.node.term, req, on_applied)

    def _read(self, req: SimRequest, via_index: bool, then: Callable[[], None]) -> None:
        """Call ``then`` once this manager's store is as recent as a linearizable read needs."""
        if via_index:
            self.ctx_seq += 1
            ctx = f"{self.name}:{self.cluster.incarnations[self.name]}:{self.ctx_seq}".encode()
            self.node.read_index(ctx)
            self.reads[ctx] = (req, lambda: self._guard(req, then))
        else:
            # Through the log: an empty transaction; once it applies, every write before it has.
            self._propose(req, [], lambda _result: self._guard(req, then))

    def _answer_read(self, req: SimRequest) -> None:
        self.cluster.respond(req, "ok", key_value(self.store, req.key)[0])

    def _write(self, req: SimRequest, attempt: int) -> None:
        self._must_lead()
        version = key_value(self.store, req.key)[1]
        ops = key_ops(req.key, req.value, version)
        self._propose(req, ops, lambda result: self._written(req, result, attempt, None))

    def _compare(self, req: SimRequest, via_index: bool, attempt: int) -> None:
        expected, new = req.value
        current, version = key_value(self.store, req.key)
        if current != expected:
            self.cluster.respond(req, "fail", None)
            return
        ops = key_ops(req.key, new, version)
        self._propose(req, ops, lambda result: self._written(req, result, attempt, via_index))

    def _written(
        self, req: SimRequest, result: ApplyResult, attempt: int, cas_via_index: bool | None
    ) -> None:
        """The store's answer to a write (``cas_via_index`` None) or to a cas's Update."""
        if result.ok:
            self.cluster.respond(req, "ok", None)
            return
        if not isinstance(result.error, UpdateOutOfSequence | NameConflict):
            self.cluster.violation(f"{self.name}: the store refused {req.f} of {req.key}: {result.error}")
            self.cluster.respond(req, "refused", None)
            return
        # Somebody wrote the node first and this batch changed nothing: try again, from a fresh read.
        if attempt >= _MAX_ATTEMPTS:
            self.cluster.respond(req, "refused", None)
        elif cas_via_index is None:
            self._guard(req, lambda: self._write(req, attempt + 1))
        else:
            via = cas_via_index
            self._guard(req, lambda: self._read(req, via, lambda: self._compare(req, via, attempt + 1)))
