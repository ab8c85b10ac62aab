"""The Raft data key rotated when autolock is turned on (swarmkit's RaftDEKManager), key file and WAL.

* the key file asks for a rotation only going from a plaintext KEK to autolock (not on an
  unlock key rotation, nor autolock off), keeps the pending DEK across a restart and a lock, and
  finishes with the pending DEK as the DEK;
* the storage seals new writes under the new key at once, still reads the old segments and
  snapshot, and once a snapshot at :meth:`rotation_index` is saved, no file needs the old key:
  the log opens under the new key alone, and the old key (a copy of the key file taken before
  autolock) opens nothing;
* a restart in the middle of a rotation reads both and carries on.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil

import pytest

from manager.state.raft.encryption import DataCipher, new_key
from manager.state.raft.keyfile import RaftKeys
from manager.state.raft.rekey import DataKeyRotation
from manager.state.raft.storage import CorruptLogError, RaftStorage
from manager.state.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
CONF = ConfState(("m1",))


def _entries(first: int, last: int) -> list[Entry]:
    return [Entry(i, 1, EntryType.NORMAL, b"entry %d" % i) for i in range(first, last + 1)]


def _doc(path: pathlib.Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def _opens(directory: pathlib.Path, cipher: DataCipher, scratch: pathlib.Path) -> list[Entry] | None:
    """The entries a copy of ``directory`` holds under ``cipher``; None if it does not open."""
    copy = scratch / f"copy-{len(list(scratch.iterdir()))}"
    shutil.copytree(directory, copy)
    try:
        with RaftStorage.open(copy, cipher=cipher) as storage:
            return storage.entries()
    except CorruptLogError:
        return None


def test_only_autolock_turned_on_asks_for_a_new_data_key(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    keys = RaftKeys(path)
    keys.load()
    first = keys.dek
    assert not keys.needs_rotation
    unlock = new_key()
    keys.rewrap(unlock)  # unlocked -> locked: rotate
    assert keys.needs_rotation and _doc(path)["needs_rotation"] is True
    # The wish survives a restart (and the lock): the shell begins it once unlocked.
    again = RaftKeys(path)
    again.load()
    assert again.locked
    again.unlock(unlock)
    assert again.needs_rotation and again.dek == first and again.pending_dek is None
    pending = again.begin_rotation()
    assert pending not in (first, None) and not again.needs_rotation
    assert again.begin_rotation() == pending  # one rotation at a time
    doc = _doc(path)
    assert "pending_dek" in doc and "needs_rotation" not in doc
    # Locked with a pending key: the unlock key opens both.
    mid = RaftKeys(path)
    mid.load()
    mid.unlock(unlock)
    assert (mid.dek, mid.pending_dek) == (first, pending)
    mid.finish_rotation()
    assert (mid.dek, mid.pending_dek) == (pending, None)
    done = RaftKeys(path)
    done.load()
    done.unlock(unlock)
    assert (done.dek, done.pending_dek, done.needs_rotation) == (pending, None, False)
    assert "pending_dek" not in _doc(path)
    # Rotating the unlock key, or autolock off: the data key stays (swarmkit's compareKEKs).
    done.rewrap(new_key())
    assert not done.needs_rotation
    done.rewrap(None)
    assert not done.needs_rotation and done.dek == pending
    # On again: a rotation again.
    done.rewrap(new_key())
    assert done.needs_rotation


def test_new_writes_use_the_new_key_and_a_snapshot_retires_the_old_one(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "raft"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with RaftStorage.open(log, cipher=DataCipher(OLD)) as storage:
        storage.save(HardState(1, "m1", 4), _entries(1, 4))
        storage.save_snapshot(SnapshotMeta(2, 1, CONF), b"state at 2")
        storage.save(HardState(1, "m1", 5), _entries(5, 5))
        assert not storage.old_key_in_use and storage.rotation_index() == 0
        storage.rotate_key(NEW)
        assert storage.old_key_in_use and storage.rotation_index() == 5  # every entry sealed before
        storage.save(HardState(1, "m1", 7), _entries(6, 7))  # after the rotation: the new key
    # Both keys are needed now: old segments and snapshot under the old one, new ones under the new.
    assert _opens(log, DataCipher(OLD), scratch) is None
    assert _opens(log, DataCipher(NEW), scratch) is None
    assert _opens(log, DataCipher(NEW, (OLD,)), scratch) == _entries(3, 7)

    with RaftStorage.open(log, cipher=DataCipher(NEW, (OLD,))) as storage:
        # A restart mid-rotation knows which files still need the old key.
        assert storage.old_key_in_use and storage.rotation_index() == 5
        assert not storage.forget_old_keys()
        storage.save_snapshot(SnapshotMeta(4, 1, CONF), b"state at 4")  # not far enough
        assert storage.old_key_in_use and storage.rotation_index() == 5
        storage.save_snapshot(SnapshotMeta(6, 1, CONF), b"state at 6")
        assert not storage.old_key_in_use and storage.rotation_index() == 0
        assert storage.forget_old_keys()
        storage.save(HardState(1, "m1", 8), _entries(8, 8))
    assert _opens(log, DataCipher(NEW), scratch) == _entries(7, 8)
    assert _opens(log, DataCipher(OLD), scratch) is None  # the old key opens nothing on disk
    with RaftStorage.open(log, cipher=DataCipher(NEW)) as storage:
        assert storage.snapshot_data == b"state at 6" and storage.hard_state == HardState(1, "m1", 8)


def test_a_rotation_on_an_empty_log_needs_no_snapshot(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path, cipher=DataCipher(OLD)) as storage:
        storage.rotate_key(NEW)
        assert not storage.old_key_in_use and storage.rotation_index() == 0
        assert storage.forget_old_keys()
    with pytest.raises(RuntimeError, match="no data key"), RaftStorage.open(tmp_path / "p") as plain:
        plain.rotate_key(NEW)


def test_the_shells_rotation_begins_snapshots_and_finishes(tmp_path: pathlib.Path) -> None:
    """DataKeyRotation as the shell drives it, against a real key file and storage."""
    keys = RaftKeys(tmp_path / "keys.json", fsync=False)
    keys.load()
    old = keys.dek

    async def scenario() -> None:
        rotation = DataKeyRotation(keys)
        storage = RaftStorage.open(tmp_path / "raft", cipher=rotation.cipher(), fsync=False)
        await rotation.opened(storage)
        storage.save(HardState(1, "m1", 3), _entries(1, 3))
        assert not await rotation.step(storage, applied=3, snapshot_index=0)  # nothing asked
        keys.rewrap(new_key())  # autolock on
        assert await rotation.step(storage, applied=3, snapshot_index=0)  # begun; snapshot due at 3
        assert keys.pending_dek is not None and rotation.index == 3
        storage.close()
        # The manager stops here and restarts: the pending key seals, the old one still opens.
        again = DataKeyRotation(keys)
        storage = RaftStorage.open(tmp_path / "raft", cipher=again.cipher(), fsync=False)
        await again.opened(storage)
        assert again.index == 3 and await again.step(storage, applied=3, snapshot_index=0)
        storage.save_snapshot(SnapshotMeta(3, 1, CONF), b"state at 3")
        await again.snapshotted(storage)
        assert again.index == 0 and again.rotations == 1
        storage.close()

    asyncio.run(scenario())
    assert keys.pending_dek is None and keys.dek != old
    assert _opens(tmp_path / "raft", DataCipher(keys.dek), tmp_path) == []
    assert _opens(tmp_path / "raft", DataCipher(old), tmp_path) is None
