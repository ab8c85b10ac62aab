"""A node's member table, and the broadcast queue that feeds its gossip.

The table can sit on a *shared, read-only base*: a :class:`ConvergedView` that every simulated node
of a large benchmark starts from (as if the cluster had long converged). Only the records a node
changes are copied into its own dict, so 10,000 simulated nodes do not need 10,000 x 10,000
records. A node that joins through seeds has no base and owns every record.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nodeagent.gossip.messages import Broadcastable, NodeMeta, PushPullEntry
from nodeagent.gossip.schedule import BaseOrder

__all__ = ["BroadcastQueue", "ConvergedView", "Member", "MemberState", "MemberTable"]

# Piggybacked messages stop when less than this much of the packet budget is left.
MIN_PIGGYBACK_ROOM = 16


class MemberState(enum.Enum):
    """A member's state as this node sees it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(slots=True)
class Member:
    """One member of the cluster as this node sees it."""

    name: str
    address: str
    meta: NodeMeta
    state: MemberState
    incarnation: int
    state_change: float  # when this node last saw the state change (its own clock)

    def copy(self) -> Member:
        """An independent copy."""
        return Member(self.name, self.address, self.meta, self.state, self.incarnation, self.state_change)


class ConvergedView:
    """A member list every node of a benchmark starts from; never modified once built."""

    __slots__ = ("_probe_base", "dead", "entries", "live", "members", "names", "not_live")

    def __init__(self, entries: Iterable[PushPullEntry], now: float) -> None:
        self.members: dict[str, Member] = {}
        self.entries: dict[str, PushPullEntry] = {}  # push-pull entries of unchanged records, prebuilt
        for e in entries:
            state = MemberState(e.state.name.lower())
            self.members[e.name] = Member(e.name, e.address, e.meta, state, e.incarnation, now)
            self.entries[e.name] = e
        self.names: list[str] = list(self.members)
        self.dead = [m.name for m in self.members.values() if m.state is MemberState.DEAD]
        live = (MemberState.ALIVE, MemberState.SUSPECT)
        self.live = sum(1 for m in self.members.values() if m.state in live)
        self.not_live = [m.name for m in self.members.values() if m.state not in live]
        self._probe_base: BaseOrder | None = None

    def probe_base(self) -> BaseOrder:
        """Every member's name in probe order, built once and shared by every node of the view."""
        if self._probe_base is None:
            self._probe_base = BaseOrder(self.names)
        return self._probe_base


class MemberTable:
    """Member records by name: the node's own records over an optional shared base."""

    __slots__ = ("_base", "_base_entries", "_base_names", "_own", "_own_names")

    def __init__(self, base: ConvergedView | None = None) -> None:
        self._base: dict[str, Member] = base.members if base is not None else {}
        self._base_names: list[str] = base.names if base is not None else []
        self._base_entries: dict[str, PushPullEntry] = base.entries if base is not None else {}
        self._own: dict[str, Member] = {}
        self._own_names: list[str] = []  # names not in the base, in the order they were added

    def get(self, name: str) -> Member | None:
        """The record for ``name`` (read only: use :meth:`writable` to change it)."""
        member = self._own.get(name)
        if member is None:
            return self._base.get(name)
        return member

    def writable(self, name: str) -> Member:
        """The record for ``name``, copied out of the shared base first if needed."""
        member = self._own.get(name)
        if member is None:
            member = self._base[name].copy()
            self._own[name] = member
        return member

    def add(self, member: Member) -> None:
        """Add or replace a record (the node's own)."""
        if member.name not in self._own and member.name not in self._base:
            self._own_names.append(member.name)
        self._own[member.name] = member

    def __len__(self) -> int:
        return len(self._base_names) + len(self._own_names)

    def name_at(self, index: int) -> str:
        """The name at a stable position in ``0 .. len-1`` (positions only grow)."""
        base = self._base_names
        if index < len(base):
            return base[index]
        return self._own_names[index - len(base)]

    def __iter__(self) -> Iterator[Member]:
        for name in self._base_names:
            member = self._own.get(name)
            yield member if member is not None else self._base[name]
        own = self._own
        for name in self._own_names:
            yield own[name]


    def entries(self, to_wire: Callable[[Member], PushPullEntry]) -> tuple[PushPullEntry, ...]:
        """Every record as a push-pull entry (unchanged base records reuse their prebuilt entry)."""
        own = self._own
        base_entries = self._base_entries
        out = [base_entries[n] if n not in own else to_wire(own[n]) for n in self._base_names]
        out.extend(to_wire(own[n]) for n in self._own_names)
        return tuple(out)


class _Queued:
    __slots__ = ("key", "message", "size", "transmits")

    def __init__(self, key: tuple[Any, ...], message: Broadcastable) -> None:
        self.key = key
        self.message = message
        self.size = message.size()
        self.transmits = 0


class BroadcastQueue:
    """Messages waiting to be gossiped, least-transmitted (then newest) first.

    Items sit in buckets by transmit count, so taking the least-sent costs no sorting; a newer
    message with the same key (about the same member) replaces the older one.
    """

    __slots__ = ("buckets", "index")

    def __init__(self) -> None:
        self.buckets: list[dict[tuple[Any, ...], _Queued]] = [{}]
        self.index: dict[tuple[Any, ...], _Queued] = {}

    def __len__(self) -> int:
        return len(self.index)

    def has(self, key: tuple[Any, ...]) -> bool:
        """Whether a message is queued under ``key``."""
        return key in self.index

    def push(self, key: tuple[Any, ...], message: Broadcastable) -> None:
        """Queue ``message``, replacing whatever was queued under ``key``."""
        old = self.index.pop(key, None)
        if old is not None:
            del self.buckets[old.transmits][key]
        item = _Queued(key, message)
        self.index[key] = item
        self.buckets[0][key] = item

    def take(self, budget: int, limit: int) -> list[Broadcastable]:
        """Messages filling up to ``budget`` bytes; each is dropped after ``limit`` transmissions."""
        chosen: list[_Queued] = []
        for bucket in self.buckets:
            if budget < MIN_PIGGYBACK_ROOM:
                break
            for item in reversed(bucket.values()):
                if item.size <= budget:
                    chosen.append(item)
                    budget -= item.size
                    if budget < MIN_PIGGYBACK_ROOM:
                        break
        buckets = self.buckets
        for item in chosen:
            del buckets[item.transmits][item.key]
            item.transmits += 1
            if item.transmits >= limit:
                del self.index[item.key]
                continue
            while len(buckets) <= item.transmits:
                buckets.append({})
            buckets[item.transmits][item.key] = item
        return [item.message for item in chosen]
