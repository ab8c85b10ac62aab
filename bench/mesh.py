"""The routing mesh's throughput and latency, beside a task reached directly and an nginx proxy.

On a running compose cluster (``swarmlet --project P up``; run with ``SWARMLET_PROJECT=P``), makes
``docker service create --name meshbench --replicas 3 -p 8080:80 nginx`` through the real docker
CLI, then measures the same closed-loop HTTP load (``--clients`` connections at a time, a new
TCP connection per request, as curl) for ``--seconds`` each, in one run:

* **mesh**: a node's port 8080 at its container address (``--entry``, a node; by default one
  that runs no task of the service), which relays each request round robin to the three tasks,
  through overlay tunnels when they run elsewhere;
* **direct**: one task's own listener (its node's address and the ephemeral port it bound), the
  floor of what any proxy in front can do;
* **nginx**: Debian's nginx (``swarmlet/nginx``, built from Debian packages as the base image is:
  deploy/images.py) in a container on the cluster's network, ``proxy_pass`` to an upstream of the
  same three task listeners (round robin, a new connection per request as the mesh opens one).

Requests go to container addresses (the host reaches the project's bridge network), not through
the published host ports, so that docker-proxy is not measured in front of one and not the
others. Prints req/s, p50 and p99 per target and the mesh's ratios to nginx and to the direct
path. The service and the nginx container are removed at the end.

    python bench/mesh.py [--seconds 10] [--clients 16] [--entry manager2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from deploy.backends import load_backend
from deploy.backends.base import NodeHandle, use_cluster_tls

SERVICE = "meshbench"
PORT = 8080


async def http_get(host: str, port: int, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET / on a new connection (``Connection: close``); (status, body). Raises OSError/TimeoutError."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read(-1)
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {data[:40]!r}")
        return int(parts[1]), body

    return await asyncio.wait_for(go(), timeout)


def docker(docker_host: str, *args: str, check: bool = True) -> str:
    """Run the real docker CLI against the cluster; its stdout."""
    env = dict(os.environ, DOCKER_HOST=docker_host)
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def host_docker(*args: str, check: bool = True) -> str:
    """The host's own docker engine (containers, inspect)."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def container_ip(node: NodeHandle) -> tuple[str, str]:
    """(the node container's address on its compose network, that network's name)."""
    nets = json.loads(host_docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", node.ref))
    name, info = next(iter(nets.items()))
    return str(info["IPAddress"]), str(name)


def task_listeners(nodes: Sequence[NodeHandle], service: str) -> dict[str, tuple[str, str]]:
    """Task name -> (its node's hostname, "addr:port" its listener bound), asked of every node."""
    from nodeagent.agent.taskservice import list_tasks

    out: dict[str, tuple[str, str]] = {}
    for node in nodes:
        ip, _ = container_ip(node)
        for row in asyncio.run(list_tasks(f"{ip}:7946")):
            if row["name"].startswith(service + ".") and row["state"] == "running" and row["address"]:
                out[row["name"]] = (node.hostname, row["address"])
    return out


def wait_for(what: str, probe, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Call ``probe`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception:  # not yet: ask again
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


async def closed_loop(host: str, port: int, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` loops of GET / for ``seconds``: req/s, p50, p99 (ms) and failures."""
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + seconds

    async def client() -> None:
        nonlocal failures
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                status, _ = await http_get(host, port)
                if status != 200:
                    failures += 1
                    continue
            except (OSError, TimeoutError):
                failures += 1
                continue
            latencies.append(time.monotonic() - began)

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    took = time.monotonic() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return {"rps": len(latencies) / took, "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
            "p99": p99 * 1000, "failures": float(failures), "requests": float(len(latencies))}


NGINX_CONF = """worker_processes 1;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream tasks {{
{servers}
    }}
    server {{
        listen 80;
        location / {{ proxy_pass http://tasks; }}
    }}
}}
"""


def start_nginx(network: str, listeners: Sequence[str]) -> tuple[str, str, str]:
    """An nginx container on the cluster's network in front of ``listeners``: (name, address, conf dir)."""
    from deploy.images import ensure_nginx_image

    image = ensure_nginx_image(lambda msg: print(f"  {msg}...", flush=True)).tag
    folder = tempfile.mkdtemp(prefix="mesh-nginx-")
    servers = "\n".join(f"        server {addr};" for addr in listeners)
    with open(os.path.join(folder, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(servers=servers))
    name = f"meshbench-nginx-{os.getpid()}"
    host_docker("run", "-d", "--name", name, "--network", network, "-v", f"{folder}:/conf:ro", image,
                "nginx", "-c", "/conf/nginx.conf", "-g", "daemon off;")
    nets = json.loads(host_docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", name))
    return name, str(nets[network]["IPAddress"]), folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per target")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--entry", default="",
                        help="the node whose mesh is measured (default: one with no task)")
    args = parser.parse_args()

    use_cluster_tls()  # the agents' 7946 takes mutual TLS: an operator's certificate of the cluster's CA
    backend = load_backend()
    nodes = [n for n in backend.nodes() if n.state == "running"]
    manager = next(n for n in nodes if n.role == "manager" and n.docker_host)
    assert manager.docker_host is not None
    dh = manager.docker_host
    docker(dh, "service", "rm", SERVICE, check=False)
    docker(dh, "service", "create", "--quiet", "--name", SERVICE, "--replicas", "3", "-p", f"{PORT}:80",
           "nginx")
    nginx_name = ""
    try:
        listeners = wait_for("3 running tasks", lambda: (lambda t: t if len(t) == 3 else None)(
            task_listeners(nodes, SERVICE)))
        busy = {host for host, _ in listeners.values()}
        entry = next((n for n in nodes if n.hostname == args.entry), None) if args.entry else \
            next((n for n in nodes if n.hostname not in busy), nodes[0])
        assert entry is not None, f"no node {args.entry}"
        entry_ip, network = container_ip(entry)
        wait_for("the mesh on the entry node", lambda: asyncio.run(http_get(entry_ip, PORT))[0] == 200)
        direct_task, (direct_node, direct) = sorted(listeners.items())[0]
        nginx_name, nginx_ip, _ = start_nginx(network, [addr for _, addr in listeners.values()])
        wait_for("nginx", lambda: asyncio.run(http_get(nginx_ip, 80))[0] == 200)
        d_host, d_port = direct.rsplit(":", 1)
        targets = [
            (f"mesh ({entry.hostname}:{PORT})", entry_ip, PORT),
            (f"direct ({direct_task.split('.')[0]}.{direct_task.split('.')[1]} on {direct_node})", d_host,
             int(d_port)),
            ("nginx proxy", nginx_ip, 80),
        ]
        results = {}
        for label, host, port in targets:
            asyncio.run(closed_loop(host, port, args.clients, 1.0))  # warm up
            results[label] = asyncio.run(closed_loop(host, port, args.clients, args.seconds))
        print(f"{args.clients} clients, {args.seconds:.0f} s per target, a new connection per request")
        print(f"{'target':42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
        for label, r in results.items():
            print(f"{label:42} {r['rps']:8.0f} {r['p50']:8.1f} {r['p99']:8.1f} {r['failures']:7.0f}")
        mesh, direct_r, proxy = (results[label] for label, _, _ in targets)
        print(f"mesh / nginx: req/s {mesh['rps'] / proxy['rps']:.2f}, p99 {mesh['p99'] / proxy['p99']:.2f}")
        print(f"mesh / direct: req/s {mesh['rps'] / direct_r['rps']:.2f}, "
              f"p99 {mesh['p99'] / direct_r['p99']:.2f}")
    finally:
        if nginx_name:
            host_docker("rm", "-f", nginx_name, check=False)
        docker(dh, "service", "rm", SERVICE, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
