"""The bytes of Raft's storage files: log records, snapshot files, and their encryption at rest.

Pure functions over bytes (no I/O); :mod:`manager.state.raft.storage` decides what is written
when and how a crash is recovered. See that module and docs/storage.md for the layout.

A log record::

    u32 payload length | u32 CRC-32 of (type byte + payload) | u8 type | payload

A snapshot file::

    magic | body | u32 CRC-32 of (magic + body)
    body = u64 index | u64 term | u32 membership length | membership | u64 data length | data

Encrypted at rest, the records of one write are sealed together as the payload of one
:data:`SEALED` record, and a snapshot's body is sealed whole (nonce | AES-GCM ciphertext | tag,
:class:`~manager.state.raft.encryption.DataCipher`); the files then start with other magics, so
that a file is never read the other way.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Sequence

from manager.state.raft.encryption import DataCipher, DecryptError
from manager.state.raft.types import ConfState, Entry, HardState, SnapshotMeta

__all__ = [
    "ENTRY",
    "ENTRY_HEAD",
    "HARD_HEAD",
    "HARD_STATE",
    "HEADER",
    "SEALED",
    "SNAPSHOT",
    "SNAPSHOT_BODY",
    "TRUNCATE",
    "TRUNCATE_BODY",
    "CorruptLogError",
    "check_magic",
    "decode_snapshot",
    "encode_entry",
    "encode_hard_state",
    "encode_snapshot",
    "parse_at",
    "record",
    "seal_records",
    "snapshot_magic",
    "unseal_record",
    "valid_record_after",
    "wal_magic",
]

_WAL_MAGIC = b"SWLWAL1\n"
_SNAP_MAGIC = b"SWLSNP1\n"
_SEALED_WAL_MAGIC = b"SWLWAL2\n"  # encrypted at rest: every record sealed
_SEALED_SNAP_MAGIC = b"SWLSNP2\n"
_WAL_PURPOSE = b"swarmlet raft wal"  # associated data: a sealed record is not a snapshot
_SNAP_PURPOSE = b"swarmlet raft snapshot"

HEADER = struct.Struct("<IIB")  # payload length, CRC-32 over type + payload, type
_MAX_PAYLOAD = 256 * 1024 * 1024  # a length beyond this is damage, not data

# Record types. On-disk values: ONLY APPEND TO THIS LIST.
ENTRY = 1
HARD_STATE = 2
TRUNCATE = 3
SNAPSHOT = 4
SEALED = 5  # encrypted records of one write; only ever the outer record of an encrypted log
_KNOWN = frozenset({ENTRY, HARD_STATE, TRUNCATE, SNAPSHOT, SEALED})
_TYPE_BYTE = re.compile(b"[" + re.escape(bytes(sorted(_KNOWN))) + b"]")

ENTRY_HEAD = struct.Struct("<QQB")  # index, term, entry type; the data follows
HARD_HEAD = struct.Struct("<QQ")  # term, commit; the vote (UTF-8) follows
TRUNCATE_BODY = struct.Struct("<Q")  # first void index
SNAPSHOT_BODY = struct.Struct("<QQB")  # index, term, 1 if the entries after it were kept
_SNAP_HEAD = struct.Struct("<QQI")  # index, term, length of the encoded membership
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class CorruptLogError(Exception):
    """The log or a snapshot is damaged somewhere a crash cannot explain; the manager must stop."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: corrupt at byte offset {offset}: {reason}")


def wal_magic(cipher: DataCipher | None) -> bytes:
    """The first bytes of a log segment, encrypted or not."""
    return _WAL_MAGIC if cipher is None else _SEALED_WAL_MAGIC


def snapshot_magic(cipher: DataCipher | None) -> bytes:
    """The first bytes of a snapshot file, encrypted or not."""
    return _SNAP_MAGIC if cipher is None else _SEALED_SNAP_MAGIC


def check_magic(path: str | os.PathLike[str], head: bytes, cipher: DataCipher | None, what: str) -> None:
    """Refuse a file that is not ``what`` ("log segment" or "snapshot") written with ``cipher``:
    an unencrypted one (swarmlet does not migrate it), one encrypted when no key is given, junk."""
    segment = what == "log segment"
    if head == (wal_magic(cipher) if segment else snapshot_magic(cipher)):
        return
    if head == (_WAL_MAGIC if segment else _SNAP_MAGIC):
        raise CorruptLogError(path, 0, f"an unencrypted Raft {what} (written by an older swarmlet, "
                                       "which did not encrypt at rest): it is not migrated; move "
                                       "the manager's data directory aside to start it afresh")
    if head == (_SEALED_WAL_MAGIC if segment else _SEALED_SNAP_MAGIC):
        raise CorruptLogError(path, 0, f"an encrypted Raft {what}, opened without its data key")
    raise CorruptLogError(path, 0, f"not a swarmlet {what} (bad magic)")


# ---- log records ----------------------------------------------------------------------------


def record(kind: int, payload: bytes) -> bytes:
    """One framed record."""
    return HEADER.pack(len(payload), zlib.crc32(bytes((kind,)) + payload), kind) + payload


