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
import datetime
import json
import logging
import os
import pathlib
import random
import shutil
import time
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
import prometheus_client

from manager.component import ComponentMetrics
from manager.dispatcher.liveness import DEFAULT_HEARTBEAT_PERIOD
from manager.keysync import KeySync
from manager.state.machine import StoreMachine
from manager.state.raft.config import RaftConfig
from manager.state.raft.keyfile import KEY_FILE, RaftKeys
from manager.state.raft.shell import SERVER_OPTIONS as RAFT_SERVER_OPTIONS
from manager.state.raft.shell import RaftShell, ShellConfig, raft_transport_handler
from manager.state.store import Store
from manager.state.store.commands import Op, encode_batch
from manager.state.store.errors import StoreError
from manager.state.store.objects import default_cluster_spec, format_timestamp
from manager.state.store.watch import Watch
from manager.swarm_metrics import SwarmManagerMetrics
from nodeagent import tls
from nodeagent.identity import VERSION, founders, founders_cluster_id, token_digest
from nodeagent.membership import INIT_SPEC_FILE
from nodeagent.transport.faults import LinkFaults
from nodeagent.transport.planes import FaultGate

__all__ = ["ENGINE_VERSION", "ManagerContext", "ManagerRuntime", "StoreMachine", "running_cluster_spec"]

log = logging.getLogger(__name__)


ENGINE_VERSION = VERSION
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


def running_cluster_spec(raft: RaftConfig, heartbeat_period: float) -> dict[str, Any]:
    """The Cluster spec the bootstrap manager writes: Docker's defaults, with the timing running.

    Spec.Raft's ticks and log sizes are the RaftConfig every manager runs, and
    Spec.Dispatcher.HeartbeatPeriod (nanoseconds, as Docker) is the period agents beat at, both
    after the time scale: what the store shows is what runs. The dispatcher reads the period (and
    from it the grace before a node is marked down) back from the spec, so a write to the Cluster
    object changes both; Raft's ticks are fixed when the cluster is created.
    """
    spec = default_cluster_spec()
    spec["Raft"].update(
        {
            "ElectionTick": raft.election_ticks,
            "HeartbeatTick": raft.heartbeat_ticks,
            "SnapshotInterval": raft.snapshot_every,
            "LogEntriesForSlowFollowers": raft.keep_after_snapshot,
        }
    )
    spec["Dispatcher"]["HeartbeatPeriod"] = round(heartbeat_period * 1e9)
    return spec


def _wipe(data_dir: pathlib.Path) -> None:
    """Delete a retired manager's data: renamed first (atomic), so a crash never leaves half of it."""
    if not data_dir.exists():
        return
    retired = data_dir.with_name(f"{data_dir.name}.retired-{time.time_ns()}")
    os.replace(data_dir, retired)
    shutil.rmtree(retired, ignore_errors=True)


def _read_token(path: str | None) -> str:
    if not path:
        return ""
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"cannot read the token file {path}: {exc.strerror}") from None


