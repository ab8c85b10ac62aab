"""One simulated manager for :mod:`manager.state.raft.simcluster`: the core, storage, a kv state machine.

:class:`SimStorage` is what survives a crash; :class:`SimManager` is one incarnation of a manager:
a :class:`RaftNode` on a simulated host that ticks, persists every Ready to its storage, applies
committed entries to a small key-value store (read, write, cas) and answers client requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from manager.state.raft.core import NotLeader, RaftNode
from manager.state.raft.messages import Message, Ready
from manager.state.raft.types import Entry, EntryType, HardState, SnapshotMeta
from nodeagent.sim import SimHost

if TYPE_CHECKING:
    from manager.state.raft.simcluster import RaftSimCluster

__all__ = ["SimManager", "SimRequest", "SimStorage"]


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
    client: int
    process: int
    seq: int
    f: str
    key: str
    value: Any
    manager: str = ""
    invoke: dict[str, Any] = field(default_factory=dict)


class SimManager:
    """One manager's incarnation: the core, its state machine and its outstanding requests."""

    def __init__(
        self, cluster: RaftSimCluster, name: str, host: SimHost, storage: SimStorage, voters: tuple[str, ...]
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.host = host
        self.storage = storage
        opts = cluster.options
        cluster.incarnations[name] = cluster.incarnations.get(name, 0) + 1
        rng = cluster.sim.fork_rng(f"raft/{name}/{cluster.incarnations[name]}")
        snap = storage.snapshot
        self.kv: dict[str, Any] = json.loads(storage.snapshot_data) if snap is not None else {}
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
        self.writes: dict[int, SimRequest] = {}  # log index -> request waiting for it to apply
        self.reads: dict[bytes, SimRequest] = {}  # ReadIndex context -> request
        self.read_waits: list[tuple[int, SimRequest]] = []  # confirmed reads waiting for apply
        self.ctx_seq = 0
        self.snapshot_every = opts.snapshot_every
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
            self.kv = json.loads(data)
            cluster.on_snapshot_installed(self, meta)
            self.applied = meta.index
        for entry in rd.committed:
            self._apply(entry)
        for rs in rd.read_states:
            req = self.reads.pop(rs.context, None)
            if req is not None:
                self.read_waits.append((rs.index, req))

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return
        self.cluster.on_apply(self, entry)
        self.applied = entry.index
        result: Any = None
        outcome = "ok"
        payload: dict[str, Any] | None = None
        if entry.type == EntryType.NORMAL and entry.data:
            payload = json.loads(entry.data)
            f, key = payload["f"], payload["k"]
            if f == "write":
                self.kv[key] = payload["v"]
            elif f == "cas":
                expected, new = payload["v"]
                if self.kv.get(key) == expected:
                    self.kv[key] = new
                else:
                    outcome = "fail"
            else:
                result = self.kv.get(key)
        req = self.writes.pop(entry.index, None)
        if req is None:
            return
        if payload is None or payload["c"] != req.client or payload["s"] != req.seq:
            # Another leader's entry took this index: ours is gone for good.
            self.cluster.respond(req, "refused", None)
        else:
            self.cluster.respond(req, outcome, result)

    def _release_reads(self) -> None:
        if not self.read_waits:
            return
        still = []
        for index, req in self.read_waits:
            if index <= self.applied:
                self.cluster.respond(req, "ok", self.kv.get(req.key))
            else:
                still.append((index, req))
        self.read_waits = still

    def _maybe_snapshot(self) -> None:
        node = self.node
        if self.snapshot_every and self.applied - node.snapshot.index >= self.snapshot_every:
            data = json.dumps(self.kv, sort_keys=True).encode()
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
        """A client request arrived: propose it, or read through ReadIndex; refuse if not leader."""
        node = self.node
        try:
            if req.f == "read" and via_index:
                self.ctx_seq += 1
                ctx = f"{self.name}:{self.cluster.incarnations[self.name]}:{self.ctx_seq}".encode()
                node.read_index(ctx)
                self.reads[ctx] = req
            else:
                body = {"c": req.client, "s": req.seq, "f": req.f, "k": req.key, "v": req.value}
                index = node.propose(json.dumps(body, sort_keys=True).encode())
                self.writes[index] = req
        except NotLeader:
            self.cluster.respond(req, "refused", None)
        self.drain()
