"""Raft's durable storage: what was saved comes back, torn tails are cut, damage is reported."""

from __future__ import annotations

import logging
import os
import pathlib
import textwrap

import pytest
from _wal import flip, record_offsets, segments, sigkill_after

from manager.state.raft.storage import CorruptLogError, RaftStorage
from manager.state.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta


def _entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, f"cmd {i} t{term}".encode()) for i in range(first, last + 1)]


def test_saved_state_survives_reopen(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        assert storage.entries() == [] and storage.last_index() == 0 and storage.first_index() == 1
        storage.save(HardState(term=1, vote="m1"), _entries(1, 3))
        storage.save(HardState(term=2, vote="mänager-2", commit=3), _entries(4, 5, term=2))
        storage.save(HardState(term=2, vote="mänager-2", commit=5), [])
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == _entries(1, 3) + _entries(4, 5, term=2)
        assert again.hard_state == HardState(term=2, vote="mänager-2", commit=5)
        assert (again.first_index(), again.last_index()) == (1, 5)
        assert again.term(4) == 2 and again.term(9) is None
        assert again.snapshot is None and again.snapshot_data == b""


def test_conflicting_suffix_is_replaced(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(None, _entries(1, 6))
        storage.save(None, _entries(3, 4, term=2))
        expected = _entries(1, 2) + _entries(3, 4, term=2)
        assert storage.entries() == expected
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == expected
        again.save(None, _entries(5, 5, term=2))
        assert again.last_index() == 5


def test_bad_input_is_refused_and_changes_nothing(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=1), _entries(1, 3))
        with pytest.raises(ValueError, match="gap"):
            storage.save(HardState(term=5), _entries(5, 6))
        with pytest.raises(ValueError, match="consecutive"):
            storage.save(None, [*_entries(4, 4), *_entries(6, 6)])
        storage.save_snapshot(SnapshotMeta(2, 1), b"image")
        with pytest.raises(ValueError, match="inside the snapshot"):
            storage.save(None, _entries(2, 4, term=3))
        storage.save_snapshot(SnapshotMeta(2, 1), b"image")  # the same again: harmless
        with pytest.raises(ValueError, match="not newer"):
            storage.save_snapshot(SnapshotMeta(1, 1), b"old")
        assert storage.hard_state == HardState(term=1)
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == _entries(3, 3) and again.hard_state == HardState(term=1)


def test_torn_tail_is_truncated_with_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=1), _entries(1, 4))
    (segment,) = segments(tmp_path)
    last = record_offsets(segment)[-1]
    with open(segment, "r+b") as handle:  # the crash came in the middle of the last record
        handle.truncate(segment.stat().st_size - 3)
    with caplog.at_level(logging.WARNING, logger="manager.state.raft.storage"):
        storage = RaftStorage.open(tmp_path)
    assert f"{segment}: torn record at byte offset {last}" in caplog.text
    # The hard state was the last record of that save; the entries before it are whole.
    assert storage.entries() == _entries(1, 4) and storage.hard_state == HardState()
    storage.save(HardState(term=2), _entries(5, 5))
    storage.close()
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == _entries(1, 5) and again.hard_state == HardState(term=2)


def test_bad_crc_on_the_last_record_is_a_torn_tail(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(None, _entries(1, 3))
    (segment,) = segments(tmp_path)
    last = record_offsets(segment)[-1]
    flip(segment, segment.stat().st_size - 1)
    with (
        caplog.at_level(logging.WARNING, logger="manager.state.raft.storage"),
        RaftStorage.open(tmp_path) as again,
    ):
        assert again.entries() == _entries(1, 2)
    assert f"byte offset {last}" in caplog.text


def test_zero_filled_tail_is_a_torn_tail(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    # A file system may show blocks allocated before the crash but never written, as zeros.
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=3), _entries(1, 3))
    (segment,) = segments(tmp_path)
    size = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(bytes(64 * 1024))
    with (
        caplog.at_level(logging.WARNING, logger="manager.state.raft.storage"),
        RaftStorage.open(tmp_path) as again,
    ):
        assert again.entries() == _entries(1, 3) and again.hard_state == HardState(term=3)
    assert f"torn record at byte offset {size}" in caplog.text
    assert segment.stat().st_size == size


