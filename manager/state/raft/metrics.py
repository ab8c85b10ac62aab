"""The Raft shell's Prometheus metrics. The shell updates them where things change; the core
only counts (see :meth:`manager.state.raft.core.RaftNode.status`)."""

from __future__ import annotations

import prometheus_client

__all__ = ["ROLES", "RaftMetrics"]

#: Every value of the ``role`` label, so that the roles not held show 0 rather than vanish.
ROLES = ("leader", "follower", "candidate", "pre-candidate")


class RaftMetrics:
    """The shell's Prometheus metrics, in the process's registry (a private one when None)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        reg = registry if registry is not None else prometheus_client.CollectorRegistry()
        g, c = prometheus_client.Gauge, prometheus_client.Counter
        self.term = g("swarmlet_raft_term", "Current Raft term", registry=reg)
        self.is_leader = g("swarmlet_raft_leader", "1 if this manager is the Raft leader", registry=reg)
        self.role = g("swarmlet_raft_role", "1 for this manager's current Raft role", ["role"], registry=reg)
        self.leader_changes = c(
            "swarmlet_raft_leader_changes", "Times the known leader changed", registry=reg
        )
        self.commit_index = g("swarmlet_raft_commit_index", "Highest committed log index", registry=reg)
        self.apply_index = g("swarmlet_raft_apply_index", "Highest applied log index", registry=reg)
        self.proposal_latency = prometheus_client.Histogram(
            "swarmlet_raft_proposal_latency_seconds",
            "Time from proposal to applied, on the leader",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=reg,
        )
        self.bytes_appended = c(
            "swarmlet_raft_appended_bytes", "Bytes of entries appended to the log", registry=reg
        )
        self.bytes_snapshotted = c(
            "swarmlet_raft_snapshotted_bytes", "Bytes of snapshots written", registry=reg
        )

    def observe_role(self, role: str, term: int) -> None:
        """The core's role and term after a Ready."""
        self.term.set(term)
        for name in ROLES:
            self.role.labels(name).set(1 if name == role else 0)
        self.is_leader.set(1 if role == "leader" else 0)
