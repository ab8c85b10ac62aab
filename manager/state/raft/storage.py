"""Raft's durable storage: a write-ahead log in segment files, and snapshot files.

Layout of a storage directory::

    wal-<seq>-<first index>.log   segments, replayed in ``seq`` order (both 16 hex digits)
    snap-<index>-<term>.snap      the latest snapshot (an older one only until the newer is durable)
    LOCK                          held with flock while open, so two managers never share a log

A segment starts with an 8-byte magic and holds records, each::

    u32 payload length | u32 CRC-32 of (type byte + payload) | u8 type | payload

Encrypted at rest (a :class:`~manager.state.raft.encryption.DataCipher` given to :meth:`open`,
as every manager does): the records of one write (one :meth:`RaftStorage.save`) are sealed
together into one *sealed* record whose payload is nonce | AES-GCM ciphertext | tag, and a
snapshot's header, membership and data are sealed as one; only the magic, the outer record
framing and the CRCs are in the clear. Encrypted files have their own magics, so an unencrypted
log is refused with a clear error rather than misread (swarmlet does not migrate one).

Data key rotation (autolock turned on): :meth:`RaftStorage.rotate_key` seals everything from
then on under the new key, in a new segment; the cipher still opens what the old key sealed.
Once a snapshot at or past :meth:`RaftStorage.rotation_index` is saved, the compaction has
removed every file the old key sealed (:attr:`RaftStorage.old_key_in_use` turns False) and
the old key can be forgotten.

Record types: an entry; the hard state (term, vote, commit); a truncate marker (every entry from
this index on is void, written before the entries of a leader that overwrote a conflicting
suffix); a snapshot marker (the log up to this index is compacted, and whether the entries after
it survived). Recovery replays records in order, so the last word on any index wins.

Durability: :meth:`RaftStorage.save` returns only after the records are written and fsynced, so an
acknowledged save survives a crash. A crash mid-write can leave the last record of the last segment
incomplete; that torn tail is truncated with a warning. Any other damage (a bad CRC or length
followed by a valid record, or in an earlier segment; an index that does not follow) raises
:class:`CorruptLogError` naming the file and byte offset: nothing is ever skipped silently.

Page cache: the files are read only when a manager starts (the log and snapshot it needs after
that are in memory), so once written and fsynced their pages are dropped from the page cache
(``posix_fadvise(DONTNEED)``): whole pages of a segment after each fsync, a segment when the next
one starts, a snapshot file once durable, every file once recovery has read it. The page cache
of a container is charged to its memory (``docker stats`` leaves out only the inactive part),
and a page appended to record after record is accessed often enough to count as active.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from manager.state.raft.encryption import DataCipher, DecryptError
from manager.state.raft.types import Entry, EntryType, HardState, SnapshotMeta
from manager.state.raft.walformat import (
    ENTRY,
    ENTRY_HEAD,
    HARD_HEAD,
    HARD_STATE,
    HEADER,
    SNAPSHOT,
    SNAPSHOT_BODY,
    TRUNCATE,
    TRUNCATE_BODY,
    CorruptLogError,
    check_magic,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
    parse_at,
    record,
    seal_records,
    unseal_record,
    valid_record_after,
    wal_magic,
)

__all__ = ["DEFAULT_SEGMENT_BYTES", "CorruptLogError", "RaftStorage"]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
"""A segment is closed and a new one started once it holds this many bytes."""

_SEGMENT_NAME = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
_SNAPSHOT_NAME = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


@dataclass
class _Segment:
    path: Path
    seq: int
    max_index: int  # highest entry index written in it, 0 if none: compaction drops it once covered
    old_key: bool = False  # sealed (partly) under a data key older than the current one


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _drop_cache(fd: int, start: int = 0, end: int = 0) -> None:
    """Drop the clean cached pages of ``fd`` from ``start`` up to ``end`` (0: the end of the file)."""
    with contextlib.suppress(OSError):  # advice only: a file system may not take it, and nothing changes
        os.posix_fadvise(fd, start, end - start if end else 0, os.POSIX_FADV_DONTNEED)


def _drop_file_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _drop_cache(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once the directory entry is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    def __init__(self, directory: Path, fsync: bool, segment_bytes: int, cipher: DataCipher | None) -> None:
        # Use open(): this only sets fields.
        self._dir = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._cipher = cipher
        self._wal_magic = wal_magic(cipher)
        self.hard_state = HardState()
        self.snapshot = None
        self.snapshot_data = b""
        self._entries: list[Entry] = []
        self._base = 0  # index of the snapshot (entries[i].index == base + 1 + i)
        self._base_term = 0
        self._segments: list[_Segment] = []
        self._fd = -1
        self._size = 0
        self._dropped = 0  # the current segment's bytes before this are out of the page cache
        self._lock_fd = -1
        self._snapshot_old_key = False  # the snapshot file is sealed under an older data key

    # ---- opening and recovery -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cipher: DataCipher | None = None,
    ) -> RaftStorage:
        """Create the storage in ``directory``, or recover what is there.

        ``fsync`` False skips fsync (simulations and tests that do not model crashes). ``cipher``
        (the data key) encrypts everything written and must open everything read; None keeps
        the log in plaintext (simulations and benchmarks only). A torn record at the end of the
        last segment is truncated with a logging warning; any other damage, a record that does
        not decrypt, or a log encrypted the other way (or not at all) raises
        :class:`CorruptLogError`. Raises ``RuntimeError`` if another process has it open.
        """
        if segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        storage = cls(path, fsync, segment_bytes, cipher)
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
            self._append(record(SNAPSHOT, SNAPSHOT_BODY.pack(self._base, self._base_term, int(keep))))
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
        before = self._older_opens()
        meta, self.snapshot_data = decode_snapshot(path, path.read_bytes(), self._cipher)
        self._snapshot_old_key = self._older_opens() > before
        _drop_file_cache(path)
        self.snapshot = meta
        self._base, self._base_term = meta.index, meta.term
        for _, older in found[:-1]:
            older.unlink()  # superseded: a crash came before the newer snapshot's clean-up

    def _replay(
        self, segment: _Segment, last: bool, recorded_snapshot: int, base_term: int | None
    ) -> tuple[int, int | None]:
        """Apply one segment's records; returns the updated (recorded snapshot, term at base)."""
        path = segment.path
        data = path.read_bytes()
        _drop_file_cache(path)
        magic = len(self._wal_magic)
        if data[:magic] != self._wal_magic:
            if last and len(data) < magic and self._wal_magic.startswith(data):
                # Created but not yet fully written when the process died.
                logger.warning("%s: torn segment header; rewriting it", path)
                self._rewrite(path, 0, self._wal_magic)
                return recorded_snapshot, base_term
            check_magic(path, data[:magic], self._cipher, "log segment")
        pos = magic
        before = self._older_opens()
        while pos < len(data):
            parsed = parse_at(data, pos)
            if parsed is None:
                follower = valid_record_after(data, pos + 1)
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
                for inner_kind, inner in unseal_record(kind, payload, self._cipher):
                    recorded_snapshot, base_term = self._apply(
                        inner_kind, inner, segment, recorded_snapshot, base_term
                    )
            except (ValueError, struct.error, UnicodeDecodeError, DecryptError) as exc:
                raise CorruptLogError(path, pos, str(exc)) from None
            pos += HEADER.size + len(payload)
        segment.old_key = segment.old_key or self._older_opens() > before
        return recorded_snapshot, base_term

    def _older_opens(self) -> int:
        return self._cipher.older_opens if self._cipher is not None else 0

    def _apply(
        self, kind: int, payload: bytes, segment: _Segment, recorded_snapshot: int, base_term: int | None
    ) -> tuple[int, int | None]:
        if kind == ENTRY:
            index, term, entry_type = ENTRY_HEAD.unpack_from(payload)
            segment.max_index = max(segment.max_index, index)
            if index <= self._base:
                if index == self._base:
                    base_term = term
                return recorded_snapshot, base_term  # compacted into the snapshot
            expected = self._base + len(self._entries) + 1
            if index != expected:
                raise ValueError(f"entry index {index} where {expected} was expected")
            self._entries.append(Entry(index, term, EntryType(entry_type), payload[ENTRY_HEAD.size :]))
        elif kind == HARD_STATE:
            term, commit = HARD_HEAD.unpack_from(payload)
            self.hard_state = HardState(term, payload[HARD_HEAD.size :].decode(), commit)
        elif kind == TRUNCATE:
            (first_void,) = TRUNCATE_BODY.unpack(payload)
            if first_void > self._base + len(self._entries) + 1:
                raise ValueError(f"truncate at {first_void} beyond the log's end")
            if first_void <= self._base:
                self._entries = []
                base_term = None
            else:
                del self._entries[first_void - self._base - 1 :]
        else:
            index, term, kept = SNAPSHOT_BODY.unpack(payload)
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
        self._dropped = 0

    def _new_segment(self) -> None:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self._dir / f"wal-{seq:016x}-{self.last_index() + 1:016x}.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self._wal_magic)
            if self._fsync:
                os.fsync(fd)
                _fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            if self._fsync:
                _drop_cache(self._fd)  # the finished segment: every write to it fsynced
            os.close(self._fd)
        self._fd = fd
        self._size = len(self._wal_magic)
        self._dropped = 0
        self._segments.append(_Segment(path, seq, 0))

    def _append(self, blob: bytes) -> None:
        """Write the records ``blob`` at the end of the current segment (sealed into one record
        when encrypted) and fsync; all or nothing."""
        blob = seal_records(blob, self._cipher)
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
        if self._fsync:
            # Clean now; the partly written last page stays, as the next append writes to it.
            whole = self._size - self._size % _PAGE
            if whole > self._dropped:
                _drop_cache(self._fd, self._dropped, whole)
                self._dropped = whole

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
                blob.append(record(TRUNCATE, TRUNCATE_BODY.pack(first)))
            blob.extend(encode_entry(entry) for entry in entries)
        if hard_state is not None and hard_state != self.hard_state:
            blob.append(encode_hard_state(hard_state))
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
        self._snapshot_old_key = False  # the older snapshot files go in the compaction below
        # Start a fresh segment so every older one can go once the snapshot covers it.
        if self._size > len(self._wal_magic):
            self._new_segment()
        marker = record(SNAPSHOT, SNAPSHOT_BODY.pack(meta.index, meta.term, int(keep)))
        # The hard state is repeated here because the segment that last recorded it may be removed.
        self._append(marker + encode_hard_state(self.hard_state))
        self._entries = self._entries[meta.index - self._base :] if keep else []
        self._base, self._base_term = meta.index, meta.term
        self.snapshot, self.snapshot_data = meta, bytes(data)
        self._compact(meta.index, keep)

    def _write_snapshot_file(self, meta: SnapshotMeta, data: bytes) -> None:
        final = self._dir / f"snap-{meta.index:016x}-{meta.term:016x}.snap"
        temp = final.with_name(final.name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(encode_snapshot(meta, data, self._cipher))
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
                _drop_cache(handle.fileno())  # read again only when the manager restarts
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

    # ---- data key rotation ----------------------------------------------------------------

    def rotate_key(self, new_key: bytes) -> None:
        """Seal everything from now on under ``new_key``; what the old key sealed still opens.

        A new segment is started (when the current one holds anything), so that every file the
        old key sealed can go whole once a snapshot covers it (:meth:`rotation_index`).
        """
        self._check_open()
        if self._cipher is None:
            raise RuntimeError("an unencrypted log has no data key to rotate")
        for segment in self._segments:
            segment.old_key = True
        self._snapshot_old_key = self.snapshot is not None
        self._cipher = self._cipher.rotated(new_key)
        if self._size > len(self._wal_magic):
            self._new_segment()
        else:
            self._segments[-1].old_key = False  # only its magic: nothing in it is sealed

    @property
    def old_key_in_use(self) -> bool:
        """Whether a file on disk still needs a data key older than the current one."""
        return self._snapshot_old_key or any(segment.old_key for segment in self._segments)

    def rotation_index(self) -> int:
        """The least index a snapshot must have to replace every file an older key sealed
        (swarmkit's waitForAppliedIndex): past the current snapshot, and covering every entry
        an old segment holds. 0 when no file needs an older key."""
        if not self.old_key_in_use:
            return 0
        held = [segment.max_index for segment in self._segments if segment.old_key]
        return max([self._base + 1, *held])

    def forget_old_keys(self) -> bool:
        """Drop the older data keys once no file needs them; whether they were dropped."""
        if self._cipher is None or self.old_key_in_use:
            return False
        if self._cipher.older:
            self._cipher = DataCipher(self._cipher.key)
        return True

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
