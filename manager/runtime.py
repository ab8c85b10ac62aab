"""The manager role: Raft, the replicated store, the dispatcher and the control API on port 2377.

The node agent process finds this class through the ``swarmlet.roles`` entry point and calls
:meth:`ManagerRuntime.start` then :meth:`ManagerRuntime.stop`. Everything a manager serves goes
through one ``grpc.aio`` server on ``listen_addr:cluster_port``:

* ``/swarmlet.v1.RaftTransport/Stream``: Raft messages between managers (:mod:`manager.state.raft.shell`);
* ``swarmlet.v1.Dispatcher``: joins and agent sessions (:mod:`manager.dispatcher.server`);
* ``swarmlet.v1.Control``: what ``swarmlet status`` and the tests ask (:mod:`manager.controlapi.server`).

The store is the Raft state machine: every write is a batch proposed by the leader, and every
manager applies the same batches in the same order, so reads (``node ls``) come from the local store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import pathlib
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
import prometheus_client

from manager.state.machine import StoreMachine
from manager.state.raft.config import RaftConfig
from manager.state.raft.shell import SERVER_OPTIONS as RAFT_SERVER_OPTIONS
from manager.state.raft.shell import RaftShell, ShellConfig, raft_transport_handler
from manager.state.store import Store
from manager.state.store.commands import Op, encode_batch
from manager.state.store.errors import StoreError
from manager.state.store.objects import format_timestamp

__all__ = ["ENGINE_VERSION", "ManagerContext", "ManagerRuntime", "StoreMachine"]

log = logging.getLogger(__name__)


def _engine_version() -> str:
    try:
        return importlib.metadata.version("swarmlet")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


ENGINE_VERSION = _engine_version()
"""What ``docker node ls`` shows as ENGINE VERSION: swarmlet's own version."""


class _Options(Protocol):
    hostname: str
    advertise_addr: str
    listen_addr: str
    cluster_port: int
    data_dir: str
    bootstrap: bool
    join: tuple[str, ...]
    manager_token_file: str | None
    worker_token_file: str | None
    time_scale: float


class ManagerContext(Protocol):
    """What the runtime needs from the node agent's NodeContext (duck-typed, so tests can fake it)."""

    options: Any
    node_id: str
    hostname: str
    registry: prometheus_client.CollectorRegistry
    gossip: Any


def _read_token(path: str | None) -> str:
    if not path:
        return ""
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"cannot read the token file {path}: {exc.strerror}") from None


class ManagerRuntime:
    """One manager: constructed with the node's context, then ``start()`` and ``stop()``."""

    def __init__(self, context: ManagerContext) -> None:
        """Nothing is opened here; :meth:`start` does it."""
        self.context = context
        self.options: _Options = context.options
        self.node_id = context.node_id
        self.hostname = context.hostname
        self.cluster_address = f"{self.options.advertise_addr}:{self.options.cluster_port}"
        self.time_scale = float(getattr(self.options, "time_scale", 1.0) or 1.0)
        self.store = Store()
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        self.shell: RaftShell | None = None
        self.server: grpc.aio.Server | None = None
        self.dispatcher: Any = None
        self.control: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self.manager_token = _read_token(getattr(self.options, "manager_token_file", None))
        self.worker_token = _read_token(getattr(self.options, "worker_token_file", None))
        self._known_managers: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open Raft storage, bind the cluster port and serve Raft, the dispatcher and the control API."""
        from swarmlet.v1 import control_pb2_grpc, dispatcher_pb2_grpc

        from manager.controlapi.server import ControlServer
        from manager.dispatcher.server import Dispatcher

        data_dir = pathlib.Path(self.options.data_dir) / "manager"
        data_dir.mkdir(parents=True, exist_ok=True)
        raft_config = RaftConfig.default().scaled(self.time_scale)
        self.shell = RaftShell(
            self.node_id,
            self.cluster_address,
            data_dir,
            StoreMachine(self.store),
            bootstrap=bool(self.options.bootstrap),
            config=ShellConfig(),
            raft_config=raft_config,
            registry=self.context.registry,
            rng=self.rng,
            on_apply=self._on_apply,
        )
        self.dispatcher = Dispatcher(self)
        self.control = ControlServer(self)
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *RAFT_SERVER_OPTIONS])
        server.add_generic_rpc_handlers((raft_transport_handler(lambda: self.shell),))
        dispatcher_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, server)  # type: ignore[no-untyped-call]
        control_pb2_grpc.add_ControlServicer_to_server(self.control, server)  # type: ignore[no-untyped-call]
        bind = f"{self.options.listen_addr}:{self.options.cluster_port}"
        if server.add_insecure_port(bind) == 0:
            raise RuntimeError(f"cannot listen on {bind} (--cluster-port)")
        await self.shell.start()
        await server.start()
        self.server = server
        self._on_apply(self.shell.applied)
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
        if self.options.bootstrap:
            self._tasks.append(asyncio.create_task(self._ensure_cluster(), name="bootstrap"))
        log.info("manager %s serving on %s", self.node_id, bind)

    async def stop(self) -> None:
        """Stop serving and close storage, quickly (the process must exit within a second)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop(0.2)
            self.server = None
        if self.shell is not None:
            await self.shell.stop()

    # ------------------------------------------------------------------ store access

    async def write(self, ops: Sequence[Op], timeout: float = 5.0) -> Any:
        """Propose one batch and return its ApplyResult once applied; raise its StoreError if refused.

        Raises the shell's NotLeaderError on a follower and NoLeaderError without a leader.
        """
        data = encode_batch(list(ops), now=format_timestamp(time.time()))
        assert self.shell is not None
        result = await self.shell.propose(data, timeout)
        if result is not None and not getattr(result, "ok", True):
            error = getattr(result, "error", None)
            if isinstance(error, BaseException):
                raise error
            raise StoreError(str(error))
        return result

    def cluster(self) -> Any:
        """The Cluster object, or None before the bootstrap manager has written it."""
        found = self.store.find("cluster")
        return found[0] if found else None

    def _on_apply(self, _index: int) -> None:
        # Managers learn each other's cluster addresses from the Node objects, so that any two
        # of them can reach each other after the one that introduced them is gone.
        if self.shell is None:
            return
        for node in self.store.find("node"):
            ms = node.extra.get("ManagerStatus")
            if isinstance(ms, dict) and ms.get("Addr") and node.id != self.node_id:
                addr = str(ms["Addr"])
                if self._known_managers.get(node.id) != addr:
                    self._known_managers[node.id] = addr
                    self.shell.set_peer_address(node.id, addr)

    async def _ensure_cluster(self) -> None:
        """The bootstrap manager writes the Cluster object (with the join tokens) once it leads."""
        from manager.state.store.commands import Create
        from manager.state.store.objects import default_cluster_spec, new_id

        assert self.shell is not None
        while True:
            if self.cluster() is not None:
                return
            if self.shell.is_leader:
                tokens = {"Worker": self.worker_token, "Manager": self.manager_token}
                op = Create("cluster", new_id(self.rng), default_cluster_spec(), {}, {"JoinTokens": tokens})
                try:
                    await self.write([op])
                    log.info("created the cluster")
                    return
                except Exception as exc:  # lost leadership or a race: look again
                    log.info("bootstrap: creating the cluster failed (%s); retrying", exc)
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------- a node without gossip


