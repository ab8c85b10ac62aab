"""Rebuilding a manager's Raft from its storage, and what it is rebuilt into: the state machine.

A manager restarts from what its storage recovered: the snapshot goes into the state machine,
the hard state and the entries after the snapshot into a new core. A manager whose storage is
empty is a founding member (``voters``), the first manager of a new cluster (``bootstrap``), or
one that joins later and waits for a leader to add it.
"""

from __future__ import annotations

import random
from typing import Protocol

from manager.state.raft.config import RaftConfig
from manager.state.raft.core import RaftNode
from manager.state.raft.storage import RaftStorage

__all__ = ["StateMachine", "recover"]


class StateMachine(Protocol):
    """What the shell applies committed entries to (the store, or a test's key-value map)."""

    def apply(self, index: int, data: bytes) -> object:
        """Apply one committed entry; the result is handed to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, as of the last applied entry."""
        ...

    def restore(self, data: bytes, index: int) -> None:
        """Replace the whole state with a snapshot's, taken at log ``index``."""
        ...


def recover(
    storage: RaftStorage,
    state_machine: StateMachine,
    config: RaftConfig,
    node_id: str,
    rng: random.Random,
    *,
    bootstrap: bool,
    voters: tuple[str, ...],
) -> RaftNode:
    """Restore ``state_machine`` from the stored snapshot and build the core from the rest.

    ``bootstrap`` and ``voters`` count only when storage is empty (see :class:`RaftNode`).
    """
    snap = storage.snapshot
    applied = 0
    if snap is not None and snap.index > 0:
        state_machine.restore(storage.snapshot_data, snap.index)
        applied = snap.index
    entries = list(storage.entries())
    fresh = storage.hard_state.term == 0 and not entries and (snap is None or snap.index == 0)
    founders: tuple[str, ...] = ()
    if fresh and bootstrap:
        founders = (node_id,)
    elif fresh and voters:
        founders = tuple(voters)
    return RaftNode(
        config,
        node_id,
        rng,
        voters=founders,
        hard_state=storage.hard_state,
        entries=entries,
        snapshot=snap if snap is not None and snap.index > 0 else None,
        applied=applied,
        snapshot_data=storage.snapshot_data if applied else b"",
    )
