"""Committed small writes per second: swarmlet's Raft (3 managers, gRPC on loopback) vs PySyncObj.

Both run the same workload in the same run on the same machine: three node processes on
127.0.0.x; once a leader is elected, ``--clients`` concurrent clients in the leader's process
each write a small value (``--size`` bytes) to a replicated key-value map and wait until the
write is committed and applied, then write the next one, for ``--seconds`` seconds. Counted:
writes acknowledged (committed on a majority and applied on the leader) per second.

* swarmlet: :class:`manager.state.raft.shell.RaftShell` (core + storage + gRPC streams), with a
  plain dict as the state machine, so the figure is Raft's and not the store's.
  ``--fsync`` (default on) makes every batch of entries durable before it is acknowledged.
* PySyncObj: ``SyncObj`` with a ``@replicated`` set on a dict, called with ``sync=True``
  from client threads (PySyncObj's own way to wait for commit). With ``--fsync`` it gets a
  journal file (``journalFile``), its durable mode.

    .venv/bin/python bench/raft_throughput.py --seconds 10 --clients 32

prints one line per implementation and the ratio swarmlet / PySyncObj. swarmlet's log is
encrypted at rest, as every manager runs it (a random data key; AES-GCM per save). With
``--against plaintext`` the same swarmlet without encryption takes PySyncObj's place: the ratio
is then the cost of encryption at rest (issue 13's goal: at least 0.7). With ``--against
notls`` the other side is swarmlet encrypted but without mutual TLS (``swarmlet-notls``): the
ratio is then the cost of TLS alone. ``swarmlet`` runs mutual TLS between the managers as clusters
do (certificates from a root CA, the 2377 guard on every call); ``swarmlet-plain`` has neither.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- swarmlet node


class _Dict:
    """The benchmark's state machine: a replicated dict, as PySyncObj's side has."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def apply(self, index: int, data: bytes) -> Any:
        key, _, value = data.partition(b"=")
        self.data[key.decode()] = value
        return None

    def snapshot(self) -> bytes:
        return json.dumps({k: v.decode() for k, v in self.data.items()}).encode()

    def restore(self, data: bytes, index: int) -> None:
        self.data = {k: v.encode() for k, v in json.loads(data).items()}


