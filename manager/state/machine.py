"""The store as Raft's state machine: what every manager, real or simulated, applies entries to.

The Raft shell (:mod:`manager.state.raft.shell`) and the simulated manager
(:mod:`manager.state.raft.simmanager`) both apply committed entries through :class:`StoreMachine`,
so the fault campaign exercises the very commands, snapshots, restores and watch notices that
managers run. It lives here, beside ``raft/`` and ``store/``, so that neither the simulator nor
the runtime has to import the other.
"""

from __future__ import annotations

import logging

import prometheus_client

from manager.state.store import ApplyResult, Store
from manager.state.store.watch import Watch

__all__ = ["StoreMachine"]

log = logging.getLogger(__name__)


class StoreMachine:
    """Adapts the store to the Raft shell's state machine interface.

    Watches are told after each apply (or restore) has returned; a watcher that raises is logged
    and counted in ``swarmlet_store_watch_errors_total``, and the entry's result still goes back
    to its proposer: a committed write never turns into an error because of a watcher.
    """

    def __init__(self, store: Store, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.store = store
        self.watch_errors = prometheus_client.Counter(
            "swarmlet_store_watch_errors",
            "Store watch callbacks that raised (logged; the write they followed still committed)",
            registry=registry if registry is not None else prometheus_client.CollectorRegistry(),
        )
        store.on_watch_error = self._watch_failed

    def _watch_failed(self, watch: Watch, exc: Exception) -> None:
        self.watch_errors.inc()
        kinds = sorted(watch.kinds or ("every kind",))
        log.error("store: a watcher of %s failed: %r", kinds, exc, exc_info=exc)

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply one committed batch, then tell the watches; the ApplyResult goes back to the proposer."""
        result = self.store.apply(index, data)
        self.store.notify_watches()
        return result

    def snapshot(self) -> bytes:
        """The store's snapshot bytes."""
        data = self.store.snapshot()
        return data if isinstance(data, bytes) else bytes(data)

    def restore(self, data: bytes, index: int) -> None:
        """Replace the store's contents with a snapshot's, taken at ``index``, then tell the watches."""
        self.store.restore(data, index)
        self.store.notify_watches()
