"""This node's place in a swarm: entered at start, or at run time through the Engine API.

A node started with ``--bootstrap``, ``--join`` or ``--discover`` is in a swarm from the start,
as before. A node started with ``--no-swarm`` is a blank engine (Docker's "Swarm: inactive"):
its Engine API, gossip and metrics run, and it enters a swarm when told to, as a Docker engine
does:

* ``docker swarm init``: the node becomes the first manager of a new cluster. The manager role
  starts with ``bootstrap`` (Raft alone, the Cluster object written with the running values)
  and makes the cluster's CA and join tokens in ``DATA_DIR/swarm/``; the node's agent session
  then joins its own cluster with the manager token, as a bootstrap manager does.
* ``docker swarm join``: the node joins through the dispatcher with the token given and no ID,
  asking for the manager role so that the token alone decides. The CA chooses the node's ID
  (its certificate's CN), as Swarm's does at every join; the node keeps it in ``DATA_DIR/node_id``
  and ``renew(node_id)`` restarts the parts that run under an ID (gossip, the data plane, the
  task runtime) under it before the agent session starts. A manager token makes the leader add
  the node to Raft; its heartbeat answers then say ``manager`` and the
  :class:`~nodeagent.roles.RoleSwitch` starts the manager role: the promote path.
* ``docker swarm leave``: the session ends, the manager role (if any) is retired (its Raft data
  deleted), and what the node kept of the swarm is deleted, its node ID too; it is blank again,
  runs gossip and the data plane alone under a new ID, and its next join gets one from the CA.

What the node was told is kept in ``DATA_DIR/swarm.json`` (the options a start with flags would
have had), so a restart comes back in the swarm; ``leave`` deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Awaitable, Callable
from types import ModuleType, SimpleNamespace
from typing import Any

from nodeagent import tls
from nodeagent.engineapi.errors import ApiError
from nodeagent.engineapi.swarmnode import ALREADY_IN_SWARM, NOT_PART_OF_SWARM, JoinFailed
from nodeagent.identity import keep_node_id, load_node_id
from nodeagent.options import AgentOptions
from nodeagent.roles import ROLE_FILE, NodeContext, RoleSwitch, read_role_file

__all__ = [
    "SWARM_DIR",
    "SWARM_FILE",
    "NodeSwarm",
    "read_swarm_record",
    "write_swarm_record",
]

log = logging.getLogger(__name__)

SWARM_FILE = "swarm.json"
"""In the data directory: the options the node entered its swarm with (absent: no swarm)."""
SWARM_DIR = "swarm"
"""In the data directory: the join token given to ``docker swarm join``, or the cluster's CA and
tokens made by ``docker swarm init``, and the Spec given to init."""
INIT_SPEC_FILE = "init_spec.json"
"""In :data:`SWARM_DIR`: the Spec given to ``docker swarm init``, for the manager role to merge
into the Cluster object it creates."""
_SESSION_FILE = "session.json"
_MANAGER_DIR = "manager"
NODE_ID_FILE = "node_id"

# The options a swarm record keeps: what --bootstrap / --join and the token flags would say.
_RECORDED = ("role", "bootstrap", "join", "token_file", "manager_token_file", "worker_token_file",
             "advertise_addr")


def read_swarm_record(data_dir: str) -> dict[str, Any] | None:
    """The options kept in ``DATA_DIR/swarm.json``, or None when the node is in no swarm."""
    try:
        record = json.loads((pathlib.Path(data_dir) / SWARM_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_swarm_record(data_dir: str, options: AgentOptions) -> None:
    """Keep ``options``' swarm part in ``DATA_DIR/swarm.json`` (written aside, fsynced, renamed)."""
    record = {name: getattr(options, name) for name in _RECORDED}
    record["join"] = list(options.join)
    path = pathlib.Path(data_dir) / SWARM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _apply_record(options: AgentOptions, record: dict[str, Any]) -> AgentOptions:
    changes: dict[str, Any] = {name: record[name] for name in _RECORDED if name in record}
    changes["join"] = tuple(record.get("join") or ())
    changes["discover"] = None
    return dataclasses.replace(options, **changes)


