"""Raft's durable storage: a write-ahead log in segment files, and snapshot files.

Layout of a storage directory::

    wal-<seq>-<first index>.log   segments, replayed in ``seq`` order (both 16 hex digits)
    snap-<index>-<term>.snap      the latest snapshot (an older one only until the newer is durable)
    LOCK                          held with flock while open, so two managers never share a log

A segment starts with an 8-byte magic and holds records, each::

    u32 payload length | u32 CRC-32 of (type byte + payload) | u8 type | payload

Record types: an entry; the hard state (term, vote, commit); a truncate marker (every entry from
this index on is void, written before the entries of a leader that overwrote a conflicting
suffix); a snapshot marker (the log up to this index is compacted, and whether the entries after
it survived). Recovery replays records in order, so the last word on any index wins.

Durability: :meth:`RaftStorage.save` returns only after the records are written and fsynced, so an
acknowledged save survives a crash. A crash mid-write can leave the last record of the last segment
incomplete; that torn tail is truncated with a warning. Any other damage (a bad CRC or length
followed by a valid record, or in an earlier segment; an index that does not follow) raises
:class:`CorruptLogError` naming the file and byte offset: nothing is ever skipped silently.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from manager.state.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta

__all__ = ["DEFAULT_SEGMENT_BYTES", "CorruptLogError", "RaftStorage"]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
"""A segment is closed and a new one started once it holds this many bytes."""

_WAL_MAGIC = b"SWLWAL1\n"
_SNAP_MAGIC = b"SWLSNP1\n"
_HEADER = struct.Struct("<IIB")  # payload length, CRC-32 over type + payload, type
_MAX_PAYLOAD = 256 * 1024 * 1024  # a length beyond this is damage, not data

# Record types. On-disk values: ONLY APPEND TO THIS LIST.
_ENTRY = 1
_HARD_STATE = 2
_TRUNCATE = 3
_SNAPSHOT = 4
_KNOWN = frozenset({_ENTRY, _HARD_STATE, _TRUNCATE, _SNAPSHOT})
_TYPE_BYTE = re.compile(b"[" + re.escape(bytes(sorted(_KNOWN))) + b"]")

_ENTRY_HEAD = struct.Struct("<QQB")  # index, term, entry type; the data follows
_HARD_HEAD = struct.Struct("<QQ")  # term, commit; the vote (UTF-8) follows
_TRUNCATE_BODY = struct.Struct("<Q")  # first void index
_SNAPSHOT_BODY = struct.Struct("<QQB")  # index, term, 1 if the entries after it were kept
_SNAP_HEAD = struct.Struct("<QQI")  # index, term, length of the encoded membership
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

_SEGMENT_NAME = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
_SNAPSHOT_NAME = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


class CorruptLogError(Exception):
    """The log or a snapshot is damaged somewhere a crash cannot explain; the manager must stop."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: corrupt at byte offset {offset}: {reason}")


@dataclass
class _Segment:
    path: Path
    seq: int
    max_index: int  # highest entry index written in it, 0 if none: compaction drops it once covered


def _record(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(bytes((kind,)) + payload), kind) + payload


def _encode_entry(entry: Entry) -> bytes:
    return _record(_ENTRY, _ENTRY_HEAD.pack(entry.index, entry.term, int(entry.type)) + entry.data)


def _encode_hard_state(state: HardState) -> bytes:
    return _record(_HARD_STATE, _HARD_HEAD.pack(state.term, state.commit) + state.vote.encode())


def _encode_names(names: Sequence[str]) -> bytes:
    out = [_U32.pack(len(names))]
    for name in names:
        raw = name.encode()
        out.append(_U16.pack(len(raw)) + raw)
    return b"".join(out)


