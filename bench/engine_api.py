"""``GET /nodes`` per second and its latency: swarmlet's Engine API vs the host engine's real Swarm.

The issue "The real docker CLI drives the cluster" promises an Engine API that a user does not
feel as slower than Docker's. This measures it the way the CLI uses it, in one run, with one
client, on one machine:

* swarmlet: a cluster of local processes (3 managers, 2 workers, ``python -m nodeagent`` on
  127.x.y.z, as tests/local/_procs_manager.py starts them); the client asks one manager's
  Engine API on its address, port 2375.
* the real Swarm: the host's Docker engine, over its unix socket. If the engine is in no swarm,
  ``docker swarm init --advertise-addr 127.0.0.1:PORT --listen-addr 127.0.0.1:PORT`` (a free
  port: another cluster may hold 2377) makes a single-node one and ``docker swarm leave --force``
  ends it (only then: a swarm this script did not make is used read-only).

The client is aiohttp with a keep-alive connection pool as large as the number of concurrent
clients; each client sends ``GET /v1.41/nodes`` (the host's API version; swarmlet accepts any
version prefix), reads the whole body, and sends the next. Every case (target x concurrency)
gets a warm-up, then ``--seconds`` of measurement (at most ``--max-requests`` requests); the
rounds interleave the targets, alternating which goes first, so both share the machine's
background load. Reported: requests/s (the median of the rounds), p50 and p99 latency (ms, over
every request of every round), and the ratio swarmlet / real Swarm.

    .venv/bin/python bench/engine_api.py --seconds 5 --rounds 3 --clients 1,64

``--profile FILE`` runs the asked manager under cProfile (through this module, so no hook sits
in the node's own code) and prints its hottest functions at the end. Traffic goes only to
loopback addresses and the local unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKER_SOCKET = "/var/run/docker.sock"
PATH = "/v1.41/nodes"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the client


@dataclass
class Target:
    """One Engine API to measure: how to reach it and what it answered."""

    name: str
    base_url: str
    unix_socket: str | None = None
    server_pid: int | None = None
    body_bytes: int = 0
    nodes: int = 0
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def connector(self, limit: int) -> Any:
        import aiohttp

        if self.unix_socket is not None:
            return aiohttp.UnixConnector(path=self.unix_socket, limit=limit)
        return aiohttp.TCPConnector(limit=limit)


async def _drive(session: Any, url: str, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """``clients`` loops of request-then-read for ``seconds`` (or ``max_requests`` in all)."""
    latencies: list[float] = []
    sizes: set[int] = set()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline and len(latencies) < max_requests:
            started = time.perf_counter()
            async with session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
            latencies.append(time.perf_counter() - started)
            sizes.add(len(body))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "latencies": latencies, "sizes": sorted(sizes)}


async def run_case(target: Target, clients: int, seconds: float, warmup: float,
                   max_requests: int) -> dict[str, Any]:
    """One measurement of ``target`` at ``clients`` concurrent clients, after a warm-up."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=target.connector(clients), timeout=timeout) as session:
        url = target.base_url + PATH
        if warmup > 0:  # opens the pool's connections and warms both sides' caches
            await _drive(session, url, clients, warmup, max_requests)
        server_cpu, client_cpu = _cpu_seconds(target.server_pid), time.process_time()
        result = await _drive(session, url, clients, seconds, max_requests)
        server_cpu = _cpu_seconds(target.server_pid) - server_cpu
        result["client_cpu"] = (time.process_time() - client_cpu) / result["seconds"]
        result["server_cpu"] = server_cpu / result["seconds"]
        result["server_cpu_ms_per_request"] = server_cpu * 1000 / max(1, result["requests"])
        result["load"] = os.getloadavg()[0]  # the machine's: other work shares its 2 cores
        return result


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN when unknown)."""
    if pid is None:
        return float("nan")
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """requests/s as the median of the rounds; p50/p99 over every request of every round."""
    latencies = sorted(x for r in rounds for x in r["latencies"])
    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "rps_rounds": [round(r["rps"], 1) for r in rounds],
        "requests": sum(r["requests"] for r in rounds),
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        # Cores busy, as a median over the rounds: the server process, and this client.
        "server_cpu": statistics.median(r["server_cpu"] for r in rounds),
        "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in rounds),
        "client_cpu": statistics.median(r["client_cpu"] for r in rounds),
        "load_average": [round(r["load"], 1) for r in rounds],
    }


# ---------------------------------------------------------------------- the swarmlet cluster


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def start_swarmlet(workdir: pathlib.Path, ask: str, profile: str | None) -> tuple[Any, Target]:
    """3 managers and 2 workers as local processes; wait for 5 Ready nodes and a leader."""
    sys.path[:0] = [str(ROOT), str(ROOT / "proto"), str(ROOT / "tests" / "local")]
    from _procs_manager import Cluster, wait_until

    cluster = Cluster(workdir)
    cluster.add_managers(3)
    cluster.add_worker("worker1")
    cluster.add_worker("worker2")
    if ask not in cluster.nodes or cluster.nodes[ask].role != "manager":
        raise SystemExit(f"--ask {ask}: not one of the managers (manager1..manager3)")
    node = cluster.nodes[ask]
    if profile is not None:
        node.module = "bench.engine_api"
        node.args = ["--profiled-node", str(pathlib.Path(profile).resolve()), *node.args]
    cluster.start_all()
    assert node.proc is not None
    target = Target(f"swarmlet ({ask})", f"http://{node.host}:2375", server_pid=node.proc.pid)

    def settled() -> list[dict[str, Any]] | None:
        nodes: list[dict[str, Any]] = _get_json(target.base_url + PATH)
        ready = [n for n in nodes if n["Status"]["State"] == "ready"]
        leaders = [n for n in nodes if n.get("ManagerStatus", {}).get("Leader")]
        return nodes if len(ready) == 5 and len(leaders) == 1 else None

    try:
        nodes = wait_until(settled, timeout=60, interval=0.2, what="5 Ready nodes and a leader")
    except BaseException:
        _say(cluster.logs())
        cluster.stop_all()
        raise
    leader = next(n["Description"]["Hostname"] for n in nodes if n.get("ManagerStatus", {}).get("Leader"))
    _say(f"swarmlet: 5 nodes Ready, leader {leader}; asking {ask} at {target.base_url}")
    return cluster, target


# ---------------------------------------------------------------------- the real Swarm


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _dockerd_pid() -> int | None:
    """dockerd's pid, to count its CPU (None when its pid file is not readable)."""
    try:
        return int(pathlib.Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class RealSwarm:
    """The host engine's swarm, and whether this run made it (then, and only then, it leaves)."""

    version: str = ""
    initialised: bool = False
    node_id: str = ""
    left: bool = False

    def up(self) -> Target:
        """Join the host engine to a single-node swarm if it is in none; the target to measure."""
        self.version = _docker("version", "--format", "{{.Server.Version}}")
        state = _docker("info", "--format", "{{.Swarm.LocalNodeState}}")
        if state == "inactive":
            # A port of its own: another cluster on this machine may hold 2377 on some 127.x
            # address, and the default listen address, 0.0.0.0:2377, would then be refused.
            addr = f"127.0.0.1:{_free_port('127.0.0.1')}"
            _docker("swarm", "init", "--advertise-addr", addr, "--listen-addr", addr)
            self.initialised = True
        elif state != "active":
            raise RuntimeError(f"the host engine's swarm is {state!r}: neither inactive nor active")
        self.node_id = _docker("info", "--format", "{{.Swarm.NodeID}}")
        if _docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
            raise RuntimeError("the host engine is in a swarm as a worker: GET /nodes needs a manager")
        made = "initialised by this run" if self.initialised else "already there, used read-only"
        _say(f"real Swarm: Docker {self.version}, node {self.node_id} ({made})")
        return Target(f"real Swarm (Docker {self.version})", "http://localhost", unix_socket=DOCKER_SOCKET,
                      server_pid=_dockerd_pid())

    def down(self) -> None:
        """Leave the swarm if this run made it and the engine is still in that one."""
        if not self.initialised or self.left:
            return
        self.left = True
        if _docker("info", "--format", "{{.Swarm.NodeID}}") == self.node_id:
            _docker("swarm", "leave", "--force")
            _say("real Swarm: left (docker swarm leave --force)")


# ---------------------------------------------------------------------- the run


async def _check(target: Target) -> None:
    """What the target answers: how many nodes, in how many bytes (the same for every request)."""
    import aiohttp

    async with (aiohttp.ClientSession(connector=target.connector(1)) as session,
                session.get(target.base_url + PATH) as response):
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: GET {PATH}: {response.status} {body[:200]!r}")
    target.nodes = len(json.loads(body))
    target.body_bytes = len(body)


def measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Every round runs every concurrency against every target, the targets' order alternating."""
    for target in targets:
        asyncio.run(_check(target))
    for r in range(args.rounds):
        for i, clients in enumerate(args.clients):
            order = targets if (r + i) % 2 == 0 else list(reversed(targets))
            for target in order:
                result = asyncio.run(run_case(target, clients, args.seconds, args.warmup, args.max_requests))
                target.results.setdefault(clients, []).append(result)
                lat = sorted(result["latencies"])
                plural = "s" if clients > 1 else " "
                _say(f"round {r + 1}/{args.rounds}  {target.name:34} {clients:3} client{plural}: "
                     f"{result['rps']:6.0f} req/s, p50 {_percentile(lat, 0.5) * 1000:6.2f} ms, "
                     f"p99 {_percentile(lat, 0.99) * 1000:6.2f} ms ({result['requests']} requests; "
                     f"CPU server {result['server_cpu']:.2f}, client {result['client_cpu']:.2f}; "
                     f"load {result['load']:.1f})")


def report(targets: list[Target], args: argparse.Namespace, real: RealSwarm) -> dict[str, Any]:
    """The figures as one dict (``--json``), ratios swarmlet / real Swarm when both ran."""
    out: dict[str, Any] = {
        "path": PATH, "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
        "clients": args.clients, "load_average": os.getloadavg()[0],
        "host_engine": real.version, "swarm_initialised_by_run": real.initialised,
        "targets": {},
    }  # fmt: skip
    for target in targets:
        out["targets"][target.name] = {
            "nodes": target.nodes, "body_bytes": target.body_bytes,
            "by_clients": {str(c): summarise(rs) for c, rs in target.results.items()},
        }  # fmt: skip
    if len(targets) == 2:
        mine, theirs = (out["targets"][t.name]["by_clients"] for t in targets)
        out["ratio"] = {c: mine[c]["rps"] / theirs[c]["rps"] for c in mine}
    return out


def print_table(out: dict[str, Any]) -> None:
    """The human-readable summary."""
    print(f"GET {out['path']}: {out['rounds']} rounds x {out['seconds']} s per case "
          f"(req/s: median of rounds; latency over all requests)")
    print(f"{'target':34} {'nodes':>5} {'bytes':>6} {'clients':>7} {'req/s':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'server CPU':>10} {'ms CPU/req':>10} {'client CPU':>10}")
    for name, t in out["targets"].items():
        for clients, s in t["by_clients"].items():
            print(f"{name:34} {t['nodes']:5} {t['body_bytes']:6} {clients:>7} {s['rps']:7.0f} "
                  f"{s['p50_ms']:7.2f} {s['p99_ms']:7.2f} {s['server_cpu']:10.2f} "
                  f"{s['server_cpu_ms_per_request']:10.3f} {s['client_cpu']:10.2f}")
    for clients, ratio in out.get("ratio", {}).items():
        print(f"ratio swarmlet / real Swarm, {clients} client{'s' if clients != '1' else ''}: {ratio:.2f}")


def _print_profile(path: str, lines: int) -> None:
    stats = pstats.Stats(path, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


def _profiled_node(out: str, argv: list[str]) -> None:
    """Run a node agent under cProfile (``--profile``); write the stats when it stops."""
    import cProfile

    sys.path[:0] = [str(ROOT), str(ROOT / "proto")]
    from nodeagent.__main__ import main

    profiler = cProfile.Profile()
    code = 1
    try:
        code = profiler.runcall(main, argv)
    finally:
        profiler.dump_stats(out)
        sys.stderr.flush()
        os._exit(code)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each case (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, interleaving the targets (default 3)")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64],
                   help="concurrent clients, comma-separated (default 1,64)")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap per case (default 200000)")
    p.add_argument("--ask", default="manager1",
                   help="the manager whose Engine API is asked (default manager1)")
    p.add_argument("--no-real", action="store_true", help="measure swarmlet only")
    p.add_argument("--profile", metavar="FILE", help="run the asked manager under cProfile, stats to FILE")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.rounds <= 20:
        p.error("bounds: 0 < --seconds <= 120, 0 <= --warmup <= 30, 1 <= --rounds <= 20")
    if not args.clients or not all(1 <= c <= 1024 for c in args.clients):
        p.error("--clients: each between 1 and 1024")
    return args


def main(argv: list[str]) -> int:
    """Run the benchmark; 0 on success."""
    args = _parse(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # so that the finally blocks stop the cluster and leave

    signal.signal(signal.SIGTERM, on_term)
    real = RealSwarm()
    with tempfile.TemporaryDirectory(prefix="swarmlet-engine-api-") as tmp:
        cluster, mine = start_swarmlet(pathlib.Path(tmp), args.ask, args.profile)
        try:
            targets = [mine]
            if not args.no_real:
                targets.append(real.up())
            measure(targets, args)
        finally:
            if args.profile is not None:
                cluster.nodes[args.ask].kill(signal.SIGTERM)  # lets the profiler write its stats
            stops: tuple[Callable[[], None], ...] = (real.down, cluster.stop_all)
            for stop in stops:
                try:
                    stop()
                except Exception as exc:
                    _say(f"cleanup: {exc}")
    out = report(targets, args, real)
    if args.profile is not None:
        _print_profile(args.profile, 35)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_table(out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled-node":
        _profiled_node(sys.argv[2], sys.argv[3:])
    sys.exit(main(sys.argv[1:]))
