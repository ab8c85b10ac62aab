"""How a simulated Raft run is shaped (:class:`SimOptions`) and what it produced (:class:`RunResult`).

Kept apart from :mod:`manager.state.raft.simcluster` so that the fault list and the options read
as one table; the cluster module re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from manager.state.raft.config import RaftConfig

__all__ = ["CRASHES", "FAULTS", "RunResult", "SimOptions"]

#: Fault kinds a campaign can inject.
FAULTS = ("crash", "restart", "pause", "partition", "loss", "duplicate", "reorder", "membership")

#: How a crashed manager looks to its peers (SimOptions.crashes).
CRASHES = ("refusing", "silent", "mixed")


@dataclass(frozen=True)
class SimOptions:
    """How one simulated run is shaped."""

    managers: int = 3
    """Number of managers (voters)."""
    faults: tuple[str, ...] = ("crash", "restart", "partition", "loss", "duplicate", "reorder")
    """Fault kinds to inject (see FAULTS)."""
    crashes: str = "mixed"
    """How a crash (and a restart) looks to the peers: "refusing", like ``docker kill``: the
    kernel closes the dead process's connections, each peer's shell probes the port one round
    trip later and, finding it refused, tells its core (``report_leader_unreachable``);
    "silent", like ``docker pause`` or a cut cable: nothing is refused, only the election timeout
    notices; "mixed": each crash is one or the other, half and half."""
    fault_s: float = 10.0
    """Virtual seconds during which faults come and go."""
    heal_s: float = 4.0
    """Virtual seconds after every fault is undone, in which a leader must appear and writes succeed."""
    fault_gap_s: tuple[float, float] = (0.2, 1.2)
    """Time between two fault events, drawn uniformly."""
    clients: int = 3
    """Concurrent clients."""
    keys: int = 3
    """Distinct keys the clients use."""
    think_s: float = 0.05
    """Mean pause of a client between two operations (exponentially distributed)."""
    request_timeout_s: float = 1.0
    """A client gives up on a request after this long and records it as indeterminate ("info")."""
    client_latency_s: float = 0.001
    """One-way delay between a client and a manager."""
    read_mode: str = "mixed"
    """"log": reads go through the log; "index": through ReadIndex; "mixed": chosen per run."""
    raft: RaftConfig = field(default_factory=RaftConfig.default)
    """The managers' Raft settings."""
    snapshot_every: int = 20
    """The state machine snapshots after this many applied entries (small, to exercise snapshots)."""
    keep_after_snapshot: int = 2
    """Log entries kept behind a snapshot."""
    codec: bool = False
    """Round-trip every message through the protobuf codec."""
    trace: bool = False
    """Record a line per notable event (for golden traces and debugging)."""

    def __post_init__(self) -> None:
        if self.managers < 1:
            raise ValueError(f"managers must be >= 1, got {self.managers}")
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
        if self.crashes not in CRASHES:
            raise ValueError(f"crashes must be one of {', '.join(CRASHES)}, got {self.crashes!r}")
        if self.read_mode not in ("log", "index", "mixed"):
            raise ValueError(f"read_mode must be log, index or mixed, got {self.read_mode!r}")
        if self.clients < 1 or self.keys < 1:
            raise ValueError("clients and keys must be >= 1")


@dataclass
class RunResult:
    """What one seeded run produced."""

    seed: int
    history: list[dict[str, Any]]
    violations: list[str]
    failovers: list[float]
    ops: int
    trace: list[str]
    read_mode: str
    stats: dict[str, int]
    failovers_by_crash: dict[str, list[float]] = field(default_factory=dict)
    """The failovers again, by how the leader's crash looked: "refusing" or "silent"."""