def encode_entry(entry: Entry) -> bytes:
    """An entry record."""
    return record(ENTRY, ENTRY_HEAD.pack(entry.index, entry.term, int(entry.type)) + entry.data)


def encode_hard_state(state: HardState) -> bytes:
    """A hard state record."""
    return record(HARD_STATE, HARD_HEAD.pack(state.term, state.commit) + state.vote.encode())


def seal_records(blob: bytes, cipher: DataCipher | None) -> bytes:
    """What is written for the records ``blob``: themselves, or one sealed record holding them."""
    return blob if cipher is None else record(SEALED, cipher.seal(blob, _WAL_PURPOSE))


def unseal_record(kind: int, payload: bytes, cipher: DataCipher | None) -> list[tuple[int, bytes]]:
    """The records one outer record holds: itself in a plaintext log, the sealed ones opened.

    Raises ValueError for a record of the wrong kind or a bad inner record, DecryptError for a
    sealed record that does not open under ``cipher``.
    """
    if cipher is None:
        if kind == SEALED:
            raise ValueError("an encrypted record in an unencrypted log")
        return [(kind, payload)]
    if kind != SEALED:
        raise ValueError("an unencrypted record in an encrypted log")
    try:
        plain = cipher.open(payload, _WAL_PURPOSE)
    except DecryptError as exc:
        raise DecryptError(f"sealed record does not decrypt: {exc}") from None
    records = []
    pos = 0
    while pos < len(plain):
        parsed = parse_at(plain, pos)
        if parsed is None or parsed[0] == SEALED:
            raise ValueError(f"bad record inside a sealed record at byte {pos} of its plaintext")
        records.append(parsed)
        pos += HEADER.size + len(parsed[1])
    return records


def parse_at(data: bytes, pos: int) -> tuple[int, bytes] | None:
    """The record at ``pos`` if it is whole and its CRC matches, else None."""
    if len(data) - pos < HEADER.size:
        return None
    length, crc, kind = HEADER.unpack_from(data, pos)
    end = pos + HEADER.size + length
    if kind not in _KNOWN or length > _MAX_PAYLOAD or end > len(data):
        return None
    payload = data[pos + HEADER.size : end]
    if zlib.crc32(bytes((kind,)) + payload) != crc:
        return None
    return kind, payload


def valid_record_after(data: bytes, start: int) -> int | None:
    """Offset of the first valid record at or after ``start``, if any.

    Used to tell a torn tail (nothing valid follows) from damage in the middle; it must look at
    every offset, since a damaged length says nothing about where the next record begins.
    """
    # Only offsets whose type byte is a known type can start a record; re finds them at C speed,
    # which matters for a long zero-filled tail.
    for candidate in _TYPE_BYTE.finditer(data, start + HEADER.size - 1):
        pos = candidate.start() - (HEADER.size - 1)
        if parse_at(data, pos) is not None:
            return pos
    return None


# ---- snapshot files -------------------------------------------------------------------------


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


def encode_snapshot(meta: SnapshotMeta, data: bytes, cipher: DataCipher | None) -> bytes:
    """A snapshot file's whole content."""
    conf = _encode_names(meta.conf.voters) + _encode_names(meta.conf.learners)
    body = _SNAP_HEAD.pack(meta.index, meta.term, len(conf)) + conf + _U64.pack(len(data)) + data
    if cipher is not None:
        body = cipher.seal(body, _SNAP_PURPOSE)
    framed = snapshot_magic(cipher) + body
    return framed + _U32.pack(zlib.crc32(framed))


def decode_snapshot(path: str | os.PathLike[str], raw: bytes, cipher: DataCipher | None
                    ) -> tuple[SnapshotMeta, bytes]:
    """The metadata and data of a snapshot file; :class:`CorruptLogError` if it is damaged,
    does not decrypt under ``cipher``, or was written with another (or no) encryption."""
    magic = snapshot_magic(cipher)
    check_magic(path, raw[: len(magic)], cipher, "snapshot")
    if len(raw) < len(magic) + _U32.size:
        raise CorruptLogError(path, 0, "not a swarmlet snapshot (too short)")
    (crc,) = _U32.unpack_from(raw, len(raw) - _U32.size)
    if zlib.crc32(raw[: -_U32.size]) != crc:
        raise CorruptLogError(path, len(raw) - _U32.size, "snapshot CRC mismatch")
    body = raw[len(magic) : -_U32.size]
    if cipher is not None:
        try:
            body = cipher.open(body, _SNAP_PURPOSE)
        except DecryptError as exc:
            raise CorruptLogError(path, len(magic), f"snapshot does not decrypt: {exc}") from None
    try:
        index, term, conf_size = _SNAP_HEAD.unpack_from(body, 0)
        pos = _SNAP_HEAD.size
        conf_raw = body[pos : pos + conf_size]
        voters, at = _decode_names(conf_raw, 0)
        learners, _ = _decode_names(conf_raw, at)
        pos += conf_size
        (size,) = _U64.unpack_from(body, pos)
        pos += _U64.size
        if pos + size != len(body):
            raise ValueError("data length does not match the file")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CorruptLogError(path, len(magic), f"bad snapshot header: {exc}") from None
    return SnapshotMeta(index, term, ConfState(voters, learners)), body[pos : pos + size]
