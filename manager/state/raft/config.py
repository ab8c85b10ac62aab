"""Raft timing and flow-control settings (:class:`RaftConfig`), and the shell's (:class:`ShellConfig`).

Time is counted in ticks, as etcd does: the shell calls :meth:`RaftNode.tick` every ``tick_s``
seconds and every timer in the core is a whole number of ticks. Changing ``tick_s`` alone (see
:meth:`RaftConfig.scaled`) stretches or shrinks every timer at once, which is the design's single
time-scale knob.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["RaftConfig", "ShellConfig"]


@dataclass(frozen=True)
class RaftConfig:
    """Settings of one Raft node; every manager of a cluster should use the same ones."""

    tick_s: float
    """Seconds per tick: the period at which the shell (or the simulator) calls ``tick()``."""

    election_ticks: int
    """A follower that hears nothing from a leader for a random time in
    [election_ticks, 2 * election_ticks) ticks starts an election; a leader with check-quorum
    steps down if a majority has not answered within election_ticks ticks."""

    heartbeat_ticks: int
    """A leader sends heartbeats every heartbeat_ticks ticks (must be less than election_ticks)."""

    max_inflight: int
    """How many append messages a leader keeps in flight to one follower before waiting for acks."""

    max_batch_bytes: int
    """The most entry payload bytes one append message carries (at least one entry is always sent)."""

    snapshot_every: int
    """The application should snapshot after this many applied entries (0: never); the core only
    reports it through :meth:`RaftNode.status`, the application decides."""

    keep_after_snapshot: int
    """Entries kept in the log behind a snapshot, so a follower that lags a little catches up
    from the log instead of receiving a whole snapshot."""

    pre_vote: bool = True
    """Ask for votes in a trial round first, so a node that was cut off cannot disrupt a healthy
    leader by raising the term when it comes back."""

    check_quorum: bool = True
    """A leader steps down when it has not heard from a majority for election_ticks ticks, and a
    follower that hears from a leader ignores vote requests for that long (the leader lease)."""

    standby_ticks: int = 3
    """When the leader's port refuses connections (see :meth:`RaftNode.report_leader_unreachable`),
    the surviving voters campaign one after another in order of node id, this many ticks apart,
    so that two of them do not split the vote."""

    def __post_init__(self) -> None:
        if not self.tick_s > 0:
            raise ValueError(f"RaftConfig.tick_s must be > 0, got {self.tick_s!r}")
        if self.heartbeat_ticks < 1:
            raise ValueError(f"RaftConfig.heartbeat_ticks must be >= 1, got {self.heartbeat_ticks!r}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                "RaftConfig.election_ticks must be greater than heartbeat_ticks, got "
                f"{self.election_ticks!r} <= {self.heartbeat_ticks!r}"
            )
        if self.standby_ticks < 1:
            raise ValueError(f"RaftConfig.standby_ticks must be >= 1, got {self.standby_ticks!r}")
        if self.max_inflight < 1:
            raise ValueError(f"RaftConfig.max_inflight must be >= 1, got {self.max_inflight!r}")
        if self.max_batch_bytes < 1:
            raise ValueError(f"RaftConfig.max_batch_bytes must be >= 1, got {self.max_batch_bytes!r}")
        if self.snapshot_every < 0:
            raise ValueError(f"RaftConfig.snapshot_every must be >= 0, got {self.snapshot_every!r}")
        if self.keep_after_snapshot < 0:
            raise ValueError(
                f"RaftConfig.keep_after_snapshot must be >= 0, got {self.keep_after_snapshot!r}"
            )

    @classmethod
    def default(cls) -> RaftConfig:
        """The emulator's timing, chosen so that a leader crash is repaired within 1 s (p99).

        A follower notices a dead leader after a random 0.4 to 0.8 s without heartbeats
        (8 to 16 ticks of 50 ms); a pre-vote round, a vote round and the new leader's first
        commit each take one round trip, a few milliseconds on one machine, so a failover
        lasts at most about 0.85 s unless two candidates collide, which the random timeout
        makes rare. Heartbeats every 100 ms give four chances to arrive per election timeout,
        enough that a lost packet or a short pause does not cost a leader its term.
        docs/raft.md has the measured figures.
        """
        return cls(
            tick_s=0.05,  # 50 ms per tick
            election_ticks=8,  # 0.4 s: random election timeout in [0.4, 0.8) s
            heartbeat_ticks=2,  # 0.1 s between heartbeats
            max_inflight=64,  # append messages in flight per follower
            max_batch_bytes=256 * 1024,  # payload bytes per append message
            snapshot_every=10_000,  # entries between application snapshots
            keep_after_snapshot=500,  # entries kept behind a snapshot for slow followers (Swarm's default)
        )

    @classmethod
    def test(cls) -> RaftConfig:
        """The default timing with small logs, so that tests exercise snapshots often."""
        return dataclasses.replace(
            cls.default(), snapshot_every=50, keep_after_snapshot=10, max_batch_bytes=4096
        )

    def scaled(self, factor: float) -> RaftConfig:
        """The same settings with every timer ``factor`` times as long (the time scale)."""
        if not factor > 0:
            raise ValueError(f"time scale factor must be > 0, got {factor!r}")
        return dataclasses.replace(self, tick_s=self.tick_s * factor)


@dataclass(frozen=True)
class ShellConfig:
    """Durability and buffering settings of the shell; timing lives in RaftConfig (``tick_s``)."""

    fsync: bool = True
    """Whether storage fsyncs before save returns; off only in benchmarks that say so."""
    peer_queue: int = 4096
    """Messages queued per peer before new ones are dropped (Raft retransmits what is lost)."""

    def __post_init__(self) -> None:
        if self.peer_queue < 1:
            raise ValueError("peer_queue must be at least 1")