STORE_HISTORY = 256
"""Recent changes the store keeps for a watch that starts in the past (``Store.watch(from_index=)``).
No manager component watches from the past (each reads the store, then watches from now on), so
a short history is enough; the store's default of 10,000 kept every version of every object
written lately (each task status report is one), 10-15 MiB of a manager's memory late in a long
session."""


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
        self.store = Store(history=STORE_HISTORY)
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        self.shell: RaftShell | None = None
        self.server: grpc.aio.Server | None = None
        self.dispatcher: Any = None
        self.task_dispatcher: Any = None
        self.control: Any = None
        self.engine_api: Any = None
        self.web: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.leader_harnesses: list[Any] = []  # (ManagerHarness, its task) per leader component
        self._write_lock = asyncio.Lock()
        self.manager_token = ""
        self.worker_token = ""
        from manager.ca.service import ClusterCA

        self.ca = ClusterCA(self)
        self.cluster_id = ""
        self._made_ca_key: pathlib.Path | None = None
        self._known_managers: dict[str, str] = {}
        self._node_watch: Watch | None = None
        self.keys: RaftKeys | None = None
        self._key_sync: KeySync | None = None
        self._serving = asyncio.Event()
        """Set once the role serves (at start, or after ``docker swarm unlock``)."""
        self.raft_config = RaftConfig.default().scaled(self.time_scale)
        self.heartbeat_period = DEFAULT_HEARTBEAT_PERIOD * self.time_scale
        self.faults: LinkFaults | None = getattr(context, "faults", None)
        """The node's injected link faults (``swarmlet chaos``): Raft, forwarded writes and the
        control API apply them (:mod:`nodeagent.transport.planes`)."""
        self.component_metrics = ComponentMetrics(context.registry)
        context.registry.register(SwarmManagerMetrics(self))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open Raft's keys and storage, bind the cluster port and serve Raft, the dispatcher and
        the control API; or, when the keys are autolocked, wait locked for :meth:`unlock`."""
        self._load_tokens()
        data_dir = pathlib.Path(self.options.data_dir) / "manager"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = RaftKeys(data_dir / "raft" / KEY_FILE)
        await asyncio.to_thread(self.keys.load)
        if self.keys.locked:
            from manager.engineapi.locked import LockedManagerApi

            engine = getattr(self.context, "engine_api", None)
            if engine is not None:
                engine.attach(LockedManagerApi(self))
            log.warning("manager %s is locked (autolock): it takes no part in the swarm until "
                        "`docker swarm unlock` gives it the unlock key", self.node_id)
            return
        await self._start_unlocked()
        self._serving.set()

    @property
    def locked(self) -> bool:
        """Whether this manager waits for its unlock key (autolock) and serves nothing yet."""
        return self.keys is not None and self.keys.locked

    async def unlock(self, unlock_key: bytes) -> None:
        """``docker swarm unlock``: open the data key with ``unlock_key``, then start serving.

        Raises :class:`InvalidUnlockKey` (nothing changes) for a key that does not open it, and
        RuntimeError if this manager is not locked.
        """
        if self.keys is None or not self.keys.locked:
            raise RuntimeError("this manager is not locked")
        await asyncio.to_thread(self.keys.unlock, unlock_key)
        log.info("manager %s unlocked", self.node_id)
        await self._start_unlocked()
        self._serving.set()

    async def wait_unlocked(self) -> None:
        """Return once this manager serves: at once unless it is locked, else after the unlock.

        The node's agent session waits for it (nodeagent.membership): a locked Swarm manager runs
        no agent either, so it sends no heartbeat, and the other managers see it Unreachable and
        then Down, as a real Swarm shows a locked manager."""
        await self._serving.wait()

    async def _start_unlocked(self) -> None:
        from swarmlet.v1 import control_pb2_grpc, dispatcher_pb2_grpc

        from manager.ca.service import CertificateGuard, NodeCAServicer
        from manager.controlapi.server import ControlServer
        from manager.dispatcher.server import Dispatcher
        from manager.dispatcher.tasks import TaskDispatcher

        assert self.keys is not None
        data_dir = pathlib.Path(self.options.data_dir) / "manager"
        data_dir.mkdir(parents=True, exist_ok=True)
        founding = self._founders()
        self.shell = RaftShell(
            self.node_id,
            self.cluster_address,
            data_dir,
            StoreMachine(self.store, self.context.registry),
            bootstrap=bool(self.options.bootstrap),
            voters=tuple(sorted(founding)),
            peers=founding or None,
            campaign_first=bool(founding) and next(iter(founding)) == self.node_id,
            config=ShellConfig(),
            raft_config=self.raft_config,
            registry=self.context.registry,
            rng=self.rng,
            keys=self.keys,
            faults=FaultGate(self.faults, "raft"),
        )
        # Before the log is replayed, so that every Node object it holds is seen.
        self._node_watch = self.store.watch(["node"], on_change=self._on_node_change)
        self._key_sync = KeySync(self.keys, self.store)
        self.dispatcher = Dispatcher(self)
        self.control = ControlServer(self)
        self.task_dispatcher = TaskDispatcher(self)
        if self.options.bootstrap or founding:
            self._bootstrap_ca(founding=bool(founding))
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *RAFT_SERVER_OPTIONS],
                                 interceptors=[CertificateGuard(self.is_removed)])
        server.add_generic_rpc_handlers((raft_transport_handler(lambda: self.shell),))
        dispatcher_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, server)  # type: ignore[no-untyped-call]
        control_pb2_grpc.add_ControlServicer_to_server(self.control, server)  # type: ignore[no-untyped-call]
        dispatcher_pb2_grpc.add_AssignmentsServicer_to_server(self.task_dispatcher, server)  # type: ignore[no-untyped-call]
        dispatcher_pb2_grpc.add_NodeCAServicer_to_server(  # type: ignore[no-untyped-call]
            NodeCAServicer(self, self.dispatcher.record_certificate), server)
        # The Engine API's cluster routes on the node's port 2375, and forwarded writes on 2377.
        from manager.engineapi import install as install_engine_api

        self.engine_api = install_engine_api(self, server)
        bind = f"{self.options.listen_addr}:{self.options.cluster_port}"
        if tls.add_port(server, bind) == 0:
            raise RuntimeError(f"cannot listen on {bind} (--cluster-port)")
        await self.shell.start()
        await server.start()
        self.server = server
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
        self._tasks.append(asyncio.create_task(self.task_dispatcher.run(), name="task-dispatcher"))
        # Orchestrators, task reaper, allocator, scheduler: each runs only while this manager leads.
        from manager.leader import start_leader_components

        self.leader_harnesses = start_leader_components(
            self.store,
            lambda ops: self.write(ops, timeout=2.0 * self.time_scale),
            lambda: self.shell is not None and bool(self.shell.is_leader),
            self.rng,
            time_scale=self.time_scale,
            metrics=self.component_metrics,
        )
        self._tasks.extend(task for _, task in self.leader_harnesses)
        if self.options.bootstrap or founding:
            self._tasks.append(asyncio.create_task(self._ensure_cluster(), name="bootstrap"))
        await self._start_web()
        log.info("manager %s serving on %s", self.node_id, bind)

    def _founders(self) -> dict[str, str]:
        """Node ID -> cluster address of the founding managers (``--initial-cluster``), in its
        order, when this manager founds a new cluster; else {}.

        Only a node that never joined founds: a founder demoted and promoted again starts its
        Raft empty, and must then wait to be added, as any promoted node does."""
        members = tuple(getattr(self.options, "initial_cluster", ()) or ())
        if not members:
            return {}
        if (pathlib.Path(self.options.data_dir) / "session.json").exists():
            return {}
        return founders(token_digest(self.options.manager_token_file), members)

    def _load_tokens(self) -> None:
        """Read the join tokens the cluster is created with; a bootstrap manager whose token files
        do not exist yet (``docker swarm init`` on a blank node) makes the cluster's CA and tokens."""
        manager_file = getattr(self.options, "manager_token_file", None)
        worker_file = getattr(self.options, "worker_token_file", None)
        if (self.options.bootstrap and manager_file and worker_file
                and not os.path.exists(manager_file) and not os.path.exists(worker_file)):
            from manager.ca.tokens import MANAGER_TOKEN_FILE, WORKER_TOKEN_FILE, ClusterCredentials

            credentials = ClusterCredentials.create()
            credentials.write(pathlib.Path(manager_file).parent)
            # The key goes into the Raft store with the Cluster object; this copy is deleted then.
            self._made_ca_key = pathlib.Path(manager_file).parent / "ca.key"
            for made, wanted in ((MANAGER_TOKEN_FILE, manager_file), (WORKER_TOKEN_FILE, worker_file)):
                made_path = pathlib.Path(manager_file).parent / made
                if made_path != pathlib.Path(wanted):
                    os.replace(made_path, wanted)
            log.info("made the new cluster's CA and join tokens in %s", pathlib.Path(manager_file).parent)
        self.manager_token = _read_token(manager_file)
        self.worker_token = _read_token(worker_file)

    def _bootstrap_ca(self, founding: bool = False) -> None:
        """The bootstrapping manager's root CA (the one its join tokens were made for, kept beside
        them) and, with TLS on, its own certificate: it signs that itself, being the CA.

        The founders of a new cluster (``--initial-cluster``) do the same, each with the CA given
        to all of them, under the cluster ID they all derive from its digest; whichever leads
        first writes the Cluster object with that CA."""
        from manager.ca.authority import RootCA, new_root
        from manager.ca.tokens import CA_CERT_FILE, CA_KEY_FILE, parse_token
        from manager.state.store.objects import new_id

        root: RootCA | None = None
        manager_file = getattr(self.options, "manager_token_file", None)
        if manager_file:
            folder = pathlib.Path(manager_file).parent
            try:
                root = RootCA((folder / CA_CERT_FILE).read_bytes(), (folder / CA_KEY_FILE).read_bytes())
            except OSError:
                root = None
            if root is not None and self.manager_token and not parse_token(self.manager_token).matches_ca(
                    root.cert_pem):
                raise RuntimeError(f"{folder}/{CA_CERT_FILE} is not the CA of the manager join token")
        held = tls.credentials()
        if root is None:
            if self.cluster() is not None or held is not None:
                # A restart: the Cluster object holds the CA (its key file was deleted once it
                # did), and this manager its certificate; Raft's log brings both back.
                if held is not None:
                    self.cluster_id = held.identity.cluster_id
                return
            root = new_root(datetime.datetime.now(datetime.UTC))
        self.ca.bootstrap_root = root
        if held is not None:
            self.cluster_id = held.identity.cluster_id
        elif founding:
            self.cluster_id = founders_cluster_id(token_digest(self.options.manager_token_file))
        else:
            self.cluster_id = new_id(self.rng)
        if not tls.enabled() or (held is not None and tls.issued_by(held.cert_pem, root.cert_pem)):
            return
        key = tls.new_key()
        cert, roots = self.ca.issue(tls.make_csr(key, self.node_id), node_id=self.node_id, role="manager")
        credentials = tls.NodeCredentials(cert, key, roots)
        credentials.save(self.options.data_dir)
        tls.set_credentials(credentials)
        log.info("issued this bootstrapping manager's own certificate (cluster %s)", self.cluster_id)

    async def _start_web(self) -> None:
        """The web view on --web-port; a port that cannot be bound costs the view, not the manager."""
        from manager.web import WebView

        port = int(getattr(self.options, "web_port", 0) or 0)
        if not port:
            return
        web = WebView(self, self.options.listen_addr, port)
        try:
            await web.start()
        except OSError as exc:
            log.error("--web-port %d: cannot listen (%s); no web view on this manager", port, exc.strerror)
            return
        self.web = web
        log.info("web view on http://%s:%d/", self.options.advertise_addr, web.port)

    async def stop(self) -> None:
        """Stop serving and close storage, quickly (the process must exit within a second)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.web is not None:
            web, self.web = self.web, None
            await web.stop()
        engine = getattr(self.context, "engine_api", None)
        if engine is not None:
            engine.detach()
        if self.server is not None:
            await self.server.stop(0.2)
            self.server = None
        if self.shell is not None:
            await self.shell.stop()
        if self._node_watch is not None:
            self._node_watch.close()
            self._node_watch = None
        if self._key_sync is not None:
            await self._key_sync.close()
            self._key_sync = None

    async def retire(self) -> None:
        """Stop for good: this node was demoted and Raft has removed it.

        The Raft data (log, snapshot, term and vote, peers' addresses) is moved aside and then
        deleted, so that nothing of the old membership can disturb the cluster later; a later
        promotion starts with an empty log, as a new learner.
        """
        await self.stop()
        data_dir = pathlib.Path(self.options.data_dir) / "manager"
        await asyncio.to_thread(_wipe, data_dir)
        log.info("manager role retired: %s wiped", data_dir)

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

    def is_removed(self, node_id: str) -> bool:
        """Whether ``node_id`` was removed from the swarm (``docker node rm``): the Cluster
        object in this manager's store lists it, so its certificate is refused."""
        from manager.ca.removed import is_removed

        return is_removed(self.cluster(), node_id)

    def cluster(self) -> Any:
        """The Cluster object, or None before the bootstrap manager has written it."""
        found = self.store.find("cluster")
        return found[0] if found else None

    def _init_spec(self) -> dict[str, Any]:
        """The Spec given to ``docker swarm init`` (kept beside the token files), or {}."""
        manager_file = getattr(self.options, "manager_token_file", None)
        if not manager_file:
            return {}
        try:
            given = json.loads((pathlib.Path(manager_file).parent / INIT_SPEC_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return given if isinstance(given, dict) else {}

    def _on_node_change(self) -> None:
        # Managers learn each other's cluster addresses from the Node objects, so that any two
        # of them can reach each other after the one that introduced them is gone. Only the
        # nodes a committed entry changed are looked at (a store watch), not every node.
        if self.shell is None or self._node_watch is None:
            return
        for change in self._node_watch.poll():
            node = change.object
            ms = node.extra.get("ManagerStatus")
            if change.action == "remove":
                continue
            if node.id == self.node_id:
                continue
            if isinstance(ms, dict) and ms.get("Addr"):
                addr = str(ms["Addr"])
                if self._known_managers.get(node.id) != addr:
                    self._known_managers[node.id] = addr
                    self.shell.set_peer_address(node.id, addr)

    async def _ensure_cluster(self) -> None:
        """The bootstrap manager writes the Cluster object (with the join tokens) once it leads.

        The ``ingress`` network is made in the same batch, as Swarm makes it with the cluster
        (VNI 4096, 10.0.0.0/24: the first allocation there is), and the swarm's predefined
        ``host`` and ``bridge`` networks (hidden; services may name them).
        """
        from manager.allocator.ipam import AllocationState
        from manager.allocator.networks import (
            allocate_network,
            ingress_network_spec,
            predefined_network_specs,
        )
        from manager.engineapi.clusterspec import merge_init_spec, with_unlock_key
        from manager.state.raft.encryption import format_unlock_key, new_key
        from manager.state.store.commands import Create
        from manager.state.store.objects import new_id

        assert self.shell is not None
        while True:
            if self.cluster() is not None:
                return
            if self.shell.is_leader:
                if not self.options.bootstrap:
                    # Founders: any of them may lead first, and one that led before may have
                    # proposed the Cluster object already. After a read barrier this store holds
                    # every entry committed before this term, so one Cluster is ever made.
                    try:
                        await self.shell.read_barrier(2.0 * self.time_scale)
                    except Exception as exc:  # lost leadership meanwhile: look again
                        log.info("bootstrap: read barrier failed (%s); retrying", exc)
                        await asyncio.sleep(0.05)
                        continue
                    if self.cluster() is not None:
                        return
                tokens = {"Worker": self.worker_token, "Manager": self.manager_token}
                spec = merge_init_spec(running_cluster_spec(self.raft_config, self.heartbeat_period),
                                       self._init_spec())
                extra: dict[str, Any] = with_unlock_key({"JoinTokens": tokens}, spec, rotate=False,
                                                        fresh=format_unlock_key(new_key()))
                root = self.ca.bootstrap_root
                if root is not None:
                    from manager.ca.service import tls_info

                    extra["RootCA"] = root.to_store()
                    extra["TLSInfo"] = tls_info(root.cert_pem, root.cert_pem)
                op = Create("cluster", self.cluster_id or new_id(self.rng), spec, {}, extra)
                ingress_id = new_id(self.rng)
                ingress = ingress_network_spec()
                ingress_extra = allocate_network(ingress_id, ingress, AllocationState())
                networks = [Create("network", ingress_id, ingress, {}, ingress_extra)]
                networks += [Create("network", new_id(self.rng), net_spec, {}, {})
                             for net_spec in predefined_network_specs()]
                try:
                    await self.write([op, *networks])
                    log.info("created the cluster")
                    if self._made_ca_key is not None:  # the store holds the key now
                        self._made_ca_key.unlink(missing_ok=True)
                    return
                except Exception as exc:  # lost leadership or a race: look again
                    log.info("bootstrap: creating the cluster failed (%s); retrying", exc)
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------- a node without gossip
