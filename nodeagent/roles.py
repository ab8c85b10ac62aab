"""The role extension point: what a manager (or any future role) adds to the node agent.

nodeagent never imports manager (manager builds on nodeagent). Roles are found through the
entry point group ``swarmlet.roles`` (pyproject maps ``manager`` to
``manager.runtime:ManagerRuntime``); the built-in ``manager`` is also named here, as a string,
so that a start does not import ``importlib.metadata`` (0.06 s of CPU) to find it: the entry
points are read only for a role that is not built in. The process constructs the class with a
:class:`NodeContext` and calls ``start()`` after gossip is up and ``stop()`` at shutdown.

A node's role also changes at run time (``docker node promote`` / ``demote``):
:class:`RoleSwitch` runs the manager role when the leader says so through the agent session,
and retires it when told to run as a worker. The role a node last switched to is kept in
``DATA_DIR/role`` and wins over ``--role`` at the next start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import pathlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from nodeagent.options import AgentOptions
from nodeagent.transport.faults import LinkFaults

if TYPE_CHECKING:
    from nodeagent.engineapi.server import EngineApiServer
    from nodeagent.gossip.core import Member, MemberEvent

__all__ = [
    "BUILTIN_ROLES",
    "ENTRY_POINT_GROUP",
    "ROLE_FILE",
    "GossipView",
    "NodeContext",
    "RoleExtension",
    "RoleNotFound",
    "RoleSwitch",
    "load_role",
    "read_role_file",
    "write_role_file",
]

log = logging.getLogger(__name__)

#: The entry point group roles are registered under.
ENTRY_POINT_GROUP = "swarmlet.roles"

#: The roles swarmlet ships, as pyproject registers them under ENTRY_POINT_GROUP ("module:attribute").
BUILTIN_ROLES = {"manager": "manager.runtime:ManagerRuntime"}

#: The file in the data directory that keeps the role a node was promoted or demoted to.
ROLE_FILE = "role"

# After a manager role failed to start, the session's next requests are ignored this long.
_RETRY_AFTER_FAILURE_S = 2.0


class RoleNotFound(LookupError):
    """No installed role has that name, or its module does not import."""


class GossipView(Protocol):
    """What other components may see and change of this node's gossip membership."""

    def members(self) -> list[Member]:
        """Every member this node knows, itself included, with its state and metadata."""
        ...

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        """Call ``callback(event)`` on the agent's loop for every membership change from now on."""
        ...

    def set_meta(self, **changes: Any) -> None:
        """Change fields of this node's :class:`~nodeagent.gossip.messages.NodeMeta` and gossip it."""
        ...


@dataclass
class NodeContext:
    """What a role extension (and the agent session) gets from the process."""

    options: AgentOptions
    """The node's configuration (flags and environment)."""
    node_id: str
    """The node's id: 25 lowercase base-36 characters, kept in DATA_DIR/node_id."""
    hostname: str
    """The node's hostname, as ``docker node ls`` shows it."""
    registry: CollectorRegistry
    """The process's one Prometheus registry: register every metric here."""
    gossip: GossipView
    """This node's gossip membership."""
    engine_api: EngineApiServer | None = None
    """The node's Engine API server (port 2375): a manager attaches its cluster routes to it."""
    task_runtime: Any = None
    """The node's task runtime (:class:`nodeagent.agent.tasks.TaskRuntime`): its ``images()``
    for ``GET /images/json``, its ``logs`` and ``worker``."""
    mesh: Any = None
    """The node's routing mesh (:class:`nodeagent.overlay.mesh_shell.Mesh`): the session hands it
    the ingress network."""
    faults: LinkFaults | None = None
    """The node's injected link faults (``swarmlet chaos``), which every plane applies
    (:mod:`nodeagent.transport.planes`)."""


class RoleExtension(Protocol):
    """A role's runtime, constructed as ``Ext(context)`` by the process."""

    async def start(self) -> None:
        """Start serving (managers: open Raft storage, bind the cluster port, serve)."""
        ...

    async def stop(self) -> None:
        """Stop quickly (the whole process has under a second on SIGTERM)."""
        ...

    async def retire(self) -> None:
        """Stop for good, the node no longer having this role: delete what the role kept on disk."""
        ...


def load_role(name: str) -> type[RoleExtension]:
    """The class registered for role ``name``; raise :class:`RoleNotFound` saying why not."""
    target = BUILTIN_ROLES.get(name)
    try:
        if target is not None:
            module_name, _, attribute = target.partition(":")
            loaded = getattr(importlib.import_module(module_name), attribute)
        else:
            # Imported here, not at the top: only a role that is not built in needs the metadata.
            from importlib import metadata

            found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
            if not found:
                raise RoleNotFound(
                    f"no role named {name!r} is installed (entry point group {ENTRY_POINT_GROUP})")
            target = found[0].value
            loaded = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise RoleNotFound(f"role {name!r} ({target}) cannot be loaded: {exc}") from exc
    if not isinstance(loaded, type):
        raise RoleNotFound(f"role {name!r} ({target}) is not a class")
    role: type[RoleExtension] = loaded
    return role