@pytest.mark.parametrize("where", ["payload", "length"])
def test_damage_in_the_middle_names_file_and_offset(tmp_path: pathlib.Path, where: str) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(None, _entries(1, 5))
    (segment,) = segments(tmp_path)
    second = record_offsets(segment)[1]
    flip(segment, second + (12 if where == "payload" else 2))
    with pytest.raises(CorruptLogError) as info:
        RaftStorage.open(tmp_path)
    assert (info.value.path, info.value.offset) == (str(segment), second)
    assert f"{segment}: corrupt at byte offset {second}" in str(info.value)
    # Nothing was cut: the same error comes again, and the file is as it was left.
    with pytest.raises(CorruptLogError):
        RaftStorage.open(tmp_path)


def test_damage_at_the_end_of_an_earlier_segment_is_corruption(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path, segment_bytes=1024) as storage:
        for i in range(1, 60):
            storage.save(None, _entries(i, i))
    files = segments(tmp_path)
    assert len(files) >= 2
    last = record_offsets(files[0])[-1]
    flip(files[0], files[0].stat().st_size - 1)
    with pytest.raises(CorruptLogError) as info:
        RaftStorage.open(tmp_path)
    assert (info.value.path, info.value.offset) == (str(files[0]), last)


def test_snapshot_compacts_the_log(tmp_path: pathlib.Path) -> None:
    conf = ConfState(voters=("m1", "m2", "m3"), learners=("m4",))
    with RaftStorage.open(tmp_path, segment_bytes=1024) as storage:
        for i in range(1, 101):
            storage.save(HardState(term=1, commit=i - 1), _entries(i, i))
        before = len(segments(tmp_path))
        storage.save_snapshot(SnapshotMeta(90, 1, conf), b"state at 90")
        assert storage.entries() == _entries(91, 100)
        assert (storage.first_index(), storage.last_index(), storage.term(90)) == (91, 100, 1)
        after = len(segments(tmp_path))
        assert after < before
    with RaftStorage.open(tmp_path, segment_bytes=1024) as again:
        assert again.snapshot == SnapshotMeta(90, 1, conf)
        assert again.snapshot_data == b"state at 90"
        assert again.entries() == _entries(91, 100)
        assert again.hard_state == HardState(term=1, commit=99)
        again.save_snapshot(SnapshotMeta(100, 1, conf), b"state at 100")
        assert again.entries() == [] and again.last_index() == 100
        assert [p.name for p in tmp_path.glob("snap-*")] == [f"snap-{100:016x}-{1:016x}.snap"]