Spawn = Callable[[Awaitable[None], str], "asyncio.Task[None]"]
Renew = Callable[[str], Awaitable[NodeContext]]


class NodeSwarm:
    """The role this node runs and its agent session, as one thing that is entered and left.

    ``spawn(coro, name)`` runs a task whose failure stops the process (node.py's ``loop_task``);
    ``on_refused(message)`` is called when the join made at start is refused (the process exits
    3); ``on_role_change(role)`` after a role change at run time. ``renew(node_id)`` restarts
    what runs under the node's ID under a new one and returns the node's context with it (none
    given: only the context's ``node_id`` changes).
    """

    def __init__(
        self,
        context: NodeContext,
        *,
        session_module: ModuleType | None,
        spawn: Spawn,
        on_refused: Callable[[str], None],
        on_role_change: Callable[[str], Awaitable[None]] | None = None,
        extra_managers: Callable[[], list[str]] = list,
        renew: Renew | None = None,
    ) -> None:
        """``context`` is the node's (its options as given at start)."""
        self.context = context
        self.options = context.options
        """The options of the swarm the node is in now (the start's when in none)."""
        self.switch: RoleSwitch | None = None
        self.session: Any = None
        self._session_module = session_module
        self._spawn = spawn
        self._on_refused = on_refused
        self._on_role_change = on_role_change
        self._extra_managers = extra_managers
        self._renew = renew
        self._entered = False
        self._granted = ""
        self._session_task: asyncio.Task[None] | None = None
        self._refused: str | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ what others ask

    @property
    def role(self) -> str:
        """The role running now ("" in no swarm)."""
        return self.switch.role if self.switch is not None else ""

    @property
    def data_dir(self) -> pathlib.Path:
        """The node's data directory."""
        return pathlib.Path(self.context.options.data_dir)

    def in_swarm(self) -> bool:
        """Whether the node is in a swarm (or joining one): it has a session, or runs the manager
        role (a node started with flags but no way to find managers runs gossip only: in none)."""
        return self.session is not None or self.role == "manager"

    def connected_to(self) -> str:
        """The manager the session is open with ("" while none)."""
        return str(getattr(self.session, "connected_to", "") or "") if self.session is not None else ""

    def managers(self) -> list[str]:
        """Manager cluster addresses to join and keep the session through."""
        found = list(self.options.join) + [m for m in self._extra_managers() if m]
        if self.role == "manager" and self.options.cluster_address not in found:
            found.append(self.options.cluster_address)
        return list(dict.fromkeys(found))

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Enter the swarm the options (or ``DATA_DIR/swarm.json``) name; a blank node stays out."""
        options = self.context.options
        if options.no_swarm:
            record = read_swarm_record(str(self.data_dir))
            if record is None:
                log.info("--no-swarm: in no swarm; waiting for docker swarm init or docker swarm join")
                return
            options = _apply_record(options, record)
            kept = read_role_file(options.data_dir)
            if kept is not None:
                options = dataclasses.replace(options, role=kept)
            log.info("back in the swarm entered earlier (%s/%s): role %s", options.data_dir, SWARM_FILE,
                     options.role)
        await self._enter(options, at_start=True)

    async def stop(self) -> None:
        """Stop the session and the role (shutdown: nothing is retired or deleted)."""
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.stop()
        if self.switch is not None:
            await self.switch.stop()

    async def _enter(self, options: AgentOptions, *, at_start: bool, join_role: str | None = None) -> None:
        context = dataclasses.replace(self.context, options=options)
        switch = RoleSwitch(context, options.role, on_change=self._on_role_change)
        self.options, self.switch = options, switch
        await switch.start(announce=not at_start)
        module = self._session_module
        if module is None:
            log.info("no agent session in this build: running gossip and metrics only")
            return
        if not (options.join or options.discover or options.role == "manager"):
            log.info("no --join or --discover: not starting an agent session (gossip and metrics only)")
            return
        self.session = module.AgentSession(context, self.managers, role=lambda: switch.role,
                                           on_role=switch.want, join_role=join_role)
        self._refused = None
        self._session_task = self._spawn(self._run_session(self.session, module, at_start, switch), "session")

    async def _run_session(
        self, session: Any, module: ModuleType, at_start: bool, switch: RoleSwitch
    ) -> None:
        # A manager locked by autolock runs no agent until it is unlocked: no join and no
        # heartbeat, so the other managers see it Unreachable and then Down, as in Swarm.
        unlocked: Callable[[], Awaitable[None]] | None = getattr(switch.extension, "wait_unlocked", None)
        if unlocked is not None and getattr(switch.extension, "locked", False):
            log.info("the agent session starts once the manager is unlocked (docker swarm unlock)")
            await unlocked()
        try:
            await session.run()
        except module.JoinRefused as exc:
            if at_start:
                self._on_refused(str(exc))
            else:
                self._refused = str(exc)

    # ------------------------------------------------------------------ init, join, leave

    async def init(self, advertise_addr: str, spec: dict[str, Any], *, timeout: float) -> str:
        """``docker swarm init``: become the first manager of a new cluster; returns the node id.

        Waits until the node has joined its own cluster (its Node object is written), as Docker
        answers only then; on failure everything is undone.
        """
        async with self._lock:
            self._must_be_out()
            # The ID the node was started with; a node that left a swarm forgot its ID and
            # draws a new one, as Swarm's init does (the node is its own CA).
            await self._adopt(await asyncio.to_thread(load_node_id, str(self.data_dir)))
            folder = self.data_dir / SWARM_DIR
            folder.mkdir(parents=True, exist_ok=True)
            (folder / INIT_SPEC_FILE).write_text(json.dumps(spec))
            options = dataclasses.replace(
                self.context.options, role="manager", bootstrap=True, join=(), discover=None, token_file=None,
                manager_token_file=str(folder / "manager_token"),
                worker_token_file=str(folder / "worker_token"),
                advertise_addr=advertise_addr or self.context.options.advertise_addr)
            write_swarm_record(options.data_dir, options)
            try:
                await self._enter(options, at_start=False)
                await self._wait(lambda: bool(getattr(self.session, "joined", False)), timeout)
            except BaseException:
                await self._forget()
                raise
            # From now on the cluster exists: a restart (or a later promotion after a demotion)
            # must rejoin it, never bootstrap another.
            write_swarm_record(options.data_dir, dataclasses.replace(options, bootstrap=False))
            self.options = dataclasses.replace(options, bootstrap=False)
            return self.context.node_id

    async def join(self, remote_addrs: list[str], token: str, advertise_addr: str, *, timeout: float) -> str:
        """``docker swarm join``: join through ``remote_addrs`` with ``token``; returns the role granted.

        Raises :class:`JoinFailed` with the managers' words when refused (everything undone), or
        with ``timed_out`` when no manager answered in time (the node goes on trying, pending).
        """
        async with self._lock:
            self._must_be_out()
            folder = self.data_dir / SWARM_DIR
            folder.mkdir(parents=True, exist_ok=True)
            token_path = folder / "token"
            token_path.write_text(token + "\n")
            options = dataclasses.replace(
                self.context.options, role="worker", bootstrap=False, join=tuple(remote_addrs), discover=None,
                token_file=str(token_path), manager_token_file=None, worker_token_file=None,
                advertise_addr=advertise_addr or self.context.options.advertise_addr)
            write_swarm_record(options.data_dir, options)
            module = self._session_module
            if module is None:
                await self._forget()
                raise JoinFailed("no agent session in this build: it cannot join a swarm")
            # No ID of its own: the CA chooses one at every join, as Swarm's does (the session
            # started under it once the parts that run under an ID have been restarted with it).
            blank = SimpleNamespace(options=options, node_id="", hostname=self.context.hostname,
                                    faults=self.context.faults)
            joining = module.AgentSession(blank, lambda: list(options.join), join_role="manager")
            self.session, self._refused, self._entered, self._granted = joining, None, False, ""
            self._session_task = self._spawn(self._join_then_enter(joining, module, options), "join")

            def settled() -> bool:
                return self._entered or self._refused is not None

            try:
                await self._wait(settled, timeout)
            except TimeoutError:
                raise JoinFailed("timeout", timed_out=True) from None
            if self._refused is not None:
                message = self._refused
                await self._forget()
                raise JoinFailed(message)
            granted = self._granted or "worker"
            if granted == "manager":
                # The leader's heartbeat answers start the manager role (the promote path);
                # Docker answers a manager's join once its manager is running, and the CLI's
                # next question (/info) must find the cluster in this manager's replica.
                with contextlib.suppress(TimeoutError):
                    await self._wait(lambda: self.role == "manager" and self._replica_ready(), timeout)
            return granted

    async def _join_then_enter(self, joining: Any, module: ModuleType, options: AgentOptions) -> None:
        """Join with no ID, keep the ID the CA chose, restart what runs under an ID with it, and
        enter the swarm under it (a join that times out goes on here, pending, as Swarm's does)."""
        try:
            await joining.join()
        except module.JoinRefused as exc:
            self._refused = str(exc)
            return
        node_id = await asyncio.to_thread(keep_node_id, options.data_dir, str(joining.node_id))
        self._granted = str(getattr(joining, "joined_role", "") or "")
        log.info("joined as node %s: the ID the CA chose", node_id)
        try:
            await self._adopt(node_id)
            await self._enter(options, at_start=False)
        except Exception as exc:  # the answer to the join says why; the node is blank again
            log.exception("entering the swarm joined failed")
            self._refused = f"swarm component could not be started: {exc}"
            return
        self._entered = True

    async def _adopt(self, node_id: str) -> None:
        """Run as ``node_id`` from now on (nothing to do if the node runs as it already)."""
        if node_id == self.context.node_id:
            return
        if self._renew is not None:
            self.context = await self._renew(node_id)
        else:
            self.context = dataclasses.replace(self.context, node_id=node_id)

    async def leave(self) -> None:
        """``docker swarm leave``: end the session, retire the role, forget the swarm."""
        async with self._lock:
            if not self.in_swarm():  # another leave got here first
                raise ApiError.unavailable(NOT_PART_OF_SWARM)
            await self._forget()
            # Blank again: what ran under the swarm's ID (gossip, the ingress routing mesh...)
            # leaves the swarm too, its gossip member gracefully, and runs on alone under a new
            # ID until the next join (the CA's ID) or init (this one).
            try:
                await self._adopt(await asyncio.to_thread(load_node_id, str(self.data_dir)))
            except Exception:
                log.exception("restarting gossip and the data plane under a new ID failed")

    def _must_be_out(self) -> None:
        # Checked again under the lock: two inits (or joins) at once must not both go ahead.
        if self.in_swarm():
            raise ApiError.unavailable(ALREADY_IN_SWARM)

    async def _forget(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.stop()
        task, self._session_task = self._session_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        switch, self.switch = self.switch, None
        if switch is not None:
            try:
                await switch.leave()
            except Exception:
                log.exception("retiring the manager role failed")
        runtime = self.context.task_runtime
        if runtime is not None:
            # As Docker removes the node's containers when it leaves: nothing is assigned here now.
            try:
                runtime.worker.apply(True, [], [])
            except Exception:
                log.exception("stopping the tasks of the swarm left failed")
        await asyncio.to_thread(_delete_swarm_state, self.data_dir)
        tls.set_credentials(None)
        self.options = self.context.options
        self._entered, self._granted = False, ""
        log.info("left the swarm: this node is in no swarm now")

    def _replica_ready(self) -> bool:
        """Whether this manager's store holds the Cluster object yet (Raft has caught it up)."""
        engine = self.context.engine_api
        return engine is None or engine.swarm_info().cluster is not None

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.02)


def _delete_swarm_state(data_dir: pathlib.Path) -> None:
    """Everything a node keeps of its swarm, its node ID too: the next join gets a new one."""
    for name in (SWARM_FILE, _SESSION_FILE, ROLE_FILE, NODE_ID_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()
    for name in (SWARM_DIR, _MANAGER_DIR, tls.CERT_DIR):
        shutil.rmtree(data_dir / name, ignore_errors=True)