class _NoGossip:
    """Stands in for gossip where a node runs without it (tests and benchmarks)."""

    def members(self) -> list[Any]:
        return []

    def subscribe(self, callback: Any) -> None:
        return None

    def set_meta(self, **changes: Any) -> None:
        return None


class _Context:
    def __init__(self, options: Any, node_id: str, registry: prometheus_client.CollectorRegistry) -> None:
        self.options = options
        self.node_id = node_id
        self.hostname = options.hostname
        self.registry = registry
        self.gossip = _NoGossip()


def _node_id(data_dir: str) -> str:
    path = pathlib.Path(data_dir) / "node_id"
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if len(existing) == 25:
        return existing
    from manager.state.store.objects import new_id

    node_id = new_id(random.Random(int.from_bytes(os.urandom(16), "big")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(node_id + "\n")
    return node_id


async def _serve_node(options: Any) -> int:
    import signal

    from nodeagent.agent.session import AgentSession, JoinRefused

    context = _Context(options, _node_id(options.data_dir), prometheus_client.CollectorRegistry())
    runtime = ManagerRuntime(context) if options.role == "manager" else None
    if runtime is not None:
        await runtime.start()
    session = AgentSession(context, lambda: list(options.join))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    session_task = asyncio.create_task(session.run())
    stopper = asyncio.create_task(stop.wait())
    code = 0
    done, _ = await asyncio.wait({session_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if session_task in done and session_task.exception() is not None:
        exc = session_task.exception()
        if isinstance(exc, JoinRefused):
            print(f"Error response from daemon: {exc}", flush=True)
            code = 3
        else:
            log.error("session failed: %r", exc)
            code = 1
    await session.stop()
    session_task.cancel()
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await session_task
    if runtime is not None:
        await runtime.stop()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m manager.runtime [node agent flags]``: a node with no gossip and no metrics server.

    Takes the node agent's flags (see ``python -m nodeagent --help``); a manager serves Raft, the
    dispatcher and the control API and keeps its own agent session, a worker keeps only its
    session. For local tests and benchmarks that need managers without the rest of the agent.
    """
    import sys

    from nodeagent.options import OptionsError, parse_options

    try:
        options = parse_options(list(sys.argv[1:] if argv is None else argv), os.environ)
    except OptionsError as exc:
        print(f"swarmlet: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=options.log_level.upper(),
        format=f"%(asctime)s {options.hostname} %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(_serve_node(options))
    except RuntimeError as exc:
        print(f"swarmlet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
