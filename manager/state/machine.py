"""The store as Raft's state machine: what every manager, real or simulated, applies entries to.

The Raft shell (:mod:`manager.state.raft.shell`) and the simulated manager
(:mod:`manager.state.raft.simmanager`) both apply committed entries through :class:`StoreMachine`,
so the fault campaign exercises the very commands, snapshots and restores that managers run.
It lives here, beside ``raft/`` and ``store/``, so that neither the simulator nor the runtime has
to import the other.
"""

from __future__ import annotations

from manager.state.store import ApplyResult, Store

__all__ = ["StoreMachine"]


class StoreMachine:
    """Adapts the store to the Raft shell's state machine interface."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply one committed batch; the store's ApplyResult goes back to the proposer."""
        return self.store.apply(index, data)

    def snapshot(self) -> bytes:
        """The store's snapshot bytes."""
        data = self.store.snapshot()
        return data if isinstance(data, bytes) else bytes(data)

    def restore(self, data: bytes, index: int) -> None:
        """Replace the store's contents with a snapshot's, taken at ``index``."""
        self.store.restore(data, index)
