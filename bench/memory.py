"""Memory per node container, as `docker stats` reports it, against the 60 MiB budget.

    python bench/memory.py                 # measure the compose cluster that is up
    python bench/memory.py --up --keep     # bring one up first (swarmlet up), leave it up
    python bench/memory.py --up --workers 5 --samples 5 --settle 10
    python bench/memory.py --up --project mem  # a cluster of its own project, removed afterwards
    python bench/memory.py --up --project mem --web --settle 30  # with every manager's web view open

    python bench/memory.py --up --project mem --tasks 10   # with 10 nginx tasks running on every node
    python bench/memory.py --up --project mem --history 40 --tasks 10  # after 40 rounds of writes first

Prints one line per container (the largest of its samples) and the mean and maximum over the
nodes; the cluster's Prometheus is printed apart (it is not a node: no budget). With ``--web``,
every manager's web view is held open during the settle time and the samples, as a browser
holds it: an event stream (``GET /api/events``, server-sent events) read to the end, which also
makes the manager ask every node for its membership view once a second (docs/web.md). With
``--tasks N`` a service of N nginx replicas per node (spread evenly by the scheduler) runs while
the samples are taken, and is removed after. With ``--history N`` the managers first carry a
history of writes, as they do late in the compose test session: N rounds, each creating a
service of 5 nginx replicas, scaling it to 10, updating its image (a rolling update) and
removing it, every step waited for. Exits 1 when a node container is over the budget.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

BUDGET_MIB = 60.0
_UNITS = {"b": 1 / 2**20, "kib": 1 / 2**10, "mib": 1.0, "gib": 2**10, "kb": 1e3 / 2**20, "mb": 1e6 / 2**20,
          "gb": 1e9 / 2**20}


def mib(text: str) -> float:
    """'28.5MiB' -> 28.5; Docker writes binary units (MiB), older clients decimal (MB)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", text)
    if not match:
        raise ValueError(f"cannot read a memory figure from {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def sample(project: str = "swarmlet") -> dict[str, float]:
    """Container name -> memory in MiB, for the project's running containers."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    if not ids:
        return {}
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
        capture_output=True, text=True, check=True,
    ).stdout
    figures = {}
    for line in out.splitlines():
        row = json.loads(line)
        figures[row["Name"]] = mib(row["MemUsage"].split("/")[0])
    return figures


def _web_urls(project: str) -> list[str]:
    """The web view of every running manager of the project, where docker publishes port 8081."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    urls = []
    for container in json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                                check=True).stdout or "[]"):
        service = container["Config"]["Labels"].get("com.docker.compose.service", "")
        bound = (container["NetworkSettings"]["Ports"] or {}).get("8081/tcp") or []
        if service.startswith("manager") and bound:
            urls.append(f"http://{bound[0]['HostIp']}:{bound[0]['HostPort']}")
    return urls


class EventStreams:
    """One open event stream per manager's web view, read in a thread each, until stopped."""

    def __init__(self, urls: list[str]) -> None:
        self.events = dict.fromkeys(urls, 0)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(url,), daemon=True) for url in urls]
        for thread in self._threads:
            thread.start()

    def _read(self, url: str) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(url + "/api/events", timeout=10) as stream:
                    for line in stream:
                        if line.startswith(b"event:"):
                            self.events[url] += 1
                        if self._stop.is_set():
                            return
            except OSError:
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
LOAD_SERVICE = "memload"


def _docker(project: str) -> list[str]:
    from deploy.backends.compose import ComposeBackend

    manager = next(n for n in ComposeBackend(project=project).nodes() if n.hostname == "manager1")
    return ["docker", "-H", f"tcp://{manager.addr}:2375"]


