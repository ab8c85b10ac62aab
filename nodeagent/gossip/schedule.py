"""The staggered probe schedule: an order of the live members every node derives alike. Pure.

Every node sorts the members it considers live (alive or suspect, itself included) by a hash of
their names, the *probe order*; with ``n`` members and this node at position ``q``, it probes in
probe slot ``s`` (``floor(shared_clock / probe_interval)``) the member at position
``(q + 1 + s mod (n - 1)) mod n``. While views agree, the map ``q -> q + k`` is a bijection, so every
member is probed by exactly one other node per slot, and each node still visits every other member
once every ``n - 1`` slots. A node ticks at phase ``probe_interval * (n - 1 - q) / n`` of its slot,
so a member's successive probers (positions ``p - k``, ``p - k - 1``, ...) tick ``probe_interval *
(1 + 1/n)`` apart: a crashed member is probed at most about one interval after its crash.

:class:`ProbeOrder` answers "how many", "at which position is X" and "who is at position r" in
O(log n) without a per-node copy of a shared member list: it keeps a shared sorted *base* (the
members of a :class:`ConvergedView`, built once for every node of a benchmark), the base positions
this node holds not live, and the live members outside the base.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["BaseOrder", "ProbeOrder", "order_key", "slot_offset"]


def order_key(name: str) -> bytes:
    """The sort key of a member: 8 bytes of a hash of its name (a shuffle every node agrees on),
    then the name itself, so the order is total even if two hashes collide."""
    raw = name.encode()
    return hashlib.blake2b(raw, digest_size=8).digest() + raw


def slot_offset(slot: int, n: int) -> int:
    """How far ahead in the probe order a node probes in ``slot`` with ``n`` live members (n >= 2)."""
    return 1 + slot % (n - 1)


class BaseOrder:
    """A sorted list of member keys shared read-only by many :class:`ProbeOrder`."""

    __slots__ = ("index", "keys")

    def __init__(self, names: Iterable[str]) -> None:
        self.keys: list[bytes] = sorted({order_key(n) for n in names})
        self.index: dict[str, int] = {k[8:].decode(): i for i, k in enumerate(self.keys)}


class ProbeOrder:
    """The live members of one node's view, in probe order: a shared base minus exclusions, plus extras."""

    __slots__ = ("_base", "_excluded", "_extra", "_index")

    def __init__(self, base: BaseOrder | None = None, not_live: Iterable[str] = ()) -> None:
        self._base: list[bytes] = base.keys if base is not None else []
        self._index: dict[str, int] = base.index if base is not None else {}
        # Base positions this node holds not live (dead, left), sorted; usually few.
        self._excluded: list[int] = sorted({self._index[n] for n in not_live if n in self._index})
        # Keys of live members that are not in the base, sorted (everything, for a node that joined).
        self._extra: list[bytes] = []

    def __len__(self) -> int:
        return len(self._base) - len(self._excluded) + len(self._extra)

    def add(self, name: str) -> None:
        """``name`` is live (alive or suspect) in this node's view."""
        i = self._index.get(name)
        if i is not None:
            excluded = self._excluded
            j = bisect_left(excluded, i)
            if j < len(excluded) and excluded[j] == i:
                del excluded[j]
            return
        key = order_key(name)
        extra = self._extra
        j = bisect_left(extra, key)
        if j == len(extra) or extra[j] != key:
            extra.insert(j, key)

    def remove(self, name: str) -> None:
        """``name`` is no longer live (dead or left) in this node's view."""
        i = self._index.get(name)
        if i is not None:
            excluded = self._excluded
            j = bisect_left(excluded, i)
            if j == len(excluded) or excluded[j] != i:
                excluded.insert(j, i)
            return
        key = order_key(name)
        extra = self._extra
        j = bisect_left(extra, key)
        if j < len(extra) and extra[j] == key:
            del extra[j]

    def rank(self, key: bytes) -> int:
        """How many live members sort before ``key`` (the position of a live member's key)."""
        jb = bisect_left(self._base, key)
        return jb - bisect_left(self._excluded, jb) + bisect_left(self._extra, key)

    def select(self, r: int) -> str:
        """The name of the live member at position ``r`` (``0 <= r < len(self)``)."""
        if not 0 <= r < len(self):
            raise IndexError(f"probe order position {r} out of range 0..{len(self) - 1}")
        base, extra = self._base, self._extra
        n_base = len(base) - len(self._excluded)
        if not extra:
            return base[self._base_index(r)][8:].decode()
        if n_base == 0:
            return extra[r][8:].decode()
        # The largest t whose t-th live base member sits at merged position <= r.
        lo, hi = 0, n_base  # answer t in [-1, n_base - 1], searched as lo - 1
        while lo < hi:
            mid = (lo + hi) // 2
            key = base[self._base_index(mid)]
            if mid + bisect_left(extra, key) <= r:
                lo = mid + 1
            else:
                hi = mid
        t = lo - 1
        if t >= 0:
            key = base[self._base_index(t)]
            if t + bisect_left(extra, key) == r:
                return key[8:].decode()
        return extra[r - (t + 1)][8:].decode()

    def _base_index(self, t: int) -> int:
        """The base position of the ``t``-th live base member."""
        excluded = self._excluded
        # Exclusions before the answer: the count of i with excluded[i] - i <= t (non-decreasing).
        lo, hi = 0, len(excluded)
        while lo < hi:
            mid = (lo + hi) // 2
            if excluded[mid] - mid <= t:
                lo = mid + 1
            else:
                hi = mid
        return t + lo
