"""Starting managers and workers as processes on 127.0.0.x for the manager runtime's local tests.

Each node runs on its own loopback address, with its data directory and log file under the test's
tmp_path, through the one node entry point, ``python -m nodeagent`` (gossip, metrics, and the
manager role through its entry point), as in containers.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from manager.ca.tokens import ClusterCredentials
from nodeagent import tls

__all__ = ["START_S", "Cluster", "NodeProc", "free_port", "loopback_hosts", "running", "wait_until"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
T = TypeVar("T")

START_S = 90.0
"""How long tests wait for started (or restarted) node processes to settle: Ready, a leader,
the voters. A deadline only: the waits end as soon as the state is reached. On an idle machine
that takes seconds; at load average 20 on 2 cores each process took 12 to 15 s to start serving
(interpreter, imports, certificates), and 30 s deadlines failed bring-ups (README, "Wall-clock
bounds")."""


def loopback_hosts(count: int) -> list[str]:
    """``count`` distinct 127.x.y.z addresses, random enough that parallel test runs do not meet."""
    base = random.Random(os.getpid() ^ time.time_ns()).randrange(1, 250)
    third = random.Random(time.time_ns()).randrange(1, 250)
    return [f"127.{base}.{third}.{i + 10}" for i in range(count)]


def free_port(host: str) -> int:
    """A TCP port nothing listens on at ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: {last_error!r}")
        time.sleep(interval)


@dataclass
class NodeProc:
    """One node process; ``start`` again after a kill restarts it with the same data."""

    name: str
    host: str
    port: int
    role: str
    args: list[str]
    workdir: pathlib.Path
    module: str = "nodeagent"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def target(self) -> str:
        """The node's cluster address (managers)."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / f"{self.name}.log"

    def start(self, extra: Sequence[str] = ()) -> None:
        self.starts += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
        env.pop("SWARMLET_ROLE", None)
        with open(self.log_path, "ab") as out:
            out.write(f"---- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args, *extra],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Cluster:
    """Managers and workers of one test, with the cluster's tokens."""

    workdir: pathlib.Path
    time_scale: float = 1.0
    nodes: dict[str, NodeProc] = field(default_factory=dict)
    credentials: ClusterCredentials = field(default_factory=ClusterCredentials.create)

    def __post_init__(self) -> None:
        self.secrets = self.workdir / "secrets"
        self.secrets.mkdir(parents=True, exist_ok=True)
        # The tokens, and the root CA they were made for (the bootstrapping manager takes it over).
        self.credentials.write(self.secrets)
        # This test process talks to the managers' gRPC ports as an operator holding a manager
        # certificate from that CA.
        tls.use_operator_certificate(self.credentials.ca_cert_pem, self.credentials.ca_key_pem)

    def add_managers(self, count: int) -> list[NodeProc]:
        hosts = loopback_hosts(count)
        ports = [free_port(h) for h in hosts]
        join = ",".join(f"{h}:{p}" for h, p in zip(hosts, ports, strict=True))
        made = []
        for i, (host, port) in enumerate(zip(hosts, ports, strict=True)):
            name = f"manager{i + 1}"
            args = [
                *self._common(name, host, "manager"),
                "--cluster-port", str(port),
                "--join", join,
                "--token-file", str(self.secrets / "manager_token"),
                "--manager-token-file", str(self.secrets / "manager_token"),
                "--worker-token-file", str(self.secrets / "worker_token"),
            ]  # fmt: skip
            if i == 0:
                args.append("--bootstrap")
            node = NodeProc(name, host, port, "manager", args, self.workdir)
            self.nodes[name] = node
            made.append(node)
        return made

    def add_worker(self, name: str, token: str | None = "worker") -> NodeProc:
        host = loopback_hosts(1)[0]
        join = ",".join(n.target for n in self.managers())
        args = [*self._common(name, host, "worker"), "--join", join]
        if token is not None:
            path = self.secrets / f"{name}_token"
            path.write_text((self.credentials.worker_token if token == "worker" else token) + "\n")
            args += ["--token-file", str(path)]
        node = NodeProc(name, host, 0, "worker", args, self.workdir)
        self.nodes[name] = node
        return node

    def add_blank(self, name: str) -> NodeProc:
        """A node started with ``--no-swarm``: in no swarm until ``docker swarm init`` or ``join``."""
        host = loopback_hosts(1)[0]
        port = free_port(host)
        common = [a for a in self._common(name, host, "worker") if a not in ("--role", "worker")]
        args = [*common, "--no-swarm", "--cluster-port", str(port)]
        node = NodeProc(name, host, port, "blank", args, self.workdir)
        self.nodes[name] = node
        return node

    def _common(self, name: str, host: str, role: str) -> list[str]:
        return [
            # Swarm's ports, as in containers: every node has an address of its own, and gossip
            # joins a seed at the seed's host on the same gossip port.
            "--gossip-port", "7946",
            "--metrics-port", "9323",
            "--role", role,
            "--hostname", name,
            "--advertise-addr", host,
            "--listen-addr", host,
            "--data-dir", str(self.workdir / name),
            "--shared-volumes", str(self.workdir / "shared-volumes"),  # the cluster's, not the host's
            "--time-scale", str(self.time_scale),
            "--log-level", "info",
        ]  # fmt: skip

    def managers(self) -> list[NodeProc]:
        return [n for n in self.nodes.values() if n.role == "manager"]

    def start_all(self) -> None:
        for node in self.nodes.values():
            node.start()

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.kill(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"==== {n.name}\n{n.tail()}" for n in self.nodes.values())


@contextmanager
def running(tmp_path: pathlib.Path, managers: int, workers: Sequence[str] = ()) -> Iterator[Cluster]:
    """``managers`` managers and the named workers, started; every process killed at the end."""
    cluster = Cluster(tmp_path)
    cluster.add_managers(managers)
    for name in workers:
        cluster.add_worker(name)
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.stop_all()
