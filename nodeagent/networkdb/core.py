"""The network database: which task sits where on which overlay, as Docker's networkdb, with no I/O.

Every rule of the database lives in this file. Two tables, both made of :class:`Entry`:

* ``peers``: (network ID, node) -> the node's overlay address; a node writes its own entry when
  the first of its tasks attaches to the network and deletes it when the last one leaves. Every
  node keeps the whole peer table (it is small and says where to look for the rest).
* ``endpoints``: (network ID, task ID) -> an :class:`Endpoint` (overlay address, VIP, service name,
  aliases, the node-local listeners serving it). A node keeps the endpoint entries only of the
  networks it has joined; it writes the entries of its own tasks.

Entries travel two ways. A local change goes out at once as a gossip user broadcast (best
effort: lost if gossip gives up). Anti-entropy fixes the rest: every ``sync_ticks`` the node pushes
its entries to one random live peer of each network it has joined and to one random live member
(the peer table), and the peer answers with its own (push-pull); a node that joins a network
syncs with one of its peers at once. A node that joins late thus learns every entry at its first
sync.

Convergence: each entry carries a Lamport time (``ltime``); the node's clock moves past every time
it sees, a local write takes the next one, and a merge keeps the entry with the higher
(ltime, owner). Deletions are tombstones (``deleted``) kept ``reap_ticks`` so that a stale copy
arriving later loses to them; a node's peer tombstone (it left the network) also removes its
endpoints there. Entries owned by a node that gossip reports dead are dropped
(:meth:`NetworkDB.node_dead`), and ignored while it stays dead; when it is alive again its own
syncs bring its entries back (a partition that heals).

The shell (:mod:`nodeagent.networkdb.shell`) feeds gossip messages, membership events, sync
requests and ticks in, and drains :meth:`NetworkDB.take_outbox` into gossip and the sync RPC.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENDPOINTS",
    "PEERS",
    "Broadcast",
    "Endpoint",
    "Entry",
    "NetworkDB",
    "NetworkDBConfig",
    "Sync",
    "decode_entries",
    "decode_entry",
    "encode_entries",
    "encode_entry",
]

ENDPOINTS = "endpoints"
PEERS = "peers"
_TABLES = (ENDPOINTS, PEERS)


@dataclass(frozen=True)
class NetworkDBConfig:
    """Timing of the database, in ticks of the shell (one tick is ``tick_seconds``)."""

    tick_seconds: float = 0.1  # how often the shell ticks the core
    sync_ticks: int = 10  # anti-entropy every 10 ticks (1 s; Docker's bulk sync is every 30 s)
    reap_ticks: int = 600  # tombstones are kept 600 ticks (60 s), longer than any sync round

    def __post_init__(self) -> None:
        if self.tick_seconds <= 0 or self.sync_ticks < 1 or self.reap_ticks < self.sync_ticks:
            raise ValueError("networkdb config: ticks must be positive and reap_ticks >= sync_ticks")


@dataclass(frozen=True)
class Endpoint:
    """One task on one network, as the endpoint table holds it."""

    network_id: str
    task_id: str
    node: str  # the node (its gossip name, the node ID) whose agent runs the task
    addr: str  # the task's overlay address, without prefix length ("10.0.1.3")
    vip: str  # the service's VIP on this network ("" in dnsrr mode)
    service: str  # the service name
    service_id: str
    aliases: tuple[str, ...] = ()  # Spec.Networks[].Aliases of the task's service
    endpoint_mode: str = "vip"  # "vip" or "dnsrr"
    listeners: tuple[tuple[int, str, int], ...] = ()  # (container port, node address, real port)
    ports: tuple[tuple[int, int, str], ...] = ()  # ingress ports: (published, target, protocol)

    def to_json(self) -> str:
        """The entry's value."""
        return json.dumps({
            "network_id": self.network_id, "task_id": self.task_id, "node": self.node, "addr": self.addr,
            "vip": self.vip, "service": self.service, "service_id": self.service_id,
            "aliases": list(self.aliases), "endpoint_mode": self.endpoint_mode,
            "listeners": [list(x) for x in self.listeners], "ports": [list(x) for x in self.ports],
        }, separators=(",", ":"), sort_keys=True)  # fmt: skip

    @staticmethod
    def from_json(text: str) -> Endpoint:
        """Parse an entry's value (ValueError when it is not an endpoint)."""
        try:
            d = json.loads(text)
            return Endpoint(
                str(d["network_id"]), str(d["task_id"]), str(d["node"]), str(d["addr"]), str(d["vip"]),
                str(d["service"]), str(d["service_id"]), tuple(str(a) for a in d.get("aliases") or ()),
                str(d.get("endpoint_mode") or "vip"),
                tuple((int(p), str(h), int(q)) for p, h, q in d.get("listeners") or ()),
                tuple((int(p), int(t), str(proto)) for p, t, proto in d.get("ports") or ()),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an endpoint: {exc}") from None

    def listener_for(self, port: int) -> tuple[str, int] | None:
        """Where the task's container ``port`` really listens on its node."""
        for target, host, real in self.listeners:
            if target == port:
                return host, real
        return None


@dataclass(frozen=True)
class Entry:
    """One row of a table, with the Lamport time that orders its versions."""

    table: str
    network: str
    key: str  # the task ID (endpoints) or the node (peers)
    owner: str  # the node that wrote it; only the owner changes an entry
    ltime: int
    value: str = ""  # Endpoint.to_json() or the node's overlay address
    deleted: bool = False

    def newer_than(self, other: Entry) -> bool:
        """Whether this version wins over ``other`` (same table, network and key)."""
        return (self.ltime, self.owner, self.deleted) > (other.ltime, other.owner, other.deleted)


@dataclass(frozen=True)
class Broadcast:
    """Gossip this entry to every node (the user broadcast channel)."""

    entry: Entry


@dataclass(frozen=True)
class Sync:
    """A bulk sync to ``to``: the entries it should hold; ``reply`` is the pull half's answer."""

    to: str
    entries: tuple[Entry, ...]
    reply: bool = False


def encode_entry(entry: Entry) -> bytes:
    """One entry as a gossip payload."""
    return json.dumps([entry.table, entry.network, entry.key, entry.owner, entry.ltime, entry.value,
                       entry.deleted], separators=(",", ":")).encode()  # fmt: skip


def _entry(raw: Any) -> Entry:
    table, network, key, owner, ltime, value, deleted = raw
    if table not in _TABLES or not isinstance(ltime, int) or ltime < 0:
        raise ValueError(f"bad entry {raw!r}")
    return Entry(str(table), str(network), str(key), str(owner), ltime, str(value), bool(deleted))


def decode_entry(data: bytes) -> Entry:
    """Parse a gossip payload (ValueError when malformed)."""
    try:
        return _entry(json.loads(data))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed networkdb entry: {exc}") from None


def encode_entries(entries: Iterable[Entry]) -> bytes:
    """A bulk sync's entries."""
    return json.dumps([[e.table, e.network, e.key, e.owner, e.ltime, e.value, e.deleted] for e in entries],
                      separators=(",", ":")).encode()  # fmt: skip


def decode_entries(data: bytes) -> list[Entry]:
    """Parse a bulk sync (ValueError when malformed)."""
    try:
        raw = json.loads(data) if data else []
        if not isinstance(raw, list):
            raise ValueError("not a list")
        return [_entry(r) for r in raw]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed networkdb sync: {exc}") from None


@dataclass
class NetworkDB:
    """One node's copy of the database; see the module docstring for the rules."""

    name: str
    config: NetworkDBConfig
    rng: random.Random
    clock: int = 0  # the Lamport clock (the shell may start it at wall-clock milliseconds)
    _tables: dict[tuple[str, str, str], Entry] = field(default_factory=dict)
    _joined: set[str] = field(default_factory=set)
    _alive: set[str] = field(default_factory=set)  # other members gossip says are alive
    _dead: set[str] = field(default_factory=set)
    _deleted_at: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _ticks: int = 0
    _outbox: list[Broadcast | Sync] = field(default_factory=list)
    _changed: set[str] = field(default_factory=set)

    # Local writes -------------------------------------------------------------------------------
    def join_network(self, network: str, address: str) -> None:
        """A task of this node attached to ``network``: write our peer entry, sync with a peer."""
        if network in self._joined:
            return
        self._joined.add(network)
        self._write(PEERS, network, self.name, address)
        peers = [p for p in self.peers(network) if p != self.name and p in self._alive]
        if peers:
            self._outbox.append(self._sync_to(self.rng.choice(sorted(peers))))
        elif self._alive:
            self._outbox.append(self._sync_to(self.rng.choice(sorted(self._alive))))

    def leave_network(self, network: str) -> None:
        """The last task of this node on ``network`` left: delete our entries, forget the table."""
        if network not in self._joined:
            return
        for entry in list(self._tables.values()):
            if entry.network == network and entry.owner == self.name and not entry.deleted:
                self._write(entry.table, network, entry.key, "", deleted=True)
        self._joined.discard(network)
        for key in [k for k in self._tables if k[0] == ENDPOINTS and k[1] == network]:
            if self._tables[key].owner != self.name:
                self._drop(key)

    def set_endpoint(self, endpoint: Endpoint) -> None:
        """Publish one of this node's tasks on a network this node joined."""
        if endpoint.network_id not in self._joined:
            raise ValueError(f"network {endpoint.network_id} is not joined on {self.name}")
        self._write(ENDPOINTS, endpoint.network_id, endpoint.task_id, endpoint.to_json())

    def delete_endpoint(self, network: str, task_id: str) -> None:
        """Withdraw one of this node's tasks from a network."""
        current = self._tables.get((ENDPOINTS, network, task_id))
        if current is not None and current.owner == self.name and not current.deleted:
            self._write(ENDPOINTS, network, task_id, "", deleted=True)

    def _write(self, table: str, network: str, key: str, value: str, *, deleted: bool = False) -> None:
        self.clock += 1
        entry = Entry(table, network, key, self.name, self.clock, value, deleted)
        self._store(entry)
        self._outbox.append(Broadcast(entry))

    # Input from the network ---------------------------------------------------------------------
    def handle_broadcast(self, entry: Entry) -> None:
        """An entry gossiped by another node."""
        self._merge(entry)

    def handle_sync(self, sender: str, entries: Iterable[Entry], reply: bool) -> Sync | None:
        """A bulk sync from ``sender``; returns the pull half's answer unless this was one."""
        for entry in entries:
            self._merge(entry)
        if reply or sender in self._dead:
            return None
        return self._sync_to(sender, reply=True)

    def node_alive(self, node: str) -> None:
        """Gossip says ``node`` is alive (joined, or back after a partition)."""
        if node == self.name:
            return
        self._dead.discard(node)
        self._alive.add(node)

    def node_dead(self, node: str) -> None:
        """Gossip says ``node`` is dead or left: drop every entry it owns."""
        if node == self.name:
            return
        self._alive.discard(node)
        self._dead.add(node)
        for key, entry in list(self._tables.items()):
            if entry.owner == node:
                self._drop(key)

    def tick(self) -> None:
        """Advance one tick: reap old tombstones; every ``sync_ticks``, bulk sync."""
        self._ticks += 1
        for key, at in list(self._deleted_at.items()):
            if self._ticks - at >= self.config.reap_ticks:
                self._drop(key)
        if self._ticks % self.config.sync_ticks:
            return
        targets: set[str] = set()
        for network in sorted(self._joined):
            peers = sorted(p for p in self.peers(network) if p in self._alive)
            if peers:
                targets.add(self.rng.choice(peers))
        if self._alive:
            targets.add(self.rng.choice(sorted(self._alive)))
        for target in sorted(targets):
            self._outbox.append(self._sync_to(target))

    # Merging ------------------------------------------------------------------------------------
    def _merge(self, entry: Entry) -> None:
        self.clock = max(self.clock, entry.ltime)
        if entry.owner == self.name or entry.owner in self._dead:
            return  # our own entries are authoritative; a dead node's are gone
        if entry.table == ENDPOINTS and entry.network not in self._joined:
            return
        key = (entry.table, entry.network, entry.key)
        if entry.table == ENDPOINTS:
            left = self._tables.get((PEERS, entry.network, entry.owner))
            if left is not None and left.deleted and left.ltime > entry.ltime:
                return  # written before its node left the network: a stale copy
        current = self._tables.get(key)
        if current is None or entry.newer_than(current):
            if current is None and entry.deleted:
                return  # a tombstone for something never seen: nothing to remove
            self._store(entry)
            if entry.table == PEERS and entry.deleted:
                # The node left the network: its endpoints there are gone, even if their own
                # tombstones never reach us (it no longer syncs that table).
                for k, e in list(self._tables.items()):
                    if k[0] == ENDPOINTS and k[1] == entry.network and e.owner == entry.key:
                        self._drop(k)

    def _store(self, entry: Entry) -> None:
        key = (entry.table, entry.network, entry.key)
        self._tables[key] = entry
        if entry.deleted:
            self._deleted_at[key] = self._ticks
        else:
            self._deleted_at.pop(key, None)
        self._changed.add(entry.network)

    def _drop(self, key: tuple[str, str, str]) -> None:
        self._tables.pop(key, None)
        self._deleted_at.pop(key, None)
        self._changed.add(key[1])

    def _sync_to(self, peer: str, *, reply: bool = False) -> Sync:
        shared = {n for n in self._joined if peer in self.peers(n)}
        entries = tuple(e for e in sorted(self._tables.values(), key=lambda e: (e.table, e.network, e.key))
                        if e.table == PEERS or e.network in shared)  # fmt: skip
        return Sync(peer, entries, reply)

    # Reads --------------------------------------------------------------------------------------
    def take_outbox(self) -> list[Broadcast | Sync]:
        """What to send, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def take_changed(self) -> set[str]:
        """The networks whose tables changed since the last call."""
        out, self._changed = self._changed, set()
        return out

    @property
    def joined(self) -> frozenset[str]:
        """The networks this node has joined."""
        return frozenset(self._joined)

    def peers(self, network: str) -> dict[str, str]:
        """Node -> overlay address of every node that carries ``network`` (this one included)."""
        return {e.key: e.value for (t, n, _), e in self._tables.items()
                if t == PEERS and n == network and not e.deleted}  # fmt: skip

    def endpoints(self, network: str | None = None) -> list[Endpoint]:
        """The live endpoints of ``network`` (of every joined network for None), by task ID."""
        out = [Endpoint.from_json(e.value) for (t, n, _), e in sorted(self._tables.items())
               if t == ENDPOINTS and not e.deleted and (network is None or n == network)]  # fmt: skip
        return out

    def snapshot(self) -> Mapping[tuple[str, str, str], tuple[str, bool]]:
        """Every live entry as key -> (value, deleted), to compare nodes in tests."""
        return {k: (e.value, e.deleted) for k, e in self._tables.items() if not e.deleted}