def test_snapshot_from_a_leader_replaces_a_divergent_log(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(HardState(term=2), _entries(1, 8))
        storage.save_snapshot(SnapshotMeta(6, 3), b"leader's state")  # term 3 at 6: our 7, 8 are wrong
        assert storage.entries() == [] and storage.last_index() == 6
        storage.save(None, _entries(7, 7, term=3))
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == _entries(7, 7, term=3) and again.first_index() == 7
        again.save_snapshot(SnapshotMeta(20, 4), b"far ahead")
        assert again.last_index() == 20 and again.entries() == []
    with RaftStorage.open(tmp_path) as third:
        assert third.last_index() == 20 and third.snapshot_data == b"far ahead"


def test_crash_between_snapshot_file_and_log_marker(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(None, _entries(1, 6))
        storage._write_snapshot_file(SnapshotMeta(4, 1), b"at 4")  # the crash follows this step
    with RaftStorage.open(tmp_path) as again:
        assert again.snapshot == SnapshotMeta(4, 1) and again.entries() == _entries(5, 6)
    with RaftStorage.open(tmp_path) as third:
        assert third.entries() == _entries(5, 6)


def test_damaged_snapshot_names_the_file(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.save(None, _entries(1, 3))
        storage.save_snapshot(SnapshotMeta(2, 1), b"x" * 100)
    (snapshot,) = tmp_path.glob("snap-*.snap")
    flip(snapshot, 60)
    with pytest.raises(CorruptLogError) as info:
        RaftStorage.open(tmp_path)
    assert info.value.path == str(snapshot)


def test_two_openers_are_refused(tmp_path: pathlib.Path) -> None:
    with RaftStorage.open(tmp_path), pytest.raises(RuntimeError, match="in use"):
        RaftStorage.open(tmp_path)


_WRITER = textwrap.dedent(
    """
    import sys
    from manager.state.raft.storage import RaftStorage
    from manager.state.raft.types import Entry, HardState
    storage = RaftStorage.open(sys.argv[1], segment_bytes=4096)
    i = storage.last_index()
    while True:
        i += 1
        storage.save(HardState(term=1, commit=i - 1), [Entry(i, 1, data=b"payload %d" % i * 7)])
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("acknowledged", [5, 40, 150])
def test_no_acknowledged_save_is_lost_to_sigkill(tmp_path: pathlib.Path, acknowledged: int) -> None:
    seen = sigkill_after(_WRITER, tmp_path, acknowledged)
    assert seen >= acknowledged
    with RaftStorage.open(tmp_path, segment_bytes=4096) as storage:
        assert storage.last_index() >= seen
        entries = storage.entries()
        assert [e.index for e in entries] == list(range(1, storage.last_index() + 1))
        assert all(e.data == b"payload %d" % e.index * 7 for e in entries)
        assert storage.hard_state.commit >= seen - 1


def test_failed_fsync_leaves_nothing_half_written(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = RaftStorage.open(tmp_path)
    storage.save(HardState(term=1), _entries(1, 2))
    (segment,) = segments(tmp_path)
    size = segment.stat().st_size

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        storage.save(HardState(term=2), _entries(3, 4))
    monkeypatch.undo()
    # Not acknowledged, so not kept: memory and file are as before the failed save.
    assert storage.entries() == _entries(1, 2) and storage.hard_state == HardState(term=1)
    assert segment.stat().st_size == size
    storage.save(None, _entries(3, 3))
    storage.close()
    with RaftStorage.open(tmp_path) as again:
        assert again.entries() == _entries(1, 3)


def test_written_pages_leave_the_page_cache_once_fsynced(tmp_path: pathlib.Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The files are read only at start-up: whole fsynced pages are dropped from the page cache
    (which counts in a node container's memory), never the page the next append writes to."""
    page = os.sysconf("SC_PAGE_SIZE")
    advised: list[tuple[str, int, int, int]] = []  # file name, offset, length (0: to the end), size then
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        advised.append((name, offset, length, os.fstat(fd).st_size))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    conf = ConfState(voters=("m1",), learners=())
    big = [Entry(i, 1, EntryType.NORMAL, bytes(700)) for i in range(1, 41)]  # about 7 pages
    with RaftStorage.open(tmp_path, segment_bytes=16 * page) as storage:
        for entry in big:
            storage.save(HardState(term=1, commit=entry.index - 1), [entry])
        wal = [a for a in advised if a[0].startswith("wal-")]
        assert wal, "no page of the log was dropped"
        covered = 0
        for _, offset, length, size in wal:
            assert offset == covered and length > 0 and (offset + length) % page == 0  # whole pages, in order
            assert offset + length <= size - size % page  # never the partly written last page
            covered = offset + length
        size = (tmp_path / wal[-1][0]).stat().st_size
        assert covered == size - size % page  # every whole page so far
        advised.clear()
        storage.save_snapshot(SnapshotMeta(40, 1, conf), b"state at 40")
        names = [a[0] for a in advised if a[2] == 0]
        assert any(n.startswith("snap-") for n in names)  # the snapshot file, whole
        assert any(n.startswith("wal-") for n in names)  # the finished segment, whole
    advised.clear()
    with RaftStorage.open(tmp_path, segment_bytes=16 * page) as again:
        assert again.snapshot_data == b"state at 40" and again.last_index() == 40
        read = {a[0] for a in advised if a[2] == 0}
        assert read == {p.name for p in tmp_path.iterdir() if p.name.startswith(("wal-", "snap-"))}
