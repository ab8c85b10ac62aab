"""The values Raft persists, shared by the core (which produces them) and storage (which keeps them).

Changing a field here changes the on-disk format: storage encodes these explicitly and versions
its records, so add fields at the end with defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["ConfState", "Entry", "EntryType", "HardState", "SnapshotMeta"]


class EntryType(enum.IntEnum):
    """What an entry carries. Wire and disk values: ONLY APPEND TO THIS LIST."""

    NORMAL = 0  # an application command (a store transaction), or empty (a new leader's no-op)
    CONF_CHANGE = 1  # a membership change, applied when committed


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``index`` starts at 1; ``term`` is the leader's term when it was appended."""

    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent."""

    term: int = 0
    vote: str = ""  # the candidate voted for in ``term``, "" for none
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The cluster's membership as of some log index."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()  # non-voters catching up before they are promoted


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Describes a snapshot: the state machine as of ``index`` (whose term is ``term``)."""

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)
