"""Raft encrypted at rest: nothing readable on disk, torn and damaged sealed records, the key file.

The plaintext format's crash and damage cases are in test_raft_storage.py; these are the same
promises with a data key, plus what only encryption adds: a record that does not decrypt, a log
written the other way, the unlock key's format and the key file's wrapping.
"""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import textwrap

import pytest
from _wal import flip, record_offsets, segments, sigkill_after

from manager.state.raft.encryption import (
    DataCipher,
    DecryptError,
    format_unlock_key,
    kek_from_unlock_key,
    new_key,
    parse_unlock_key,
    unwrap_key,
    wrap_key,
)
from manager.state.raft.keyfile import INVALID_UNLOCK_KEY, InvalidUnlockKey, RaftKeys
from manager.state.raft.storage import CorruptLogError, RaftStorage
from manager.state.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta

KEY = bytes(range(32))
SECRET = b"the-launch-codes-0451"
VOTER = "manager-two-7c1e9a"  # long enough never to turn up in random ciphertext by chance


def _cipher(key: bytes = KEY) -> DataCipher:
    return DataCipher(key)


def _entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, SECRET + b" %d" % i) for i in range(first, last + 1)]


def _disk_bytes(directory: pathlib.Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _leaks(blob: bytes, secret: bytes) -> list[str]:
    """The forms of ``secret`` found in ``blob``: raw, and base64 at each of its 3 alignments."""
    found = []
    if secret in blob:
        found.append("raw")
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)[4:-4]  # the aligned middle only
        if encoded in blob:
            found.append(f"base64+{shift}")
    return found


# ---------------------------------------------------------------------- keys and their format


def test_unlock_key_reads_back_and_is_swarms_format() -> None:
    key = new_key()
    text = format_unlock_key(key)
    assert text.startswith("SWMKEY-1-") and len(text) == len("SWMKEY-1-") + 43 and "=" not in text
    assert parse_unlock_key(text) == key
    # The one recorded from a real Swarm (single-node/13-autolock.txt) parses to 32 bytes.
    assert len(parse_unlock_key("SWMKEY-1-b8+/KStqQ5JBwve+87GaiylL55ipIv2LsM+YROzo7qE")) == 32
    for bad in ("SWMKEY-1-bogus", "SWMTKN-1-abc", "", text + "=", "SWMKEY-1-!!!!"):
        with pytest.raises(ValueError, match=r"^invalid key string$"):
            parse_unlock_key(bad)


def test_a_wrapped_key_opens_only_under_its_kek() -> None:
    dek, kek = new_key(), new_key()
    wrapped = wrap_key(kek, dek)
    assert unwrap_key(kek, wrapped) == dek and dek not in wrapped
    with pytest.raises(DecryptError):
        unwrap_key(new_key(), wrapped)
    assert kek_from_unlock_key(KEY) == kek_from_unlock_key(KEY) != kek_from_unlock_key(new_key())
    sealed = _cipher().seal(SECRET, b"one purpose")
    with pytest.raises(DecryptError):
        _cipher().open(sealed, b"another purpose")


