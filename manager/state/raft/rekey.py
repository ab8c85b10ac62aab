"""Rotating Raft's data key (DEK) under a running log, as swarmkit's raft node does.

When autolock is turned on, the manager's key file asks for a new DEK
(:attr:`~manager.state.raft.keyfile.RaftKeys.needs_rotation`). The shell then, between two
Readys:

1. **begins**: a new DEK is written to the key file as pending, and the storage seals
   everything from then on with it (:meth:`RaftStorage.rotate_key`); the old DEK still opens the
   older segments and snapshot;
2. **snapshots** once the applied index reaches :meth:`RaftStorage.rotation_index` (swarmkit's
   waitForAppliedIndex: the snapshot must cover every entry an old segment holds, and be newer
   than the old snapshot), so that the compaction removes every file the old DEK sealed;
3. **finishes**: the pending DEK becomes the DEK in the key file, and the storage forgets the old
   one. A copy of the disk taken before autolock now opens nothing.

A manager that restarts between 1 and 3 opens its log with both keys: if no file needs the old
one any more it finishes at once, else it waits for the snapshot as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from manager.state.raft.encryption import DataCipher
from manager.state.raft.storage import RaftStorage

__all__ = ["DataKeyRotation", "DataKeys"]

log = logging.getLogger(__name__)


class DataKeys(Protocol):
    """What the rotation needs of the key file (:class:`~manager.state.raft.keyfile.RaftKeys`)."""

    @property
    def dek(self) -> bytes:
        """The current data key."""

    @property
    def pending_dek(self) -> bytes | None:
        """The new data key of a rotation under way."""

    @property
    def needs_rotation(self) -> bool:
        """Whether a rotation is wanted and has not begun."""

    def begin_rotation(self) -> bytes:
        """Write a new pending DEK (or keep the one under way) and return it."""

    def finish_rotation(self) -> None:
        """Make the pending DEK the DEK."""


class DataKeyRotation:
    """The shell's side of a data key rotation: when to begin, snapshot and finish."""

    def __init__(self, keys: DataKeys) -> None:
        """``keys``: the manager's key file, already loaded and unlocked."""
        self.keys = keys
        self.index = 0
        """The index a snapshot must reach to finish the rotation under way; 0 if none."""
        self.rotations = 0
        """Rotations finished by this process (tests and logs)."""

    def cipher(self) -> DataCipher:
        """The cipher to open the storage with: the pending DEK seals when a rotation was under
        way at the last stop, and the old DEK still opens."""
        pending = self.keys.pending_dek
        if pending is None:
            return DataCipher(self.keys.dek)
        return DataCipher(pending, (self.keys.dek,))

    async def opened(self, storage: RaftStorage) -> None:
        """After recovery: carry on with, or finish, a rotation the last run began."""
        if self.keys.pending_dek is None:
            return
        self.index = storage.rotation_index()
        log.info("raft: resuming the data key rotation (a snapshot at index %d finishes it)", self.index)
        await self._finish_if_done(storage)

    async def step(self, storage: RaftStorage, applied: int, snapshot_index: int) -> bool:
        """Begin a rotation the keys ask for; whether a snapshot is due now to finish one."""
        if not self.index:
            if not self.keys.needs_rotation:
                return False
            new = await asyncio.to_thread(self.keys.begin_rotation)
            await asyncio.to_thread(storage.rotate_key, new)
            self.index = storage.rotation_index()
            log.info("raft: data key rotation begun: new writes use the new key; a snapshot at "
                     "index %d will replace what the old key sealed", self.index)
            if not self.index:  # nothing on disk was sealed with the old key
                await self._finish_if_done(storage)
                return False
        return applied >= self.index and applied > snapshot_index

    async def snapshotted(self, storage: RaftStorage) -> None:
        """After any snapshot was saved: finish the rotation if no file needs the old key now."""
        if self.index:
            await self._finish_if_done(storage)

    async def _finish_if_done(self, storage: RaftStorage) -> None:
        if storage.old_key_in_use:
            self.index = storage.rotation_index()
            return
        await asyncio.to_thread(self.keys.finish_rotation)
        storage.forget_old_keys()
        self.index = 0
        self.rotations += 1
        log.info("raft: data key rotation finished: no file on disk needs the old key")
