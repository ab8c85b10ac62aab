"""The shape every manager component has: watched kinds, a dirty set, a pure reconcile.

This is swarmkit's orchestrator shape in Python. A component

* names the store kinds it watches (``kinds``);
* turns each committed change of those kinds into dirty keys (``dirty_keys``; by default the
  changed object's ``(kind, id)``), and may mark keys dirty itself from what it observes outside
  the store (``poke``: the dispatcher's heartbeats, for instance);
* decides in :meth:`Component.reconcile`, a pure function of a read-only store view, the dirty
  keys and ``now``: it returns the store operations to write (one batch) and when it next wants
  to be asked even if nothing changes (``next_wakeup``, on the harness's clock; None: only on
  changes).

``reconcile`` does no I/O, reads no clock and draws no global randomness: everything it decides
on comes in through its arguments or through what the component was told (``poke``-style
observations kept in memory). The harness (``manager.component.harness``) does the rest: it
opens the watch, keeps the dirty set, calls ``reconcile`` on each commit or timer, writes the
ops in one batch through the manager's write path, and retries version conflicts through
:func:`manager.component.runner.write_reconciled`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, NamedTuple

from manager.state.store.commands import Op
from manager.state.store.errors import NotFound
from manager.state.store.objects import StoredObject
from manager.state.store.store import Store
from manager.state.store.watch import Change

__all__ = ["Component", "DirtyKey", "Reconciled", "StoreView"]

DirtyKey = tuple[str, str]
"""What a component marks dirty: ``(kind, id)`` of a store object, or a key of its own choosing."""


class Reconciled(NamedTuple):
    """What one reconcile decided: the ops to write in one batch, and when to be asked again."""

    ops: Sequence[Op]
    next_wakeup: float | None  # on the harness's clock; None: only when something changes


class StoreView:
    """A read-only view of a store, for ``reconcile``: reads, and no way to write or watch.

    It reads the live store; a reconcile runs to its end without yielding, and the store is
    applied on the same thread, so nothing changes under it. Stored objects are frozen already.
    """

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def applied_index(self) -> int:
        """The index of the last entry the store applied."""
        return self._store.applied_index

    def get(self, kind: str, id: str) -> StoredObject:
        """The object with exactly this ID (NotFound otherwise)."""
        return self._store.get(kind, id)

    def maybe(self, kind: str, id: str) -> StoredObject | None:
        """The object with exactly this ID, or None."""
        try:
            return self._store.get(kind, id)
        except NotFound:
            return None

    def find(
        self,
        kind: str,
        *,
        name: str | None = None,
        filters: Callable[[StoredObject], bool] | None = None,
        service_id: str | None = None,
        node_id: str | None = None,
    ) -> list[StoredObject]:
        """As ``Store.find``: objects of ``kind`` sorted by ID that match every criterion."""
        return self._store.find(kind, name=name, filters=filters, service_id=service_id, node_id=node_id)

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` there are."""
        return self._store.count(kind)

    def cluster(self) -> StoredObject | None:
        """The Cluster object, or None before it is created."""
        found = self._store.find("cluster")
        return found[0] if found else None


class Component(abc.ABC):
    """One manager component; subclasses set ``name`` and ``kinds`` and write ``reconcile``."""

    name: ClassVar[str] = "component"
    """For logs and metric labels."""
    kinds: ClassVar[frozenset[str]] = frozenset()
    """The store kinds whose committed changes make this component reconcile."""

    def __init__(self) -> None:
        self._poke: Callable[[Iterable[DirtyKey]], None] | None = None

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """The keys one committed change makes dirty (default: the object's ``(kind, id)``)."""
        return ((change.kind, change.object.id),)

    def start(self, view: StoreView, now: float) -> None:  # noqa: B027 - a hook, empty by default
        """Called when the harness starts running the component (on a manager: when it leads)."""

    @abc.abstractmethod
    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Decide: the ops to write in one batch, and when to be asked again. Must be pure."""

    # ---- observations from outside the store ---------------------------------------------------

    def attach(self, poke: Callable[[Iterable[DirtyKey]], None] | None) -> None:
        """The harness's hook for :meth:`poke` (None detaches)."""
        self._poke = poke

    def poke(self, *keys: DirtyKey) -> None:
        """Mark keys dirty from outside the store and ask the harness for a reconcile soon."""
        if self._poke is not None:
            self._poke(keys)
