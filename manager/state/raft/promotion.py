"""Promoting a learner to voter, which needs a moment in which its log has caught up.

The core promotes only a learner whose log matches the commit index. Under a steady stream of
writes that moment may never come, so while a promotion waits the shell holds new proposals back
for up to ``HOLD_S`` seconds, letting the learner catch up, and then not again for a while, so
that a slow learner never stalls writes for long.

Promotions come in pairs where they can. Promoting one learner of a one-voter cluster makes two
voters, and two voters need each other for every commit and for the leader's check-quorum: a new
manager still busy starting (it was just added) can then cost the cluster its leader. When another
learner is waiting too and has not caught up yet, a caught-up learner whose promotion would leave
an even number of voters waits for it, up to ``PAIR_S`` seconds; the two are then promoted back to
back (the second as soon as the first is committed), so the cluster goes from one voter to three
with only one commit's time in between. A learner alone is promoted at once.
"""

from __future__ import annotations

import logging

from manager.state.raft.core import RaftNode
from manager.state.raft.messages import ConfChange, ConfChangeType, Role

__all__ = ["HOLD_S", "PAIR_S", "Promotions"]

log = logging.getLogger(__name__)

HOLD_S = 0.5  # seconds new proposals may wait for a learner to catch up before promotion
PAIR_S = 1.0  # seconds a caught-up learner may wait for another one, to be promoted in a pair


class Promotions:
    """Learners waiting to become voters, on the leader."""

    def __init__(self) -> None:
        self._waiting: set[str] = set()
        self._hold_until = 0.0
        self._caught_up_at: dict[str, float] = {}  # when a learner waiting for a pair caught up

    def add(self, node_id: str) -> None:
        """Promote learner ``node_id`` as soon as its log has caught up."""
        self._waiting.add(node_id)

    def hold(self, node: RaftNode, now: float) -> bool:
        """Try the waiting promotions; True while new proposals should wait for one."""
        if not self._waiting:
            return False
        if node.role != Role.LEADER:
            self._waiting.clear()
            self._caught_up_at.clear()
            return False
        hold = False
        for learner in sorted(self._waiting):
            if learner not in node.conf.learners:
                self._waiting.discard(learner)
                self._caught_up_at.pop(learner, None)
                continue
            if self._caught_up(node, learner):
                if self._waits_for_pair(node, learner, now):
                    hold = True  # proposals wait a little, so that the other one catches up
                    continue
                try:
                    node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, learner))
                except ValueError as exc:  # another change is still committing: next time
                    log.debug("raft: promotion of %s deferred: %s", learner, exc)
                    return False
                log.info("raft: promoting manager %s to voter", learner)
                self._waiting.discard(learner)
                self._caught_up_at.pop(learner, None)
                self._hold_until = 0.0
                return False
            hold = True
        if not hold:
            return False
        if self._hold_until == 0.0:
            self._hold_until = now + HOLD_S
        if now < self._hold_until:
            return True
        if now > self._hold_until + 2 * HOLD_S:
            self._hold_until = 0.0  # a slow learner: hold again later, never for long
        return False

    @staticmethod
    def _caught_up(node: RaftNode, learner: str) -> bool:
        progress = node.progress.get(learner)
        return progress is not None and progress.match >= node.commit

    def _waits_for_pair(self, node: RaftNode, learner: str, now: float) -> bool:
        """Whether caught-up ``learner`` waits for another waiting learner (module docstring)."""
        if (len(node.conf.voters) + 1) % 2:
            return False  # its promotion leaves an odd number of voters
        behind = [other for other in self._waiting
                  if other != learner and other in node.conf.learners and not self._caught_up(node, other)]
        if not behind:
            return False
        since = self._caught_up_at.setdefault(learner, now)
        return now - since < PAIR_S
