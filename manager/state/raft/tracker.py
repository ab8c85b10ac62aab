"""What a leader knows about each follower's log, and how it paces replication to it.

A follower's progress is in one of three states, as in etcd:

* ``probe``: the leader does not know where the follower's log ends; it sends one append at a time
  and backs off on rejection until it finds the point where the logs match;
* ``replicate``: the logs match up to ``match``; the leader streams appends optimistically,
  advancing ``next`` as it sends, with at most ``max_inflight`` messages unacknowledged;
* ``snapshot``: the follower needs entries the leader has compacted away; a snapshot is on its way
  and nothing else is sent until the follower acknowledges it (or the attempt times out).

Invariant: ``match < next``; every index up to ``match`` is known to be in the follower's log.
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(enum.Enum):
    """How the leader is replicating to one follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each append message sent but not yet acknowledged, oldest first."""

    __slots__ = ("_sent", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._sent: deque[int] = deque()

    def add(self, last_index: int) -> None:
        """Record an append message whose last entry is ``last_index``."""
        self._sent.append(last_index)

    def free_to(self, index: int) -> None:
        """The follower has everything up to ``index``: the messages ending there are done."""
        sent = self._sent
        while sent and sent[0] <= index:
            sent.popleft()

    def full(self) -> bool:
        """Whether the window is used up."""
        return len(self._sent) >= self.capacity

    def reset(self) -> None:
        """Forget every message in flight."""
        self._sent.clear()

    def __len__(self) -> int:
        return len(self._sent)


class Progress:
    """The leader's view of one follower (or learner)."""

    __slots__ = (
        "heartbeat_match",
        "inflights",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "snapshot_index",
        "snapshot_ticks",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False  # in probe state: an append is out; wait for its answer or a heartbeat
        self.recent_active = False  # heard from since the last check-quorum round
        self.snapshot_index = 0  # in snapshot state: the index of the snapshot sent
        self.snapshot_ticks = 0  # in snapshot state: ticks since it was sent
        self.inflights = Inflights(max_inflight)
        self.heartbeat_match = -1  # match at the last heartbeat answer, to notice lost appends

    def become_probe(self) -> None:
        """Go back to finding the match point, resuming after the last known match."""
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.snapshot_index = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        """The match point is known: stream from just after it."""
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, snapshot_index: int) -> None:
        """A snapshot at ``snapshot_index`` is being sent; pause appends until it lands."""
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.snapshot_ticks = 0
        self.probe_sent = False
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged up to ``index``; return whether ``match`` moved."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int) -> None:
        """An append ending at ``last_index`` went out."""
        if self.state == ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """The follower rejected an append after ``rejected``; back off to ``hint`` + 1.

        Returns False for a stale rejection (one about an index that no longer matters).
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader should hold further appends to this follower for now."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def describe(self) -> dict[str, object]:
        """For status pages and metrics."""
        return {
            "match": self.match,
            "next": self.next,
            "state": self.state.value,
            "inflight": len(self.inflights),
            "recent_active": self.recent_active,
        }
