"""The in-memory Raft log: a compaction point, the entries after it, and the commit marker.

Indexes start at 1. ``offset`` is the last index that was compacted away (0 when nothing was),
so ``entries[i]`` has index ``offset + 1 + i``. Entries after ``stable`` have not been persisted
yet: the core hands them to the shell in the next Ready.

Invariants: ``offset <= applied <= committed <= last_index()``; entries are contiguous; a committed
entry is never truncated (a conflict there is a protocol bug and raises).
"""

from __future__ import annotations

from collections.abc import Sequence

from manager.state.raft.types import Entry, SnapshotMeta

__all__ = ["LogError", "RaftLog"]


class LogError(RuntimeError):
    """The log was asked to do something that would break Raft's guarantees."""


class RaftLog:
    """Entries after a compaction point, with commit, apply and persistence markers."""

    __slots__ = ("applied", "committed", "entries", "offset", "offset_term", "pending_snapshot", "stable")

    def __init__(
        self,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
        committed: int = 0,
        applied: int = 0,
    ) -> None:
        snap = snapshot if snapshot is not None else SnapshotMeta()
        self.offset = snap.index
        self.offset_term = snap.term
        # Entries at or before the snapshot are covered by it; their predecessors' terms may be
        # unknown, so the log starts right after the snapshot.
        kept = [e for e in entries if e.index > snap.index]
        for position, entry in enumerate(kept):
            if entry.index != snap.index + 1 + position:
                raise ValueError(
                    f"log entries must be contiguous after index {snap.index}: "
                    f"expected {snap.index + 1 + position}, found {entry.index}"
                )
        self.entries: list[Entry] = kept
        self.stable = self.last_index()
        self.committed = min(max(committed, snap.index), self.last_index())
        self.applied = min(max(applied, snap.index), self.committed)
        self.pending_snapshot: tuple[SnapshotMeta, bytes] | None = None

    # Reading -------------------------------------------------------------------------------
    def last_index(self) -> int:
        """The index of the last entry (the compaction point if the log is empty)."""
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        """The term of the last entry."""
        return self.entries[-1].term if self.entries else self.offset_term

    def first_index(self) -> int:
        """The first index still held as an entry."""
        return self.offset + 1

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when compacted away or not yet written."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset or index > self.offset + len(self.entries):
            return None
        return self.entries[index - self.offset - 1].term

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (which must be held)."""
        if not self.offset < index <= self.last_index():
            raise LogError(f"entry {index} is not in the log ({self.offset + 1}..{self.last_index()})")
        return self.entries[index - self.offset - 1]

    def match_term(self, index: int, term: int) -> bool:
        """Whether the entry at ``index`` exists and has ``term``."""
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as current as this one."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo..hi inclusive, cut after ``max_bytes`` of payload (at least one entry)."""
        if lo > hi:
            return []
        if lo <= self.offset or hi > self.last_index():
            raise LogError(f"slice {lo}..{hi} is outside the log ({self.offset + 1}..{self.last_index()})")
        chosen = self.entries[lo - self.offset - 1 : hi - self.offset]
        if max_bytes is None:
            return chosen
        size = 0
        for count, entry in enumerate(chosen):
            size += len(entry.data)
            if size > max_bytes and count > 0:
                return chosen[:count]
        return chosen

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (for fast backtracking).

        A leader that learns the follower's log has ``term`` at ``index`` can skip every entry of
        a later term in one step instead of probing them one by one.
        """
        index = min(index, self.last_index())
        while index > self.offset:
            found = self.term(index)
            if found is not None and found <= term:
                return index
            index -= 1
        return index

    def unstable_entries(self) -> list[Entry]:
        """Entries not yet persisted."""
        return self.entries[self.stable - self.offset :] if self.stable < self.last_index() else []

    # Writing -------------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing everything from ``entries[0].index`` on."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogError(f"refusing to overwrite committed entry {first} (commit {self.committed})")
        if first > self.last_index() + 1 or first <= self.offset:
            raise LogError(f"entry {first} does not follow the log ({self.offset + 1}..{self.last_index()})")
        del self.entries[first - self.offset - 1 :]
        self.entries.extend(entries)
        self.stable = min(self.stable, first - 1)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """Accept a leader's entries after (prev_index, prev_term); None if the logs do not match there.

        Returns the index of the last entry the message vouches for. Entries already present with
        the same term are kept (a duplicate or reordered message must not truncate the log).
        """
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        for position, entry in enumerate(entries):
            held = self.term(entry.index)
            if held is None and entry.index <= self.offset:
                continue  # already compacted, hence committed, hence identical
            if held != entry.term:
                self.append(entries[position:])
                break
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        """Move the commit marker forward to ``index`` (never back); return whether it moved."""
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise LogError(f"commit {index} is beyond the last index {self.last_index()}")
        self.committed = index
        return True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are persisted, unless they were replaced since."""
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def restore(self, snapshot: SnapshotMeta, data: bytes) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        self.entries = []
        self.offset = snapshot.index
        self.offset_term = snapshot.term
        self.committed = snapshot.index
        self.stable = snapshot.index
        self.pending_snapshot = (snapshot, data)

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (which must be committed, and applied by the caller)."""
        if index <= self.offset:
            return
        if index > self.committed:
            raise LogError(f"cannot compact past the commit index ({index} > {self.committed})")
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.offset]
        self.offset = index
        self.offset_term = term
        self.stable = max(self.stable, index)
