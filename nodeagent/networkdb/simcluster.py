"""Network databases on the simulated network, seeded and replayable, for convergence tests.

Each node is a :class:`~nodeagent.networkdb.core.NetworkDB` on a
:class:`~nodeagent.sim.network.SimHost`. Gossip is stood in for by what the database needs from
it: a user broadcast reaches every host the network lets it reach (packets: subject to loss), and
membership events come from an ideal failure detector that reports a node dead ``detect``
seconds after it crashed or became unreachable, and alive again as soon as it is reachable. Bulk
syncs travel on the stream half, as the agent's do over gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nodeagent.networkdb.core import Broadcast, Endpoint, Entry, NetworkDB, NetworkDBConfig
from nodeagent.sim.network import HostState, LinkProfile, SimNetwork
from nodeagent.sim.scheduler import Simulator

__all__ = ["SimNetworkDB"]


@dataclass(frozen=True)
class _Pull:
    entries: tuple[Entry, ...]
    reply: bool


class SimNetworkDB:
    """Several nodes' databases, the network between them and the failure detector."""

    def __init__(self, seed: int, config: NetworkDBConfig | None = None, *, loss: float = 0.0,
                 detect: float = 0.5) -> None:
        """``loss``: the chance a broadcast packet is lost; ``detect``: seconds to notice a death."""
        self.sim = Simulator(seed)
        self.net = SimNetwork(self.sim, LinkProfile(latency=0.001, jitter=0.002, loss=loss))
        self.config = config or NetworkDBConfig()
        self.detect = detect
        self.dbs: dict[str, NetworkDB] = {}
        self._seen: dict[str, dict[str, bool]] = {}  # observer -> node -> believed alive

    def add(self, name: str) -> NetworkDB:
        """Start a node (or restart a crashed one with an empty database)."""
        host = self.net.hosts.get(name) or self.net.add_host(name)
        if host.state == HostState.DOWN:
            host = self.net.restart(name)
        db = NetworkDB(name, self.config, self.sim.fork_rng(f"db-{name}-{host.generation}"))
        self.dbs[name] = db
        self._seen[name] = {}
        host.set_handler(lambda sender, msg, reliable: self._receive(name, sender, msg))
        host.call_later(self.config.tick_seconds, self._tick, name)
        return db

    def crash(self, name: str) -> None:
        """Kill a node: its database is gone."""
        self.net.crash(name)
        del self.dbs[name]

    def _tick(self, name: str) -> None:
        db = self.dbs.get(name)
        if db is None:
            return
        self._detect(name)
        db.tick()
        self.flush(name)
        self.net.host(name).call_later(self.config.tick_seconds, self._tick, name)

    def _detect(self, name: str) -> None:
        """The ideal failure detector, as ``name`` sees the others."""
        db = self.dbs[name]
        seen = self._seen[name]
        for other in self.net.hosts:
            if other == name:
                continue
            up = other in self.dbs and self.net.reachable(name, other) and self.net.reachable(other, name)
            if up and seen.get(other) is not True:
                seen[other] = True
                db.node_alive(other)
            elif not up and seen.get(other) is True:
                seen[other] = False
                self.net.host(name).call_later(self.detect, self._confirm_dead, name, other)

    def _confirm_dead(self, name: str, other: str) -> None:
        if name in self.dbs and self._seen[name].get(other) is False:
            self.dbs[name].node_dead(other)

    def flush(self, name: str) -> None:
        """Send what ``name``'s database has queued."""
        db = self.dbs[name]
        host = self.net.host(name)
        for out in db.take_outbox():
            if isinstance(out, Broadcast):
                for other in self.net.hosts:
                    if other != name:
                        host.send_packet(other, out.entry)
            else:
                host.send_stream(out.to, _Pull(out.entries, out.reply))

    def _receive(self, name: str, sender: str, message: object) -> None:
        db = self.dbs.get(name)
        if db is None:
            return
        if isinstance(message, Entry):
            db.handle_broadcast(message)
        elif isinstance(message, _Pull):
            answer = db.handle_sync(sender, message.entries, message.reply)
            if answer is not None:
                self.net.host(name).send_stream(sender, _Pull(answer.entries, True))
        self.flush(name)

    # Reads for tests ------------------------------------------------------------------------
    def run(self, seconds: float) -> None:
        """Advance the virtual time."""
        self.sim.run_for(seconds)

    def view(self, name: str, network: str) -> tuple[Mapping[str, str], frozenset[str]]:
        """What ``name`` holds of ``network``: peers (node -> address) and endpoint task IDs."""
        db = self.dbs[name]
        return db.peers(network), frozenset(e.task_id for e in db.endpoints(network))

    def converged(self, network: str, members: list[str]) -> bool:
        """Whether every one of ``members`` holds the same view of ``network``."""
        views = [self.view(m, network) for m in members]
        return all(v == views[0] for v in views)

    def endpoint(self, name: str, network: str, task_id: str) -> Endpoint | None:
        """One endpoint as ``name`` holds it."""
        for e in self.dbs[name].endpoints(network):
            if e.task_id == task_id:
                return e
        return None

