"""Reading and damaging Raft log segments on disk, for the storage and encryption unit tests."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

__all__ = ["flip", "record_offsets", "segments", "sigkill_after"]

REPO = pathlib.Path(__file__).resolve().parents[2]


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


def sigkill_after(writer: str, directory: pathlib.Path, acknowledged: int) -> int:
    """Run the Python ``writer`` (given ``directory`` as its argument; it prints each index whose
    save returned) and SIGKILL it once it has printed ``acknowledged``, or when it ends; the last
    index it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", writer, str(directory)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    seen = 0
    for line in child.stdout:
        seen = int(line)
        if seen >= acknowledged:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    return seen
