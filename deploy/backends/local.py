"""The local backend: one node agent process per node, each on its own loopback address.

For machines without Docker. Each node listens on its own address of the cluster's block
(deploy/addresses.py, the same scheme as compose: manager i on 127.B.1.i, worker i on 127.B.2.i,
B = 0 for the default project), all with the standard ports (Linux routes the whole of
127.0.0.0/8 to the loopback interface, so every node can bind 2375, 2377, 7946 and 9323 on its
own address). Pid files, logs and data folders live under the
state folder (``local/``). Chaos is done with signals: stop is SIGTERM, kill SIGKILL, pause
SIGSTOP, unpause SIGCONT; disconnect and connect need a network per node, which processes on one
loopback interface do not have, so they are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from deploy.addresses import ENGINE_PORT, MAX_INDEX, parse_name
from deploy.backends.base import (
    BackendError,
    ClusterState,
    Layout,
    NodeHandle,
    natural_key,
    read_state,
    state_dir,
    write_state,
)

__all__ = ["LocalBackend", "NodeSpec", "node_spec", "node_specs"]

_CLUSTER_PORT = 2377
_GOSSIP_PORT = 7946
_METRICS_PORT = 9323
_WEB_PORT = 8081
_ENGINE_PORT = ENGINE_PORT
_MAX_NODES = MAX_INDEX
_STOP_WAIT = 3.0  # seconds a node has to exit after SIGTERM before it is killed


NodeSpec = dict[str, Any]
"""A node's record in the state file: hostname, role, addr, argv."""


def node_spec(layout: Layout, name: str, creds: pathlib.Path, data: pathlib.Path) -> NodeSpec:
    """The command line of the node ``name`` of ``layout``: it joins through every manager of it."""
    if layout.discover != "names":
        raise BackendError("the local backend's workers find the managers by name only")
    role, index = parse_name(name)
    addr = layout.addr(name)
    join = ",".join(f"{layout.addr(m)}:{_CLUSTER_PORT}" for m in layout.role_names("manager"))
    argv = [sys.executable, "-m", "nodeagent", f"--role={role}", f"--hostname={name}",
            f"--advertise-addr={addr}", f"--listen-addr={addr}", f"--join={join}",
            f"--data-dir={data / name}", f"--shared-volumes={data / 'shared-volumes'}"]
    if role == "manager" and index == 1 and not layout.founders and not layout.no_swarm:
        # manager1 creates the cluster: the root CA and the join tokens are made in its own data
        # folder; `up` reads the tokens back through its Engine API for the others, which wait.
        tokens = data / name / "swarm-tokens"
        argv += ["--bootstrap", f"--manager-token-file={tokens / 'manager_token'}",
                 f"--worker-token-file={tokens / 'worker_token'}"]
    elif role == "manager":
        argv += [f"--token-file={creds / 'manager_token'}",
                 f"--manager-token-file={creds / 'manager_token'}",
                 f"--worker-token-file={creds / 'worker_token'}"]
        if name in layout.founders:
            founders = ",".join(f"{f}={layout.addr(f)}:{_CLUSTER_PORT}" for f in layout.founders)
            argv.append(f"--initial-cluster={founders}")
        elif not layout.no_swarm:
            argv.append("--await-token")  # up writes the tokens once manager1 has made them
    else:
        argv.append(f"--token-file={creds / 'worker_token'}")
        if not layout.no_swarm:
            argv.append("--await-token")
    if layout.no_swarm:
        argv.append("--no-swarm")
    return {"hostname": name, "role": role, "addr": addr, "argv": argv}


def node_specs(
    managers: int, workers: int, creds: pathlib.Path, data: pathlib.Path, discover: str = "names",
    layout: Layout | None = None,
) -> list[NodeSpec]:
    """The command line of every node of a cluster with this many managers and workers (or of
    ``layout``'s nodes, when given)."""
    if layout is None:
        if not 1 <= managers <= _MAX_NODES or not 0 <= workers <= _MAX_NODES:
            raise BackendError(
                f"the local backend runs 1 to {_MAX_NODES} managers and 0 to {_MAX_NODES} workers"
            )
        layout = Layout.of(managers, workers, discover=discover)
    return [node_spec(layout, name, creds, data) for name in layout.names]


