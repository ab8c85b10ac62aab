"""Majority arithmetic, kept apart so that its invariants are easy to check.

Invariant: an index is committed when a majority of voters has it; a vote is won when a majority
of voters granted it and lost when a majority can no longer grant it. Learners never count.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

__all__ = ["VoteResult", "committed_index", "majority", "vote_result"]


class VoteResult(enum.Enum):
    """The outcome of an election so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voters: int) -> int:
    """How many of ``voters`` make a quorum: floor(N/2) + 1."""
    return voters // 2 + 1


def committed_index(voters: Collection[str], match: Mapping[str, int]) -> int:
    """The largest index that a majority of ``voters`` has (``match``: each voter's last index).

    With no voters nothing can be committed by counting, so the answer is 0.
    """
    if not voters:
        return 0
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    # The quorum-th largest index is held by at least a quorum of voters.
    return acked[majority(len(acked)) - 1]


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """Whether ``votes`` (voter -> granted) from ``voters`` won, lost or can still go either way."""
    need = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    if granted >= need:
        return VoteResult.WON
    missing = sum(1 for v in voters if v not in votes)
    if granted + missing >= need:
        return VoteResult.PENDING
    return VoteResult.LOST
