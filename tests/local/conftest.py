"""Node agents as real processes on 127.0.0.x, for the local tests.

``agents(n, ...)`` starts ``n`` agents (``python -m nodeagent``), each on its own loopback address
with free ports, its own data directory and a log file under the test's tmp_path. Every agent
the fixture started is killed when the test ends, whatever happened. ``blank_engines(*names)``
starts nodes in no swarm (``--no-swarm``), as Docker engines before ``docker swarm init``.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from _docker_cli import docker_info
from _procs_manager import START_S, Cluster, wait_until
from swarmlet.v1 import transport_pb2, transport_pb2_grpc

from nodeagent import tls

ROOT = pathlib.Path(__file__).resolve().parents[2]
_generated: Any = transport_pb2_grpc


_NOTABLE = ("WARNING", "ERROR", "CRITICAL", "leader is now", "---- start", "Traceback")
"""The lines of a node's log that explain most failures: warnings (a held event loop among them),
errors, Raft's leader changes and the process's starts."""


def notable_lines(log: pathlib.Path, limit: int = 40) -> list[str]:
    """The last ``limit`` notable lines of one node's log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines if any(mark in line for mark in _NOTABLE)][-limit:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed local test's report ends with each node's notable log lines (a CI run shows only
    its output, and the node logs are gone with the machine)."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, pathlib.Path):
        parts = [f"== {log.name}\n" + "\n".join(notable_lines(log)) for log in sorted(tmp_path.glob("*.log"))]
        if parts:
            report.sections.append(("node logs: warnings, errors, leader changes", "\n".join(parts)))
    return report


def agent_env() -> dict[str, str]:
    """The environment an agent process runs with: the repository and its protos importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLET_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def loopback_block(count: int) -> list[str]:
    """``count`` addresses in a random 127.a.b.0/24, so that parallel test runs do not meet."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    a, b = rng.randrange(1, 255), rng.randrange(1, 255)
    return [f"127.{a}.{b}.{i + 1}" for i in range(count)]


def free_port(host: str) -> int:
    """A port free for both TCP and UDP on ``host`` (the gossip port needs both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {host}")


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as exc:  # not up yet
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@dataclass
class Agent:
    """One agent process and how to look at it."""

    hostname: str
    ip: str
    gossip_port: int
    metrics_port: int
    cluster_port: int
    data_dir: pathlib.Path
    log_path: pathlib.Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def gossip_address(self) -> str:
        """``ip:gossip_port``."""
        return f"{self.ip}:{self.gossip_port}"

    def start(self) -> None:
        """Start (or restart) the process, logging to :attr:`log_path`."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=agent_env(), cwd=ROOT
            )

    @property
    def node_id(self) -> str:
        """The node id the agent keeps in its data directory."""
        return (self.data_dir / "node_id").read_text().strip()

    def metrics_text(self) -> str:
        """The raw ``/metrics`` page."""
        url = f"http://{self.ip}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value from ``/metrics`` (0 if the series does not exist yet)."""
        wanted = name
        if labels:
            wanted += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if _normalise(key) == wanted:
                return float(value)
        return 0.0

    def admin(self) -> Any:
        """A stub for the agent's AgentAdmin service."""
        if self._channel is None:
            self._channel = tls.channel(self.gossip_address, manager=False, sync=True)
        return _generated.AgentAdminStub(self._channel)

    def members(self) -> dict[str, str]:
        """Member name (node id) -> state, as this agent sees it."""
        reply = self.admin().Members(transport_pb2.MembersRequest(), timeout=2)
        return {m.name: m.state for m in reply.members}

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def close(self) -> None:
        """Kill the process if it still runs and close the admin channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        """What the agent logged (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _normalise(key: str) -> str:
    """``name{b="2",a="1"}`` with its labels sorted, to compare series."""
    name, brace, rest = key.partition("{")
    if not brace:
        return key
    labels = sorted(part for part in rest.rstrip("}").split(",") if part)
    return name + "{" + ",".join(labels) + "}"


AgentFactory = Callable[..., list[Agent]]



@pytest.fixture
def agents(tmp_path: pathlib.Path) -> Iterator[AgentFactory]:
    """``agents(n, *extra_flags, seeds=1, wait=True, role="worker")``: start ``n`` agents.

    The first ``seeds`` agents are everyone's gossip seeds (0: no ``--gossip-join``). With ``wait``
    the call returns once every agent answers on /metrics.
    """
    started: list[Agent] = []
    tls.set_enabled(True)  # agents in no swarm: this process talks to them with a join certificate

    def start(n: int, *extra: str, seeds: int = 1, wait: bool = True, role: str = "worker") -> list[Agent]:
        ips = loopback_block(n)
        batch: list[Agent] = []
        for i, ip in enumerate(ips):
            hostname = f"node{len(started) + i + 1}"
            ports: set[int] = set()
            while len(ports) < 3:
                ports.add(free_port(ip))
            gossip_port, metrics_port, cluster_port = sorted(ports)
            data_dir = tmp_path / hostname
            log_path = tmp_path / f"{hostname}.log"
            batch.append(Agent(hostname, ip, gossip_port, metrics_port, cluster_port, data_dir, log_path, []))
        seed_list = ",".join(a.gossip_address for a in batch[:seeds])
        for agent in batch:
            agent.argv = [
                sys.executable, "-m", "nodeagent", "--role", role, "--hostname", agent.hostname,
                "--advertise-addr", agent.ip, "--listen-addr", agent.ip,
                "--gossip-port", str(agent.gossip_port), "--metrics-port", str(agent.metrics_port),
                "--cluster-port", str(agent.cluster_port), "--data-dir", str(agent.data_dir),
                *(["--gossip-join", seed_list] if seeds else []), *extra,
            ]
            started.append(agent)
            agent.start()
        if wait:
            for agent in batch:
                try:
                    wait_for(lambda a=agent: a.metrics_text(), 20, f"{agent.hostname} /metrics")  # type: ignore[misc]
                except AssertionError:
                    raise AssertionError(f"{agent.hostname} did not come up:\n{agent.log()}") from None
        return batch

    try:
        yield start
    finally:
        for agent in started:
            agent.close()


@pytest.fixture
def blank_engines(tmp_path: pathlib.Path) -> Iterator[Callable[..., Cluster]]:
    """``blank_engines(*names, time_scale=1.0)``: a :class:`Cluster` of nodes started with
    ``--no-swarm`` under those names, returned once each says ``inactive`` to ``docker info``
    (tests that use it need the docker CLI); every process is killed when the test ends."""
    started: list[Cluster] = []

    def start(*names: str, time_scale: float = 1.0) -> Cluster:
        cluster = Cluster(tmp_path, time_scale=time_scale)
        started.append(cluster)
        for name in names:
            cluster.add_blank(name)
        cluster.start_all()
        for node in cluster.nodes.values():
            try:
                wait_until(lambda n=node: docker_info(tmp_path, n.host, "Swarm.LocalNodeState") == "inactive",  # type: ignore[misc]
                           timeout=START_S, what=f"{node.name} inactive")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{cluster.logs()}") from None
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop_all()
