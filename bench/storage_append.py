"""Appends per second to Raft's write-ahead log on this disk, with fsync on (and off, for scale).

    .venv/bin/python bench/storage_append.py [--seconds 3] [--size 128] [--dir PATH]

Each save() writes one entry (or a batch) plus the hard state and fsyncs before returning, as
the Raft shell does before acknowledging. Each case runs encrypted at rest (as managers run:
the save sealed with AES-GCM under a data key) and in plaintext, alternately; the last column is
their ratio. The directory defaults to a fresh one under the system's
temporary directory; pass --dir to measure another disk (check that it is not a tmpfs).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
import time

from manager.state.raft.encryption import DataCipher, new_key
from manager.state.raft.storage import RaftStorage
from manager.state.raft.types import Entry, HardState


def _run(directory: pathlib.Path, seconds: float, size: int, batch: int, fsync: bool,
         encrypted: bool) -> tuple[float, float]:
    """Returns (saves per second, entries per second)."""
    shutil.rmtree(directory, ignore_errors=True)
    payload = b"x" * size
    cipher = DataCipher(new_key()) if encrypted else None
    with RaftStorage.open(directory, fsync=fsync, cipher=cipher) as storage:
        index, saves = 0, 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            entries = [Entry(index + k + 1, 1, data=payload) for k in range(batch)]
            storage.save(HardState(term=1, vote="m1", commit=index), entries)
            index += batch
            saves += 1
        elapsed = time.perf_counter() - started
    shutil.rmtree(directory, ignore_errors=True)
    return saves / elapsed, index / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--size", type=int, default=128, help="entry payload bytes")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="swarmlet-wal-", dir=args.dir))
    print(f"directory: {work} (payload {args.size} B, {args.seconds:g} s per run)")
    print(f"{'fsync':<6} {'batch':>5} {'encrypted':>9} {'saves/s':>10} {'entries/s':>11} {'ms/save':>8} "
          f"{'ratio':>6}")
    for fsync in (True, False):
        for batch in (1, 64):
            plain = 0.0
            for encrypted in (False, True):
                saves, entries = _run(work / "wal", args.seconds, args.size, batch, fsync, encrypted)
                mode = "on" if fsync else "off"
                ratio = f"{saves / plain:6.2f}" if encrypted else ""
                plain = saves
                said = "yes" if encrypted else "no"
                print(f"{mode:<6} {batch:>5} {said:>9} {saves:>10.0f} {entries:>11.0f} "
                      f"{1000 / saves:>8.3f} {ratio:>6}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
