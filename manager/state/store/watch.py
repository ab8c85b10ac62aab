"""Watches: committed changes delivered in commit order, for orchestrators and other components.

A watch is a queue the store appends to after each batch it commits; the owner drains it with
``poll()``. Nothing of a rejected batch ever reaches a watch. The store is single-threaded (its
shell applies entries on one event loop), so an asyncio shell waits by passing ``on_change``
(e.g. ``event.set``) and polling when woken. ``on_change`` runs when the applier calls
``Store.notify_watches()`` after ``apply`` returned, never inside ``apply``: a watcher that
raises cannot fail a committed write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from manager.state.store.objects import StoredObject

__all__ = ["ACTIONS", "Change", "Watch"]

ACTIONS = ("create", "update", "remove")


@dataclass(frozen=True)
class Change:
    """One committed change: the object after it (for a removal, the last version before it)."""

    index: int  # the Raft index of the entry (a restored snapshot's index for a restore)
    action: str  # "create" | "update" | "remove"
    kind: str
    object: StoredObject

    __hash__ = None  # type: ignore[assignment]  # holds a StoredObject, which holds dicts


class Watch:
    """A subscription to committed changes of some kinds; see ``Store.watch``."""

    def __init__(
        self,
        kinds: frozenset[str] | None,
        on_change: Callable[[], None] | None,
        unsubscribe: Callable[[Watch], None],
        from_index: int = 0,
    ) -> None:
        self.kinds = kinds  # None: every kind
        self.from_index = from_index  # changes of earlier entries are not wanted
        self._on_change = on_change
        self._unsubscribe = unsubscribe
        self._queue: list[Change] = []
        self.closed = False

    def poll(self) -> list[Change]:
        """Take every change delivered so far, oldest first; [] when there is none. Never blocks."""
        out, self._queue = self._queue, []
        return out

    @property
    def pending(self) -> int:
        """How many changes are waiting to be polled."""
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving changes; what is already queued can still be polled. Idempotent."""
        if not self.closed:
            self.closed = True
            self._unsubscribe(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _deliver(self, changes: Iterable[Change]) -> bool:
        """Queue the changes this watch wants; True if any were queued (the store then notifies)."""
        before = len(self._queue)
        kinds, start = self.kinds, self.from_index
        self._queue.extend(c for c in changes if c.index >= start and (kinds is None or c.kind in kinds))
        return len(self._queue) > before

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change()