def _start_tasks(project: str, per_node: int) -> None:
    """A service of ``per_node`` nginx replicas per node; returns once every one runs."""
    docker = _docker(project)
    listed = subprocess.run([*docker, "node", "ls", "-q"], capture_output=True, text=True, check=True)
    nodes = listed.stdout.split()
    total = per_node * len(nodes)
    subprocess.run([*docker, "service", "create", "-d", "--name", LOAD_SERVICE, "--replicas", str(total),
                    "nginx:1.25"], capture_output=True, check=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        out = subprocess.run([*docker, "service", "ps", "-f", "desired-state=running", "--format",
                              "{{.Node}} {{.CurrentState}}", LOAD_SERVICE], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
        running = [line.split()[0] for line in out.splitlines() if " Running " in line]
        if len(running) == total:
            counts = sorted({n: running.count(n) for n in running}.values())
            print(f"{total} tasks running, per node: {counts}")
            return
        time.sleep(1)
    raise SystemExit(f"the {total} tasks of {LOAD_SERVICE} did not all run within 300 s")


def _running(docker: list[str], service: str, image: str) -> int:
    out = subprocess.run([*docker, "service", "ps", "-f", "desired-state=running", "--format",
                          "{{.Image}} {{.CurrentState}}", service], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    return sum(1 for line in out.splitlines() if line.startswith(f"{image} Running "))


def _wait_running(docker: list[str], service: str, count: int, image: str = "nginx:1.25",
                  timeout: float = 120) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while _running(docker, service, image) != count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} did not reach {count} running tasks within {timeout:.0f} s")
        time.sleep(0.5)


def _history(project: str, rounds: int) -> None:
    """``rounds`` rounds of writes: create a service of 5 replicas, scale it to 10, update its
    image, remove it; each step waited for, so that every task's states are reported too."""
    docker = _docker(project)
    start = time.monotonic()
    for i in range(rounds):
        name = f"memhist{i}"
        subprocess.run([*docker, "service", "create", "-d", "--name", name, "--replicas", "5",
                        "--update-parallelism", "5", "nginx:1.25"], capture_output=True, check=True)
        _wait_running(docker, name, 5)
        subprocess.run([*docker, "service", "scale", "-d", f"{name}=10"], capture_output=True, check=True)
        _wait_running(docker, name, 10)
        subprocess.run([*docker, "service", "update", "-d", "--image", "nginx:1.26", name],
                       capture_output=True, check=True)
        _wait_running(docker, name, 10, image="nginx:1.26")
        subprocess.run([*docker, "service", "rm", name], capture_output=True, check=True)
        print(f"history: round {i + 1}/{rounds} done at {time.monotonic() - start:.0f} s", flush=True)


def _stop_tasks(project: str) -> None:
    subprocess.run([*_docker(project), "service", "rm", LOAD_SERVICE], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--up", action="store_true", help="run `swarmlet up` first")
    parser.add_argument("--keep", action="store_true", help="with --up: leave the cluster up afterwards")
    parser.add_argument("--workers", type=int, default=2, help="with --up: workers (default 2)")
    parser.add_argument("--samples", type=int, default=3, help="samples per container (default 3)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after up before measuring")
    parser.add_argument("--project", default="swarmlet", help="the compose project (default swarmlet)")
    parser.add_argument("--web", action="store_true",
                        help="hold every manager's web view open (its event stream) while measuring")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="first N rounds of service create, scale, update and rm (default 0)")
    parser.add_argument("--tasks", type=int, default=0, metavar="N",
                        help="run N nginx tasks on every node while measuring (default 0)")
    args = parser.parse_args()
    swarmlet = [sys.executable, "-m", "deploy.cli", "--project", args.project]
    if args.up:
        subprocess.run([*swarmlet, "up", "--workers", str(args.workers)], check=True)
    streams = EventStreams(_web_urls(args.project)) if args.web else None
    if args.up or streams is not None:
        time.sleep(args.settle)
    try:
        if args.history:
            _history(args.project, args.history)
        if args.tasks:
            _start_tasks(args.project, args.tasks)
            time.sleep(args.settle)
        peaks: dict[str, float] = {}
        for i in range(args.samples):
            for name, value in sample(args.project).items():
                peaks[name] = max(value, peaks.get(name, 0.0))
            if i + 1 < args.samples:
                time.sleep(args.interval)
    finally:
        if streams is not None:
            streams.stop()
        if args.tasks:
            _stop_tasks(args.project)
        if args.up and not args.keep:
            subprocess.run([*swarmlet, "down"], check=False)
    if not peaks:
        print("no swarmlet containers are running: bring a cluster up (swarmlet up) or pass --up")
        return 1
    if streams is not None:
        opened = ", ".join(f"{url} ({count} events)" for url, count in streams.events.items())
        print(f"web views held open: {opened or 'none (no manager publishes 8081)'}")
    others = {name: value for name, value in peaks.items() if re.search(r"-prometheus-\d+$", name)}
    for name in sorted(others):
        print(f"{name:28s} {others[name]:6.1f} MiB  (the cluster's Prometheus: not a node, no budget)")
        del peaks[name]
    for name in sorted(peaks):
        flag = "  OVER BUDGET" if peaks[name] > BUDGET_MIB else ""
        print(f"{name:28s} {peaks[name]:6.1f} MiB{flag}")
    values = list(peaks.values())
    print(f"node containers: {len(values)}  mean: {statistics.mean(values):.1f} MiB  "
          f"max: {max(values):.1f} MiB  budget: {BUDGET_MIB:.0f} MiB  "
          f"(largest of {args.samples} samples each)")
    return 0 if max(values) <= BUDGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