def _decode_names(raw: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    (count,) = _U32.unpack_from(raw, pos)
    pos += _U32.size
    names = []
    for _ in range(count):
        (size,) = _U16.unpack_from(raw, pos)
        pos += _U16.size
        if pos + size > len(raw):
            raise ValueError("membership runs past its end")
        names.append(raw[pos : pos + size].decode())
        pos += size
    return tuple(names), pos


def _fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once the directory entry is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_at(data: bytes, pos: int) -> tuple[int, bytes] | None:
    """The record at ``pos`` if it is whole and its CRC matches, else None."""
    if len(data) - pos < _HEADER.size:
        return None
    length, crc, kind = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if kind not in _KNOWN or length > _MAX_PAYLOAD or end > len(data):
        return None
    payload = data[pos + _HEADER.size : end]
    if zlib.crc32(bytes((kind,)) + payload) != crc:
        return None
    return kind, payload


def _valid_record_after(data: bytes, start: int) -> int | None:
    """Offset of the first valid record at or after ``start``, if any.

    Used to tell a torn tail (nothing valid follows) from damage in the middle; it must look at
    every offset, since a damaged length says nothing about where the next record begins.
    """
    # Only offsets whose type byte is a known type can start a record; re finds them at C speed,
    # which matters for a long zero-filled tail.
    for candidate in _TYPE_BYTE.finditer(data, start + _HEADER.size - 1):
        pos = candidate.start() - (_HEADER.size - 1)
        if _parse_at(data, pos) is not None:
            return pos
    return None


class RaftStorage:
    """The durable state of one Raft member: hard state, log entries after the snapshot, snapshot.

    Single-threaded; the shell calls it between steps of the core. Open it with :meth:`open`.
    """

    hard_state: HardState
    """The last hard state saved."""
    snapshot: SnapshotMeta | None
    """The latest snapshot's metadata, None before the first."""
    snapshot_data: bytes
    """The latest snapshot's state-machine image, b"" if none."""

    def __init__(self, directory: Path, fsync: bool, segment_bytes: int) -> None:
        # Use open(): this only sets fields.
        self._dir = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self.hard_state = HardState()
        self.snapshot = None
        self.snapshot_data = b""
        self._entries: list[Entry] = []
        self._base = 0  # index of the snapshot (entries[i].index == base + 1 + i)
        self._base_term = 0
        self._segments: list[_Segment] = []
        self._fd = -1
        self._size = 0
        self._lock_fd = -1

    # ---- opening and recovery -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> RaftStorage:
        """Create the storage in ``directory``, or recover what is there.

        ``fsync`` False skips fsync (simulations and tests that do not model crashes). A torn record
        at the end of the last segment is truncated with a logging warning; any other damage raises
        :class:`CorruptLogError`. Raises ``RuntimeError`` if another process has it open.
        """
        if segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        storage = cls(path, fsync, segment_bytes)
        storage._lock()
        try:
            storage._recover()
        except BaseException:
            storage.close()
            raise
        return storage

    def _lock(self) -> None:
        self._lock_fd = os.open(self._dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise RuntimeError(f"{self._dir}: Raft storage is in use by another process") from None

    def _recover(self) -> None:
        for leftover in self._dir.glob("*.tmp"):
            leftover.unlink()  # an unfinished snapshot write: never renamed, so never acknowledged
        self._load_snapshot()
        segments = []
        for child in self._dir.iterdir():
            match = _SEGMENT_NAME.match(child.name)
            if match:
                segments.append(_Segment(child, int(match.group(1), 16), 0))
        segments.sort(key=lambda s: s.seq)
        recorded_snapshot = 0  # highest snapshot index the log itself records
        base_term: int | None = self._base_term if self.snapshot is None else None
        for number, segment in enumerate(segments):
            recorded_snapshot, base_term = self._replay(
                segment, number == len(segments) - 1, recorded_snapshot, base_term
            )
        self._segments = segments
        if self.snapshot is not None and recorded_snapshot < self._base:
            # The snapshot file became durable but the crash came before the log recorded it: keep
            # the entries after it only if the log agrees with the snapshot at its index.
            keep = base_term == self._base_term
            if not keep:
                self._entries = []
            self._open_tail()
            self._append(_record(_SNAPSHOT, _SNAPSHOT_BODY.pack(self._base, self._base_term, int(keep))))
        else:
            self._open_tail()

    def _load_snapshot(self) -> None:
        found: list[tuple[int, Path]] = []
        for child in self._dir.iterdir():
            match = _SNAPSHOT_NAME.match(child.name)
            if match:
                found.append((int(match.group(1), 16), child))
        if not found:
            return
        found.sort()
        path = found[-1][1]
        data = path.read_bytes()
        if len(data) < len(_SNAP_MAGIC) + _U32.size or data[: len(_SNAP_MAGIC)] != _SNAP_MAGIC:
            raise CorruptLogError(path, 0, "not a swarmlet snapshot (bad magic or too short)")
        (crc,) = _U32.unpack_from(data, len(data) - _U32.size)
        if zlib.crc32(data[: -_U32.size]) != crc:
            raise CorruptLogError(path, len(data) - _U32.size, "snapshot CRC mismatch")
        try:
            pos = len(_SNAP_MAGIC)
            index, term, conf_size = _SNAP_HEAD.unpack_from(data, pos)
            pos += _SNAP_HEAD.size
            conf_raw = data[pos : pos + conf_size]
            voters, at = _decode_names(conf_raw, 0)
            learners, _ = _decode_names(conf_raw, at)
            pos += conf_size
            (size,) = _U64.unpack_from(data, pos)
            pos += _U64.size
            if pos + size != len(data) - _U32.size:
                raise ValueError("data length does not match the file")
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise CorruptLogError(path, len(_SNAP_MAGIC), f"bad snapshot header: {exc}") from None
        self.snapshot = SnapshotMeta(index, term, ConfState(voters, learners))
        self.snapshot_data = data[pos : pos + size]
        self._base, self._base_term = index, term
        for _, older in found[:-1]:
            older.unlink()  # superseded: a crash came before the newer snapshot's clean-up

    def _replay(
        self, segment: _Segment, last: bool, recorded_snapshot: int, base_term: int | None
    ) -> tuple[int, int | None]:
        """Apply one segment's records; returns the updated (recorded snapshot, term at base)."""
        path = segment.path
        data = path.read_bytes()
        magic = len(_WAL_MAGIC)
        if data[:magic] != _WAL_MAGIC:
            if last and len(data) < magic and _WAL_MAGIC.startswith(data):
                # Created but not yet fully written when the process died.
                logger.warning("%s: torn segment header; rewriting it", path)
                self._rewrite(path, 0, _WAL_MAGIC)
                return recorded_snapshot, base_term
            raise CorruptLogError(path, 0, "not a swarmlet log segment (bad magic)")
        pos = magic
        while pos < len(data):
            parsed = _parse_at(data, pos)
            if parsed is None:
                follower = _valid_record_after(data, pos + 1)
                if last and follower is None:
                    logger.warning(
                        "%s: torn record at byte offset %d (a crash during a write); truncating %d bytes",
                        path,
                        pos,
                        len(data) - pos,
                    )
                    self._rewrite(path, pos, b"")
                    break
                what = "a valid record follows" if follower is not None else "not the last segment"
                raise CorruptLogError(path, pos, f"bad record length or CRC ({what})")
            kind, payload = parsed
            try:
                recorded_snapshot, base_term = self._apply(
                    kind, payload, segment, recorded_snapshot, base_term
                )
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                raise CorruptLogError(path, pos, str(exc)) from None
            pos += _HEADER.size + len(payload)
        return recorded_snapshot, base_term

    def _apply(
        self, kind: int, payload: bytes, segment: _Segment, recorded_snapshot: int, base_term: int | None
    ) -> tuple[int, int | None]:
        if kind == _ENTRY:
            index, term, entry_type = _ENTRY_HEAD.unpack_from(payload)
            segment.max_index = max(segment.max_index, index)
            if index <= self._base:
                if index == self._base:
                    base_term = term
                return recorded_snapshot, base_term  # compacted into the snapshot
            expected = self._base + len(self._entries) + 1
            if index != expected:
                raise ValueError(f"entry index {index} where {expected} was expected")
            self._entries.append(Entry(index, term, EntryType(entry_type), payload[_ENTRY_HEAD.size :]))
        elif kind == _HARD_STATE:
            term, commit = _HARD_HEAD.unpack_from(payload)
            self.hard_state = HardState(term, payload[_HARD_HEAD.size :].decode(), commit)
        elif kind == _TRUNCATE:
            (first_void,) = _TRUNCATE_BODY.unpack(payload)
            if first_void > self._base + len(self._entries) + 1:
                raise ValueError(f"truncate at {first_void} beyond the log's end")
            if first_void <= self._base:
                self._entries = []
                base_term = None
            else:
                del self._entries[first_void - self._base - 1 :]
        else:
            index, term, kept = _SNAPSHOT_BODY.unpack(payload)
            if index > self._base:
                raise ValueError(f"the log records a snapshot at index {index}, but its file is missing")
            if not kept:
                self._entries = []
            recorded_snapshot = max(recorded_snapshot, index)
        return recorded_snapshot, base_term

    def _rewrite(self, path: Path, keep: int, content: bytes) -> None:
        """Cut ``path`` to its first ``keep`` bytes, append ``content``, and make that durable."""
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.seek(keep)
            handle.write(content)
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())

    def _open_tail(self) -> None:
        if not self._segments:
            self._new_segment()
            return
        tail = self._segments[-1]
        self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _new_segment(self) -> None:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self._dir / f"wal-{seq:016x}-{self.last_index() + 1:016x}.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _WAL_MAGIC)
            if self._fsync:
                os.fsync(fd)
                _fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._size = len(_WAL_MAGIC)
        self._segments.append(_Segment(path, seq, 0))

    def _append(self, blob: bytes) -> None:
        """Write ``blob`` at the end of the current segment and fsync; all or nothing."""
        before = self._size
        view = memoryview(blob)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            # Leave no half record behind that a later append would bury in the middle.
            try:
                os.ftruncate(self._fd, before)
            except OSError:
                logger.exception("%s: could not undo a failed write", self._segments[-1].path)
            raise
        self._size += len(blob)

    # ---- reading --------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry after the snapshot, in index order (a copy)."""
        return list(self._entries)

    def first_index(self) -> int:
        """Index of the first entry the log can hold: the snapshot's index + 1."""
        return self._base + 1

    def last_index(self) -> int:
        """Index of the last entry, or of the snapshot when the log after it is empty."""
        return self._base + len(self._entries)

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index`` (the snapshot's at its index), None if not held."""
        if index == self._base:
            return self._base_term
        if self._base < index <= self.last_index():
            return self._entries[index - self._base - 1].term
        return None

    # ---- writing --------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Append ``entries`` and record ``hard_state``; durable (fsynced) when this returns.

        If ``entries[0].index`` is at or below the last index, the log from that index on is
        replaced (a conflicting suffix from an old leader). Raises ValueError, changing nothing,
        if the entries are not consecutive, start inside the snapshot or leave a gap.
        """
        self._check_open()
        blob = []
        if entries:
            first = entries[0].index
            for before, after in itertools.pairwise(entries):
                if after.index != before.index + 1:
                    raise ValueError(f"entries not consecutive: {before.index} then {after.index}")
            if first <= self._base:
                raise ValueError(f"entry {first} is inside the snapshot (index {self._base})")
            if first > self.last_index() + 1:
                raise ValueError(f"entry {first} leaves a gap after the last index {self.last_index()}")
            if first <= self.last_index():
                blob.append(_record(_TRUNCATE, _TRUNCATE_BODY.pack(first)))
            blob.extend(_encode_entry(entry) for entry in entries)
        if hard_state is not None and hard_state != self.hard_state:
            blob.append(_encode_hard_state(hard_state))
        if not blob:
            return
        if self._size >= self._segment_bytes:
            self._new_segment()
        self._append(b"".join(blob))
        if entries:
            del self._entries[entries[0].index - self._base - 1 :]
            self._entries.extend(entries)
            top = self._segments[-1]
            top.max_index = max(top.max_index, entries[-1].index)
        if hard_state is not None:
            self.hard_state = hard_state

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Store a snapshot of the state machine as of ``meta.index``, then compact the log.

        The snapshot file is written to a temporary name, fsynced, renamed and the directory
        fsynced before the log records it; entries up to ``meta.index`` are then dropped, and
        segments holding nothing newer are removed. Entries after it are kept when the log agrees
        with the snapshot at its index, else discarded (a snapshot from the leader replaces a
        divergent log). Saving the current snapshot again does nothing; an older one raises
        ValueError.
        """
        self._check_open()
        if self.snapshot is not None and meta == self.snapshot and data == self.snapshot_data:
            return  # already durable: saving the same snapshot twice is harmless
        if meta.index <= self._base and self.snapshot is not None:
            raise ValueError(f"snapshot at {meta.index} is not newer than the current one at {self._base}")
        if meta.index < 1:
            raise ValueError("a snapshot's index starts at 1")
        keep = self.term(meta.index) == meta.term
        self._write_snapshot_file(meta, data)
        # Start a fresh segment so every older one can go once the snapshot covers it.
        if self._size > len(_WAL_MAGIC):
            self._new_segment()
        marker = _record(_SNAPSHOT, _SNAPSHOT_BODY.pack(meta.index, meta.term, int(keep)))
        # The hard state is repeated here because the segment that last recorded it may be removed.
        self._append(marker + _encode_hard_state(self.hard_state))
        self._entries = self._entries[meta.index - self._base :] if keep else []
        self._base, self._base_term = meta.index, meta.term
        self.snapshot, self.snapshot_data = meta, bytes(data)
        self._compact(meta.index, keep)

    def _write_snapshot_file(self, meta: SnapshotMeta, data: bytes) -> None:
        conf = _encode_names(meta.conf.voters) + _encode_names(meta.conf.learners)
        body = (
            _SNAP_MAGIC
            + _SNAP_HEAD.pack(meta.index, meta.term, len(conf))
            + conf
            + _U64.pack(len(data))
            + data
        )
        final = self._dir / f"snap-{meta.index:016x}-{meta.term:016x}.snap"
        temp = final.with_name(final.name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(body + _U32.pack(zlib.crc32(body)))
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
        os.replace(temp, final)
        if self._fsync:
            _fsync_dir(self._dir)

    def _compact(self, index: int, kept: bool) -> None:
        removable = 0
        for segment in self._segments[:-1]:
            # Only a prefix may go: a later segment's truncate markers refer to earlier entries.
            if kept and segment.max_index > index:
                break
            removable += 1
        for segment in self._segments[:removable]:
            segment.path.unlink()
        del self._segments[:removable]
        for child in self._dir.iterdir():
            match = _SNAPSHOT_NAME.match(child.name)
            if match and int(match.group(1), 16) < index:
                child.unlink()
        if self._fsync:
            _fsync_dir(self._dir)

    # ---- lifecycle ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fd < 0:
            raise RuntimeError("Raft storage is closed")

    def close(self) -> None:
        """Close the files and release the directory; reopen with :meth:`open`."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> RaftStorage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