def test_key_file_plain_then_autolocked_then_unlocked(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    keys = RaftKeys(path)
    keys.load()  # first start: a new DEK under a plaintext KEK
    dek = keys.dek
    again = RaftKeys(path)
    again.load()
    assert not again.locked and again.dek == dek and again.unlock_key is None
    unlock = new_key()
    again.rewrap(unlock)  # autolock on: the KEK is derived, never written
    doc = json.loads(path.read_text())
    assert doc["autolock"] is True and "kek" not in doc
    assert base64.b64encode(dek).decode() not in path.read_text()
    locked = RaftKeys(path)
    locked.load()
    assert locked.locked
    with pytest.raises(RuntimeError):
        _ = locked.dek
    with pytest.raises(InvalidUnlockKey, match=f"^{INVALID_UNLOCK_KEY}$"):
        locked.unlock(new_key())
    assert locked.locked
    locked.unlock(unlock)
    assert locked.dek == dek and locked.unlock_key == unlock
    rotated = new_key()
    locked.rewrap(rotated)  # rotation: the old key opens nothing any more
    after = RaftKeys(path)
    after.load()
    with pytest.raises(InvalidUnlockKey):
        after.unlock(unlock)
    after.unlock(rotated)
    after.rewrap(None)  # autolock off: a plaintext KEK again
    plain = RaftKeys(path)
    plain.load()
    assert not plain.locked and plain.dek == dek


def test_a_damaged_key_file_is_refused_by_name(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "dek": "not base64!"}')
    with pytest.raises(ValueError, match=f"^{path}: damaged Raft key file"):
        RaftKeys(path).load()


# ---------------------------------------------------------------------- the encrypted log


def test_nothing_readable_on_disk_and_everything_comes_back(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path, cipher=_cipher(), segment_bytes=1024) as storage:
        storage.save(HardState(term=1, vote="m1"), _entries(1, 10))
        storage.save_snapshot(SnapshotMeta(6, 1, ConfState(("m1", VOTER))), SECRET + b" snapshot")
        storage.save(HardState(term=2, vote=VOTER, commit=10), _entries(11, 12, term=2))
    disk = _disk_bytes(tmp_path)
    assert _leaks(disk, SECRET) == [] and _leaks(disk, VOTER.encode()) == []
    assert _leaks(SECRET * 3, SECRET) != []  # the search itself finds what is there
    with RaftStorage.open(tmp_path, cipher=_cipher()) as again:
        assert again.entries() == _entries(7, 10) + _entries(11, 12, term=2)
        assert again.hard_state == HardState(term=2, vote=VOTER, commit=10)
        assert again.snapshot == SnapshotMeta(6, 1, ConfState(("m1", VOTER)))
        assert again.snapshot_data == SECRET + b" snapshot"


def test_torn_sealed_tail_loses_only_the_unacknowledged_save(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RaftStorage.open(tmp_path, cipher=_cipher()) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
        storage.save(HardState(term=2), _entries(3, 4))
    (segment,) = segments(tmp_path)
    last = record_offsets(segment)[-1]
    with open(segment, "r+b") as handle:
        handle.truncate(segment.stat().st_size - 5)
    with caplog.at_level(logging.WARNING, logger="manager.state.raft.storage"):
        storage = RaftStorage.open(tmp_path, cipher=_cipher())
    assert f"{segment}: torn record at byte offset {last}" in caplog.text
    # A save is sealed whole: the torn one is gone entirely, the one before is intact.
    assert storage.entries() == _entries(1, 2) and storage.hard_state == HardState(term=1)
    storage.save(HardState(term=3), _entries(3, 3))
    storage.close()
    with RaftStorage.open(tmp_path, cipher=_cipher()) as again:
        assert again.entries() == _entries(1, 3) and again.hard_state == HardState(term=3)


def test_damaged_ciphertext_in_the_middle_is_corruption(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path, cipher=_cipher()) as storage:
        for i in range(1, 4):
            storage.save(None, _entries(i, i))
    (segment,) = segments(tmp_path)
    second = record_offsets(segment)[1]
    flip(segment, second + 20)
    with pytest.raises(CorruptLogError) as info:
        RaftStorage.open(tmp_path, cipher=_cipher())
    assert (info.value.path, info.value.offset) == (str(segment), second)
    assert "valid record follows" in info.value.reason


def test_tampered_record_with_a_good_crc_does_not_decrypt(tmp_path: pathlib.Path) -> None:
    # Someone who changes the ciphertext and fixes the CRC: authentication catches it.
    import zlib

    with RaftStorage.open(tmp_path, cipher=_cipher()) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
        storage.save(None, _entries(3, 3))
    (segment,) = segments(tmp_path)
    first = record_offsets(segment)[0]
    data = bytearray(segment.read_bytes())
    length = int.from_bytes(data[first : first + 4], "little")
    data[first + 9 + 20] ^= 0x01
    crc = zlib.crc32(bytes(data[first + 8 : first + 9 + length]))
    data[first + 4 : first + 8] = crc.to_bytes(4, "little")
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="does not decrypt") as info:
        RaftStorage.open(tmp_path, cipher=_cipher())
    assert info.value.offset == first


def test_the_wrong_data_key_opens_nothing(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path, cipher=_cipher()) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
    with pytest.raises(CorruptLogError, match="does not decrypt"):
        RaftStorage.open(tmp_path, cipher=_cipher(new_key()))
    with RaftStorage.open(tmp_path, cipher=_cipher()) as storage:
        storage.save_snapshot(SnapshotMeta(2, 1), b"image")
    with pytest.raises(CorruptLogError, match="snapshot does not decrypt"):
        RaftStorage.open(tmp_path, cipher=_cipher(new_key()))


def test_a_plaintext_log_is_refused_clearly_and_left_alone(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
    before = _disk_bytes(tmp_path)
    with pytest.raises(CorruptLogError, match=r"an unencrypted Raft log segment .* not migrated"):
        RaftStorage.open(tmp_path, cipher=_cipher())
    assert _disk_bytes(tmp_path) == before
    with RaftStorage.open(tmp_path / "sealed", cipher=_cipher()) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
    with pytest.raises(CorruptLogError, match="encrypted Raft log segment, opened without its data key"):
        RaftStorage.open(tmp_path / "sealed")


def test_a_plaintext_snapshot_is_refused_clearly(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=1), _entries(1, 2))
        storage.save_snapshot(SnapshotMeta(2, 1), b"image")
    for segment in segments(tmp_path):
        segment.unlink()
    with pytest.raises(CorruptLogError, match="an unencrypted Raft snapshot"):
        RaftStorage.open(tmp_path, cipher=_cipher())


_WRITER = textwrap.dedent(
    """
    import sys
    from manager.state.raft.encryption import DataCipher
    from manager.state.raft.storage import RaftStorage
    from manager.state.raft.types import Entry, HardState
    storage = RaftStorage.open(sys.argv[1], segment_bytes=4096, cipher=DataCipher(bytes(range(32))))
    i = storage.last_index()
    while True:
        i += 1
        storage.save(HardState(term=1, commit=i - 1), [Entry(i, 1, data=b"payload %d" % i * 7)])
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("acknowledged", [5, 120])
def test_no_acknowledged_encrypted_save_is_lost_to_sigkill(tmp_path: pathlib.Path, acknowledged: int) -> None:
    seen = sigkill_after(_WRITER, tmp_path, acknowledged)
    with RaftStorage.open(tmp_path, segment_bytes=4096, cipher=_cipher()) as storage:
        assert storage.last_index() >= seen
        entries = storage.entries()
        assert [e.index for e in entries] == list(range(1, storage.last_index() + 1))
        assert all(e.data == b"payload %d" % e.index * 7 for e in entries)
