"""What callers of the Raft shell catch: no leader, not the leader, a write lost to a new leader.

These stand apart from the shell so that the control API and the dispatcher can name them
without the shell's gRPC and storage machinery.
"""

from __future__ import annotations

from manager.state.raft.core import NO_LEADER_MESSAGE

__all__ = ["NO_LEADER_MESSAGE", "NoLeaderError", "NotLeaderError", "ProposalDropped"]


class NoLeaderError(Exception):
    """The cluster has no leader (no quorum, or an election is under way)."""

    def __init__(self) -> None:
        super().__init__(NO_LEADER_MESSAGE)


class NotLeaderError(Exception):
    """This manager is a follower; ``leader_addr`` is where the write should go."""

    def __init__(self, leader_id: str, leader_addr: str) -> None:
        where = leader_addr or "an unknown address"
        super().__init__(f"not the leader; the leader is {leader_id} at {where}")
        self.leader_id = leader_id
        self.leader_addr = leader_addr


class ProposalDropped(Exception):
    """The entry was lost to a change of leader before it committed: it was not applied."""
