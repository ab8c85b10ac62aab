"""Promoting a learner to voter, which needs a moment in which its log has caught up.

The core promotes only a learner whose log matches the commit index. Under a steady stream of
writes that moment may never come, so while a promotion waits the shell holds new proposals back
for up to ``HOLD_S`` seconds, letting the learner catch up, and then not again for a while, so
that a slow learner never stalls writes for long.
"""

from __future__ import annotations

import logging

from manager.state.raft.core import RaftNode
from manager.state.raft.messages import ConfChange, ConfChangeType, Role

__all__ = ["HOLD_S", "Promotions"]

log = logging.getLogger(__name__)

HOLD_S = 0.5  # seconds new proposals may wait for a learner to catch up before promotion


class Promotions:
    """Learners waiting to become voters, on the leader."""

    def __init__(self) -> None:
        self._waiting: set[str] = set()
        self._hold_until = 0.0

    def add(self, node_id: str) -> None:
        """Promote learner ``node_id`` as soon as its log has caught up."""
        self._waiting.add(node_id)

    def hold(self, node: RaftNode, now: float) -> bool:
        """Try the waiting promotions; True while new proposals should wait for one."""
        if not self._waiting:
            return False
        if node.role != Role.LEADER:
            self._waiting.clear()
            return False
        hold = False
        for learner in sorted(self._waiting):
            if learner not in node.conf.learners:
                self._waiting.discard(learner)
                continue
            progress = node.progress.get(learner)
            if progress is not None and progress.match >= node.commit:
                try:
                    node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, learner))
                except ValueError as exc:  # another change is still committing: next time
                    log.debug("raft: promotion of %s deferred: %s", learner, exc)
                    return False
                log.info("raft: promoting manager %s to voter", learner)
                self._waiting.discard(learner)
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
