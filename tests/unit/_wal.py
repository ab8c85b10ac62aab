"""Reading and damaging Raft log segments on disk, for the storage and encryption unit tests."""

from __future__ import annotations

import pathlib

__all__ = ["flip", "record_offsets", "segments"]


def segments(directory: pathlib.Path) -> list[pathlib.Path]:
    """The log's segment files (``wal-*.log``), oldest first."""
    return sorted(directory.glob("wal-*.log"))


def record_offsets(path: pathlib.Path) -> list[int]:
    """Byte offset of every record in a segment (8-byte magic, then length-prefixed records)."""
    data = path.read_bytes()
    offsets, pos = [], 8
    while pos < len(data):
        offsets.append(pos)
        pos += 9 + int.from_bytes(data[pos : pos + 4], "little")
    return offsets


def flip(path: pathlib.Path, offset: int) -> None:
    """Invert the byte at ``offset`` of the file ``path``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