def read_role_file(data_dir: str) -> str | None:
    """The role kept in ``DATA_DIR/role`` ("manager" or "worker"), or None if there is none."""
    try:
        role = (pathlib.Path(data_dir) / ROLE_FILE).read_text().strip()
    except OSError:
        return None
    return role if role in ("manager", "worker") else None


def write_role_file(data_dir: str, role: str) -> None:
    """Keep ``role`` in ``DATA_DIR/role`` (a temporary file, fsynced, renamed)."""
    path = pathlib.Path(data_dir) / ROLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(role + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RoleSwitch:
    """The role extension this node runs, started at boot or when the leader says so.

    The agent session calls :meth:`want` with the role in each heartbeat answer; a change is made
    in a task of its own, one at a time, to the latest role wanted. Promotion: ``DATA_DIR/role``
    says manager, then the manager role is loaded through the entry point and started (it joins
    Raft as a learner; the leader promotes it). Demotion: the role is retired (its Raft data
    wiped) and then ``DATA_DIR/role`` says worker. Each role gets a registry of its own inside
    the process registry, so a later promotion can register the same metrics again.
    """

    def __init__(
        self, context: NodeContext, role: str, *, on_change: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """``role`` is what this node runs from the start (``--role``, or what ``DATA_DIR/role``
        says); ``on_change(role)`` is awaited after each change at run time (a failure is logged)."""
        self.context = context
        self._on_change = on_change
        self.role = role
        """The role running now: "manager" once the manager role has started."""
        self.extension: RoleExtension | None = None
        self._registry: CollectorRegistry | None = None
        self._wanted = role
        self._task: asyncio.Task[None] | None = None
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def start(self, *, announce: bool = False) -> None:
        """Start the role this node runs from the start (managers: raises RoleNotFound or the
        role's own startup error). ``announce``: the node enters a swarm at run time (``docker
        swarm init``), so gossip and ``on_change`` hear of the role as after a promotion."""
        if self.role == "manager":
            self.role = "worker"
            await self._become("manager", persist=False)
            if announce:
                self._gossip_role("manager")
                if self._on_change is not None:
                    await self._on_change("manager")

    async def leave(self) -> None:
        """Retire the running role for good (``docker swarm leave``): its data is deleted."""
        if self._task is not None:
            self._task.cancel()
        async with self._lock:
            extension, self.extension = self.extension, None
            if extension is not None:
                await self._drop(extension, retire=True)
            was, self.role = self.role, "worker"
        if was == "manager":
            self._gossip_role("worker")
            if self._on_change is not None:
                await self._on_change("worker")

    def want(self, role: str) -> None:
        """The leader says this node should run ``role`` now; switch in the background if needed."""
        if role not in ("manager", "worker"):
            return
        self._wanted = role
        if role == self.role or (self._task is not None and not self._task.done()):
            return
        if time.monotonic() - self._failed_at < _RETRY_AFTER_FAILURE_S:
            return
        self._task = asyncio.get_running_loop().create_task(self._switch(), name="role-switch")

    async def _switch(self) -> None:
        while self._wanted != self.role:
            target = self._wanted
            try:
                await self._become(target)
            except Exception:
                log.exception("could not switch this node to the %s role; will try again", target)
                self._failed_at = time.monotonic()
                return

    async def _become(self, role: str, *, persist: bool = True) -> None:
        async with self._lock:
            if role == self.role:
                return
            if role == "manager":
                log.info("starting the manager role%s", " (node promoted)" if persist else "")
                if persist:
                    write_role_file(self.context.options.data_dir, "manager")
                role_class = load_role("manager")
                registry = CollectorRegistry()
                options = dataclasses.replace(self.context.options, role="manager")
                context = dataclasses.replace(self.context, options=options, registry=registry)
                extension = role_class(context)  # type: ignore[call-arg]  # the Protocol has no __init__
                self.context.registry.register(registry)
                self._registry = registry
                try:
                    await extension.start()
                except BaseException:
                    await self._drop(extension, retire=False)
                    raise
                self.extension = extension
            else:
                log.info("dropping the manager role (node demoted; Raft has removed it)")
                running, self.extension = self.extension, None
                if running is not None:
                    await self._drop(running, retire=True)
                write_role_file(self.context.options.data_dir, "worker")
            self.role = role
            if persist:  # at boot the gossip metadata already says so
                self._gossip_role(role)
                if self._on_change is not None:
                    try:
                        await self._on_change(role)
                    except Exception:  # metrics and mDNS follow the role; the change stands without them
                        log.exception("after the switch to the %s role", role)

    async def _drop(self, extension: RoleExtension, *, retire: bool) -> None:
        try:
            await (extension.retire() if retire else extension.stop())
        finally:
            if self._registry is not None:
                self.context.registry.unregister(self._registry)
                self._registry = None

    def _gossip_role(self, role: str) -> None:
        options = self.context.options
        addr = options.advertise_addr
        if role == "manager":
            addr = f"{options.advertise_addr}:{options.cluster_port}"
        try:
            self.context.gossip.set_meta(role=role, addr=addr)
        except Exception:  # gossip metadata is informative; the role change stands without it
            log.exception("could not gossip the new role")

    async def stop(self) -> None:
        """Stop the running role (shutdown: nothing is retired or written)."""
        if self._task is not None:
            self._task.cancel()
        extension, self.extension = self.extension, None
        if extension is not None:
            await extension.stop()