async def _swarmlet_node(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "proto")]
    import grpc

    from manager.state.raft.config import RaftConfig
    from manager.state.raft.shell import RaftShell, ShellConfig, raft_transport_handler

    ids = [f"n{i}" for i in range(len(args.addrs))]
    peers = dict(zip(ids, args.addrs, strict=True))
    me = ids[args.index]
    shell = RaftShell(
        me,
        peers[me],
        pathlib.Path(args.dir) / me,
        _Dict(),
        voters=tuple(ids),
        peers=peers,
        config=ShellConfig(fsync=args.fsync),
        raft_config=RaftConfig.default(),
        rng=random.Random(args.index),
        data_key=os.urandom(32) if args.impl in ("swarmlet", "swarmlet-notls") else None,
    )
    interceptors: list[Any] = []
    if args.impl == "swarmlet":
        # Mutual TLS as the managers run it: a manager certificate from the cluster's root CA (made
        # by the parent), the roots checked on both ends, and the 2377 guard on every call.
        from manager.ca.authority import RootCA
        from manager.ca.service import CertificateGuard
        from nodeagent import tls

        ca_dir = pathlib.Path(args.dir)
        root = RootCA((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes())
        key = tls.new_key()
        cert = root.issue(_public_key(key), node_id=me, role="manager", cluster_id="bench",
                          expiry=datetime.timedelta(days=1), now=datetime.datetime.now(datetime.UTC))
        tls.set_enabled(True)
        tls.set_credentials(tls.NodeCredentials(cert, key, root.cert_pem))
        interceptors.append(CertificateGuard(lambda node_id: False))
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers((raft_transport_handler(lambda: shell),))
    from nodeagent import tls as _tls

    _tls.add_port(server, peers[me])
    await shell.start()
    await server.start()
    deadline = time.monotonic() + 20
    while not shell.leader_id and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if shell.is_leader:
        payload = b"x" * args.size
        counts = [0]
        latencies: list[float] = []
        stop_at = [0.0]

        async def client(c: int) -> None:
            n = 0
            while time.monotonic() < stop_at[0]:
                n += 1
                t0 = time.monotonic()
                await shell.propose(f"k{c}-{n % 100}".encode() + b"=" + payload, timeout=10)
                latencies.append(time.monotonic() - t0)
                counts[0] += 1

        stop_at[0] = time.monotonic() + args.warmup
        await asyncio.gather(*(client(c) for c in range(args.clients)))
        counts[0] = 0
        latencies.clear()
        start = time.monotonic()
        stop_at[0] = start + args.seconds
        await asyncio.gather(*(client(c) for c in range(args.clients)))
        elapsed = time.monotonic() - start
        _report(counts[0], elapsed, latencies)
    else:
        await asyncio.sleep(3600)


def _public_key(key_pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(key_pem, None).public_key()


# ---------------------------------------------------------------------- PySyncObj node


def _pysyncobj_node(args: argparse.Namespace) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Dict(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str], conf: SyncObjConf) -> None:
            super().__init__(me, partners, conf)
            self.data: dict[str, bytes] = {}

        @replicated  # type: ignore[untyped-decorator]
        def put(self, key: str, value: bytes) -> None:
            self.data[key] = value

    me = args.addrs[args.index]
    partners = [a for a in args.addrs if a != me]
    workdir = pathlib.Path(args.dir) / f"p{args.index}"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = SyncObjConf(
        journalFile=str(workdir / "journal") if args.fsync else None,
        dynamicMembershipChange=False,
        logCompactionMinEntries=10**9,
    )
    obj = Dict(me, partners, conf)
    deadline = time.monotonic() + 20
    while (obj._getLeader() is None or not obj._isReady()) and time.monotonic() < deadline:
        time.sleep(0.02)
    leader = obj._getLeader()
    if leader is None or str(leader) != me:
        time.sleep(3600)
        return
    payload = b"x" * args.size
    lock = threading.Lock()
    counts = [0]
    latencies: list[float] = []
    stop_at = [0.0]

    def client(c: int) -> None:
        n = 0
        while time.monotonic() < stop_at[0]:
            n += 1
            t0 = time.monotonic()
            obj.put(f"k{c}-{n % 100}", payload, sync=True, timeout=10)
            dt = time.monotonic() - t0
            with lock:
                counts[0] += 1
                latencies.append(dt)

    def run_phase(seconds: float) -> float:
        start = time.monotonic()
        stop_at[0] = start + seconds
        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - start

    run_phase(args.warmup)
    counts[0] = 0
    latencies.clear()
    elapsed = run_phase(args.seconds)
    _report(counts[0], elapsed, latencies)


def _report(count: int, elapsed: float, latencies: list[float]) -> None:
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    print(json.dumps({"writes": count, "seconds": elapsed, "p50": p50, "p99": p99}), flush=True)


# ---------------------------------------------------------------------- orchestration


def _run(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    base = random.Random().randrange(20, 240)
    hosts = [f"127.0.{base}.{i + 1}" for i in range(3)]
    addrs = [f"{h}:{_free_port(h)}" for h in hosts]
    workdir = tempfile.mkdtemp(prefix=f"raftbench-{impl}-")
    if impl == "swarmlet":
        sys.path[:0] = [str(ROOT), str(ROOT / "proto")]
        from manager.ca.tokens import ClusterCredentials

        ClusterCredentials.create().write(workdir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    procs = []
    try:
        for i in range(3):
            cmd = [sys.executable, __file__, "node", impl, "--index", str(i), "--dir", workdir,
                   "--clients", str(args.clients), "--seconds", str(args.seconds), "--size", str(args.size),
                   "--warmup", str(args.warmup), "--addrs", *addrs]  # fmt: skip
            if not args.fsync:
                cmd.append("--no-fsync")
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            )
        deadline = time.monotonic() + args.seconds + args.warmup + 60
        while time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None and p.stdout is not None:
                    out = p.stdout.read().strip().splitlines()
                    if out:
                        result: dict[str, Any] = json.loads(out[-1])
                        return result
                    raise RuntimeError(f"{impl}: a node exited without a result (code {p.returncode})")
            time.sleep(0.1)
        raise RuntimeError(f"{impl}: no result in time")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per implementation")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=32, help="concurrent writers in the leader")
    parser.add_argument("--size", type=int, default=32, help="bytes per value")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="both without durable logs")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two this many times")
    parser.add_argument("--against", choices=("pysyncobj", "plaintext", "notls"), default="pysyncobj",
                        help="what swarmlet (encrypted at rest) is compared with")
    sub = parser.add_subparsers(dest="mode")
    node = sub.add_parser("node")
    node.add_argument("impl", choices=("swarmlet", "swarmlet-plain", "swarmlet-notls", "pysyncobj"))
    node.add_argument("--index", type=int, required=True)
    node.add_argument("--dir", required=True)
    node.add_argument("--addrs", nargs=3, required=True)
    node.add_argument("--seconds", type=float, default=10.0)
    node.add_argument("--warmup", type=float, default=2.0)
    node.add_argument("--clients", type=int, default=32)
    node.add_argument("--size", type=int, default=32)
    node.add_argument("--no-fsync", dest="fsync", action="store_false")
    args = parser.parse_args()
    if args.mode == "node":
        if args.impl.startswith("swarmlet"):
            asyncio.run(_swarmlet_node(args))
        else:
            _pysyncobj_node(args)
        return 0
    print(f"3 nodes on loopback, {args.clients} clients, {args.size}-byte values, "
          f"{args.seconds:g} s measured after {args.warmup:g} s, fsync={'on' if args.fsync else 'off'}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    other = {"pysyncobj": "pysyncobj", "plaintext": "swarmlet-plain", "notls": "swarmlet-notls"}[args.against]
    totals = {"swarmlet": 0.0, other: 0.0}
    for _ in range(args.rounds):
        for impl in ("swarmlet", other):
            r = _run(impl, args)
            rate = r["writes"] / r["seconds"]
            totals[impl] += rate
            p50, p99 = r["p50"] * 1000, r["p99"] * 1000
            print(f"{impl:14s} {rate:9.0f} writes/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True)
    s, p = totals["swarmlet"] / args.rounds, totals[other] / args.rounds
    print(f"mean           swarmlet {s:.0f} writes/s, {other} {p:.0f} writes/s, ratio {s / p:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