def _port_in_use(addr: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            # As the agent's servers do: connections of a stopped node in TIME_WAIT do not block
            # the port, a listening socket does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
        except OSError as e:
            return e.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def _proc_state(pid: int, mark: bytes = b"nodeagent") -> str:
    """"running", "paused" or "exited" for a pid, reaping it if it is our own exited child.

    ``mark`` must be in the process's command line (a node's own ``--data-dir=...``): a pid file
    left by an earlier run whose pid now belongs to another process, even another cluster's node
    agent, reads "exited", so nothing else is ever signalled."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return "exited"
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "exited"
    if b"nodeagent" not in cmdline or mark not in cmdline:
        return "exited"  # the pid was reused by something else
    code = stat.rsplit(")", 1)[1].split()[0]
    return {"T": "paused", "t": "paused", "Z": "exited", "X": "exited"}.get(code, "running")


_SOURCE = pathlib.Path(__file__).resolve().parents[2]


def _node_env(layout: Layout | None = None) -> dict[str, str]:
    """The nodes import this checkout's code: a relative PYTHONPATH (``.:proto``) would resolve
    against the node's own directory and fall back to whatever the virtualenv has installed.
    The layout's declared capacity goes to every node."""
    capacity = layout.capacity_env() if layout is not None else {}
    return {**os.environ, **capacity, "PYTHONPATH": f"{_SOURCE}{os.pathsep}{_SOURCE / 'proto'}"}


class LocalBackend:
    """Nodes as processes on 127.0.x.y."""

    name = "local"

    def __init__(self) -> None:
        self.home = state_dir() / "local"

    def _specs(self) -> list[NodeSpec]:
        state = read_state()
        if state is None or state.backend != self.name:
            return []
        nodes = state.extra.get("nodes")
        return [dict(n) for n in nodes] if isinstance(nodes, list) else []

    def _pid(self, hostname: str) -> int | None:
        try:
            return int((self.home / f"{hostname}.pid").read_text())
        except (OSError, ValueError):
            return None

    def check(self, layout: Layout) -> None:
        """Refuse, naming the port, when an address:port a node needs is taken (by another program)."""
        ours = {s["hostname"] for s in self._specs() if self._state(s["hostname"]) != "exited"}
        for spec in node_specs(0, 0, state_dir(), self.home, layout=layout):
            if spec["hostname"] in ours:
                continue  # this cluster's own node, still running: `up` leaves it be
            ports = [(_GOSSIP_PORT, socket.SOCK_STREAM, "gossip"),
                     (_GOSSIP_PORT, socket.SOCK_DGRAM, "gossip"),
                     (_METRICS_PORT, socket.SOCK_STREAM, "metrics"),
                     (_ENGINE_PORT, socket.SOCK_STREAM, "Engine API")]
            if spec["role"] == "manager":
                ports.append((_CLUSTER_PORT, socket.SOCK_STREAM, "cluster"))
                ports.append((_WEB_PORT, socket.SOCK_STREAM, "web view"))
            for port, kind, what in ports:
                if _port_in_use(spec["addr"], port, kind):
                    proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
                    raise BackendError(
                        f"port {spec['addr']}:{port}/{proto} ({what} port of {spec['hostname']}) is already "
                        "in use: stop what uses it (`swarmlet down` if it is an earlier cluster)"
                    )

    def prepare(self, progress: Callable[[str], None]) -> str | None:
        """Nothing to build: the nodes run from this virtual environment."""
        progress("local processes need no images")
        return None

    def agent_help(self, layout: Layout) -> str:
        """``python -m nodeagent --help`` from this environment."""
        proc = subprocess.run([sys.executable, "-m", "nodeagent", "--help"], capture_output=True, text=True,
                              timeout=60, check=False)
        return proc.stdout + proc.stderr

    def _layout(self) -> Layout | None:
        state = read_state()
        return state.layout if state is not None else None

    def _spawn(self, spec: NodeSpec, layout: Layout | None = None) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / f"{spec['hostname']}.log").open("ab")
        with log:
            proc = subprocess.Popen(
                spec["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.home, env=_node_env(layout or self._layout()),
            )
        (self.home / f"{spec['hostname']}.pid").write_text(f"{proc.pid}\n")

    def _record(self, layout: Layout, specs: list[NodeSpec]) -> None:
        """The layout and the process table into the state file (the rest of it kept)."""
        state = read_state() or ClusterState(self.name, 0, 0)
        extra = dict(state.extra, nodes=specs)
        write_state(ClusterState(self.name, state.managers, state.workers, extra).with_layout(layout))

    def start_cluster(self, layout: Layout) -> None:
        """Start every node's process; the state file lists them so later commands find them."""
        specs = node_specs(0, 0, state_dir(), self.home, layout=layout)
        wanted = {s["hostname"] for s in specs}
        running = set()
        for old in self._specs():
            if self._state(old["hostname"]) == "exited":
                continue
            if old["hostname"] in wanted:
                running.add(old["hostname"])
            else:
                self._stop(old["hostname"])  # the cluster shrank: this node is no longer wanted
        self._record(layout, specs)
        for spec in specs:
            if spec["hostname"] not in running:
                self._spawn(spec, layout)

    def start_node(self, layout: Layout, name: str) -> None:
        """A new process for the node ``name``; the others are left be."""
        spec = node_spec(layout, name, state_dir(), self.home)
        others = [s for s in self._specs() if s["hostname"] != name]
        self._record(layout, [*others, spec])
        shutil.rmtree(self.home / name, ignore_errors=True)  # a former node of that name: fresh data
        self._spawn(spec)

    def remove_node(self, layout: Layout, node: NodeHandle) -> None:
        """Stop the node's process; remove its data folder, log and pid file."""
        self._stop(node.hostname)
        self._record(layout, [s for s in self._specs() if s["hostname"] != node.hostname])
        shutil.rmtree(self.home / node.hostname, ignore_errors=True)
        for suffix in (".log", ".pid"):
            (self.home / f"{node.hostname}{suffix}").unlink(missing_ok=True)

    def _state(self, hostname: str) -> str:
        pid = self._pid(hostname)
        return "exited" if pid is None else _proc_state(pid, self._mark(hostname))

    def nodes(self) -> list[NodeHandle]:
        """The recorded processes, managers first."""
        found = []
        for spec in self._specs():
            addr = spec["addr"]
            manager = spec["role"] == "manager"
            found.append(NodeHandle(
                hostname=spec["hostname"], role=spec["role"], state=self._state(spec["hostname"]),
                ref=spec["hostname"], aliases=(addr,),
                control_addr=f"{addr}:{_CLUSTER_PORT}" if manager else None,
                metrics_url=f"http://{addr}:{_METRICS_PORT}/metrics",
                docker_host=f"tcp://{addr}:{_ENGINE_PORT}", addr=addr,
                web_url=f"http://{addr}:{_WEB_PORT}/" if manager else None,
                admin_addr=f"{addr}:{_GOSSIP_PORT}",
            ))
        found.sort(key=lambda n: (n.role != "manager", natural_key(n.hostname)))
        return found

    def _mark(self, hostname: str) -> bytes:
        """What the command line of this cluster's node ``hostname`` holds and no other's does."""
        return f"--data-dir={self.home / hostname}".encode()

    def _signal(self, hostname: str, sig: signal.Signals) -> None:
        pid = self._pid(hostname)
        if pid is None or _proc_state(pid, self._mark(hostname)) == "exited":
            raise BackendError(f"{hostname} is not running")
        os.kill(pid, sig)

    def _stop(self, hostname: str) -> None:
        pid = self._pid(hostname)
        if pid is None or _proc_state(pid, self._mark(hostname)) == "exited":
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            os.kill(pid, signal.SIGTERM)
        mark = self._mark(hostname)
        deadline = time.monotonic() + _STOP_WAIT
        while time.monotonic() < deadline and _proc_state(pid, mark) != "exited":
            time.sleep(0.05)
        if _proc_state(pid, mark) != "exited":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _proc_state(pid, mark) != "exited" and time.monotonic() < deadline + 2:
                time.sleep(0.05)

    def chaos(self, action: str, node: NodeHandle) -> str:
        """Signals to the node's process; disconnect and connect are not possible here."""
        spec = next(s for s in self._specs() if s["hostname"] == node.hostname)
        if action == "stop":
            self._stop(node.hostname)
        elif action == "kill":
            self._signal(node.hostname, signal.SIGKILL)
        elif action == "pause":
            self._signal(node.hostname, signal.SIGSTOP)
        elif action == "unpause":
            self._signal(node.hostname, signal.SIGCONT)
        elif action in ("start", "restart"):
            if action == "restart":
                self._stop(node.hostname)
            if self._state(node.hostname) != "exited":
                raise BackendError(f"{node.hostname} is already running")
            self._spawn(spec)
        elif action in ("disconnect", "connect"):
            raise BackendError(
                f"{action} is not supported by the local backend: its nodes share one loopback "
                f"interface. Cut its links instead: swarmlet chaos partition {node.hostname} --from NODE,..."
            )
        else:
            raise BackendError(f"unknown chaos action {action!r}")
        return f"{action} {node.hostname} (pid {self._pid(node.hostname)})"

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        """The node's log file, then (with follow) what is appended to it."""
        path = self.home / f"{node.hostname}.log"
        if not path.exists():
            return
        with path.open("rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
            yield from (lines[-tail:] if tail else lines) if tail != 0 else []
            while follow:
                chunk = f.readline()
                if chunk:
                    yield chunk.decode(errors="replace").rstrip("\n")
                else:
                    time.sleep(0.2)

    def prometheus_url(self, timeout: float = 60.0) -> str | None:
        """None: local nodes have no Prometheus of their own (each node's /metrics still answers)."""
        return None

    def down(self) -> list[str]:
        """Stop every process and remove the data folders, logs and pid files."""
        removed = []
        for spec in self._specs():
            self._stop(spec["hostname"])
            removed.append(spec["hostname"])
        shutil.rmtree(self.home, ignore_errors=True)
        return removed
