"""A rolling update under steady load through the routing mesh: start-first beside stop-first.

On a running compose cluster (``swarmlet --project P up``; run with ``SWARMLET_PROJECT=P``), for
each update order: ``docker service create --name meshupd --replicas 3 -p 8080:80
--update-order ORDER --update-parallelism 1 nginx:1.25`` through the real docker CLI, then a
steady ``--rate`` requests per second (open loop: one new connection every 1/rate s, whatever
the answers do) spread over every node's port 8080 at its container address (the
project's bridge network, which the host reaches; ``--via-host``: at the node's host
address, through docker-proxy, which on a loaded machine adds failures of its own); after
``--before`` seconds, ``docker service update --image nginx:1.26 meshupd`` (which returns
once the update completed), then ``--after`` more seconds of load. A request fails when
its connection is refused or reset, it times out (5 s) or the status is not 200. Prints, side by
side, the requests sent, failed (with the reasons), the update's duration and which image
answered; then removes the service.

    python bench/mesh_update.py [--rate 200] [--orders start-first,stop-first]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mesh import PORT, container_ip, docker, http_get, wait_for

from deploy.backends import load_backend

SERVICE = "meshupd"


async def steady_load(addrs: list[str], rate: float, stop: asyncio.Event) -> dict[str, object]:
    """One request every 1/rate s, node by node, until ``stop``; counts by outcome."""
    outcomes: collections.Counter[str] = collections.Counter()
    images: collections.Counter[str] = collections.Counter()
    pending: set[asyncio.Task[None]] = set()

    async def one(addr: str) -> None:
        try:
            status, body = await http_get(addr, PORT)
        except TimeoutError:
            outcomes["timeout"] += 1
            return
        except OSError as exc:
            outcomes[type(exc).__name__] += 1
            return
        if status != 200:
            outcomes[f"HTTP {status}"] += 1
            return
        outcomes["ok"] += 1
        found = re.search(rb"image nginx:([0-9.]+)", body)
        images[found.group(1).decode() if found else "?"] += 1

    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while not stop.is_set():
        due = start + sent / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(addrs[sent % len(addrs)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
    if pending:
        await asyncio.wait(pending)
    return {"sent": sent, "outcomes": outcomes, "images": images, "seconds": loop.time() - start}


async def one_order(dh: str, addrs: list[str], order: str, rate: float, before: float,
                    after: float) -> dict[str, object]:
    """The whole experiment for one update order."""
    docker(dh, "service", "rm", SERVICE, check=False)
    docker(dh, "service", "create", "--quiet", "--name", SERVICE, "--replicas", "3", "-p", f"{PORT}:80",
           "--update-order", order, "--update-parallelism", "1", "nginx:1.25")
    for addr in addrs:
        await asyncio.to_thread(wait_for, f"{addr}:{PORT}",
                                lambda addr=addr: asyncio.run(http_get(addr, PORT))[0] == 200)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(addrs, rate, stop))
    await asyncio.sleep(before)
    began = time.monotonic()
    for attempt in range(3):  # a loaded cluster may time a write out (Raft): ask again
        try:
            await asyncio.to_thread(docker, dh, "service", "update", "--quiet", "--image", "nginx:1.26",
                                    SERVICE)  # fmt: skip
            break
        except RuntimeError as exc:
            if attempt == 2:
                raise
            print(f"retrying the update: {exc}", file=sys.stderr)
    took = time.monotonic() - began
    await asyncio.sleep(after)
    stop.set()
    result = await load
    result["update_seconds"] = took
    docker(dh, "service", "rm", SERVICE, check=False)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--orders", default="start-first,stop-first")
    parser.add_argument("--before", type=float, default=2.0, help="seconds of load before the update")
    parser.add_argument("--via-host", action="store_true",
                        help="through the nodes' host addresses (docker-proxy), not their containers'")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of load after it completed")
    args = parser.parse_args()
    backend = load_backend()
    nodes = [n for n in backend.nodes() if n.state == "running"]
    manager = next(n for n in nodes if n.role == "manager" and n.docker_host)
    assert manager.docker_host is not None
    if args.via_host:
        addrs = [n.addr for n in nodes if n.addr]
    else:
        addrs = [container_ip(n)[0] for n in nodes]
    results = {}
    for order in args.orders.split(","):
        results[order] = asyncio.run(one_order(manager.docker_host, addrs, order, args.rate, args.before,
                                               args.after))  # fmt: skip
    print(f"{args.rate:.0f} req/s over {len(addrs)} nodes' port {PORT}; 3 replicas, nginx:1.25 -> 1.26, "
          "parallelism 1")
    print(f"{'':28}" + "".join(f"{order:>24}" for order in results))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:28}" + "".join(f"{v:>24}" for v in values))

    row("requests sent", [str(r["sent"]) for r in results.values()])
    row("achieved rate (req/s)", [f"{int(r['sent']) / float(r['seconds']):.0f}" for r in results.values()])  # type: ignore[call-overload]
    row("failed", [str(sum(n for k, n in r["outcomes"].items() if k != "ok")) for r in results.values()])  # type: ignore[attr-defined]
    row("failures by reason", [", ".join(f"{k} {n}" for k, n in sorted(r["outcomes"].items()) if k != "ok")  # type: ignore[attr-defined]
                               or "-" for r in results.values()])
    row("update took (s)", [f"{float(r['update_seconds']):.1f}" for r in results.values()])  # type: ignore[arg-type]
    row("answers 1.25 / 1.26", [f"{r['images'].get('1.25', 0)} / {r['images'].get('1.26', 0)}"  # type: ignore[attr-defined]
                                for r in results.values()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
