"""The routing mesh's relay alone, no cluster: two nodes' overlays and meshes in one process.

A child process runs two nodes' :class:`~nodeagent.overlay.shell.Overlay` and
:class:`~nodeagent.overlay.mesh_shell.Mesh` on two loopback addresses (their network databases
synced by hand, as the unit tests do) and three small HTTP listeners as the tasks of node 2;
node 1 runs no task, so each connection to its published port goes through an overlay tunnel,
as the entry node of bench/mesh.py. This process then runs the same closed-loop load as
bench/mesh.py (``--clients`` at a time, a new connection per request, ``Connection: close``)
against node 1's published port ("mesh") and one task's listener ("direct"), and prints req/s,
p50, p99, the nodes' process's CPU time per request and the ratio; on a loaded machine the CPU
per request is the steadier figure. The tasks' listeners are registered as the emulated images'
are, so that a tunnel hands its connection to them (``MESH_RELAY_DIAL=1``: dialled instead).
It measures what the relay costs, with no container, no other node and no gossip in the way;
run it with ``PYTHONPATH`` at another tree to compare versions.

    python bench/mesh_relay.py [--seconds 5] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.mesh import closed_loop

INGRESS = {"ID": "ingressid", "Spec": {"Name": "ingress", "Ingress": True},
           "DriverState": {"Name": "overlay",
                           "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4096"}},
           "IPAMOptions": {"Configs": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]}}  # fmt: skip
PAGE = b"<html><body>task</body></html>\n" * 20


async def _task_server(host: str) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(PAGE), PAGE))  # fmt: skip
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, 0)


async def serve(published: int) -> None:
    """The two nodes; prints "READY mesh_host port direct_host port" and runs until stdin closes."""
    from nodeagent.networkdb.core import NetworkDBConfig
    from nodeagent.networkdb.shell import NetworkDBShell
    from nodeagent.overlay.mesh_shell import Mesh
    from nodeagent.overlay.shell import Overlay

    prefix = f"127.{random.randrange(1, 250)}.{random.randrange(1, 250)}"
    h1, h2 = f"{prefix}.31", f"{prefix}.32"
    with socket.socket() as s:
        s.bind((h1, 0))
        data_port = int(s.getsockname()[1])
    ndb1 = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
    ndb2 = NetworkDBShell("n2", NetworkDBConfig(), random.Random(2))
    o1 = Overlay(node_id="n1", host=h1, ndb=ndb1, port=data_port)
    o2 = Overlay(node_id="n2", host=h2, ndb=ndb2, port=data_port)
    m1, m2 = Mesh(o1), Mesh(o2)
    servers = [await _task_server(h2) for _ in range(3)]
    if os.environ.get("MESH_RELAY_DIAL") != "1":
        try:  # as the emulated images' listeners do (trees without it: the tasks are dialled)
            from nodeagent.overlay.splice import register_listener

            for server in servers:
                register_listener(server)
        except ImportError:
            pass
    for part in (o1, o2, m1, m2):
        await part.start()
    m1.configure(INGRESS)
    m2.configure(INGRESS)
    ports = [{"TargetPort": 80, "PublishedPort": published, "Protocol": "tcp", "PublishMode": "ingress"}]
    for i, server in enumerate(servers):
        task = {"ID": f"task-{i}", "ServiceID": "svc-web", "ServiceAnnotations": {"Name": "web"},
                "NetworksAttachments": [{"Network": INGRESS, "Addresses": [f"10.0.0.{5 + i}/24"]}],
                "Endpoint": {"Spec": {"Mode": "vip"}, "Ports": ports,
                             "VirtualIPs": [{"NetworkID": "ingressid", "Addr": "10.0.0.2/24"}]}}  # fmt: skip
        o2.join(task)
        o2.publish(task, {80: server.sockets[0].getsockname()[1]})
    for x, y in ((ndb1, ndb2), (ndb2, ndb1), (ndb1, ndb2)):
        x.db.node_alive(y.db.name)
        y.db.node_alive(x.db.name)
        push = x.db.handle_sync(y.db.name, [], reply=False)
        assert push is not None
        y.db.handle_sync(x.db.name, push.entries, reply=True)
    ndb1.flush()
    ndb2.flush()
    deadline = time.monotonic() + 10
    while m1.ports != [f"{published}/tcp"]:
        assert time.monotonic() < deadline, "the mesh did not listen"
        await asyncio.sleep(0.05)
    direct = servers[0].sockets[0].getsockname()
    print(f"READY {h1} {published} {direct[0]} {direct[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per target")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        profile = os.environ.get("MESH_RELAY_PROFILE")  # a file: cProfile the nodes' process into it
        if profile:
            import cProfile

            cProfile.runctx("asyncio.run(serve(args.serve))", globals(), {"args": args}, profile)
        else:
            asyncio.run(serve(args.serve))
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        published = int(s.getsockname()[1])
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(published)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise RuntimeError("the nodes did not start")
        mesh_host, mesh_port, direct_host, direct_port = ready[1], int(ready[2]), ready[3], int(ready[4])
        results = {}
        for label, host, port in (("mesh (tunnelled)", mesh_host, mesh_port),
                                  ("direct (one task)", direct_host, direct_port)):  # fmt: skip
            asyncio.run(closed_loop(host, port, args.clients, 1.0))  # warm up
            cpu = _cpu_seconds(child.pid)
            results[label] = asyncio.run(closed_loop(host, port, args.clients, args.seconds))
            used = _cpu_seconds(child.pid) - cpu
            results[label]["cpu_ms"] = used * 1000 / max(1.0, results[label]["requests"])
        print(f"{args.clients} clients, {args.seconds:.0f} s per target, a new connection per request; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'target':20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'CPU ms/req':>11}")
        for label, r in results.items():
            print(f"{label:20} {r['rps']:8.0f} {r['p50']:8.1f} {r['p99']:8.1f} {r['failures']:7.0f} "
                  f"{r['cpu_ms']:11.2f}")
        mesh, direct = results.values()
        print(f"mesh / direct: req/s {mesh['rps'] / direct['rps']:.2f}; the relay's CPU per request: "
              f"{mesh['cpu_ms'] - direct['cpu_ms']:.2f} ms")
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
