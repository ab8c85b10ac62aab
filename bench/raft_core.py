"""Throughput of the pure Raft core: proposals committed per second on three in-memory nodes.

    .venv/bin/python bench/raft_core.py [--entries 20000] [--batch 64] [--size 256]

No network, no disk: messages go straight from one node's Ready to the next node's step, so the
figure is the core's own cost per committed entry (an upper bound for the shell).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time

_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "proto")]

from manager.state.raft.config import RaftConfig  # noqa: E402
from manager.state.raft.core import RaftNode  # noqa: E402
from manager.state.raft.messages import Message  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64, help="proposals between two deliveries")
    parser.add_argument("--size", type=int, default=256, help="payload bytes per proposal")
    args = parser.parse_args()
    ids = ["a", "b", "c"]
    nodes = {i: RaftNode(RaftConfig.default(), i, random.Random(i), voters=ids) for i in ids}

    def pump() -> None:
        queue: list[Message] = []
        for node in nodes.values():
            while node.has_ready():
                rd = node.ready()
                queue.extend(rd.messages)
                node.advance(rd)
        while queue:
            m = queue.pop()
            target = nodes[m.to]
            target.step(m)
            while target.has_ready():
                rd = target.ready()
                queue.extend(rd.messages)
                target.advance(rd)

    nodes["a"].campaign()
    pump()
    payload = b"x" * args.size
    leader = nodes["a"]
    started = time.perf_counter()
    done = 0
    while done < args.entries:
        for _ in range(args.batch):
            leader.propose(payload)
        done += args.batch
        pump()
    elapsed = time.perf_counter() - started
    assert all(n.commit == leader.commit for n in nodes.values())
    print(json.dumps({
        "entries": done,
        "batch": args.batch,
        "payload_bytes": args.size,
        "seconds": round(elapsed, 3),
        "entries_per_s": round(done / elapsed),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
