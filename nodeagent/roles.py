"""The role extension point: what a manager (or any future role) adds to the node agent.

nodeagent never imports manager (manager builds on nodeagent). Roles are found through the
entry point group ``swarmlet.roles`` (pyproject maps ``manager`` to
``manager.runtime:ManagerRuntime``); the process constructs the class with a
:class:`NodeContext` and calls ``start()`` after gossip is up and ``stop()`` at shutdown.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from nodeagent.options import AgentOptions

if TYPE_CHECKING:
    from nodeagent.engineapi.server import EngineApiServer
    from nodeagent.gossip.core import Member, MemberEvent

__all__ = ["ENTRY_POINT_GROUP", "GossipView", "NodeContext", "RoleExtension", "RoleNotFound", "load_role"]

#: The entry point group roles are registered under.
ENTRY_POINT_GROUP = "swarmlet.roles"


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


class RoleExtension(Protocol):
    """A role's runtime, constructed as ``Ext(context)`` by the process."""

    async def start(self) -> None:
        """Start serving (managers: open Raft storage, bind the cluster port, serve)."""
        ...

    async def stop(self) -> None:
        """Stop quickly (the whole process has under a second on SIGTERM)."""
        ...


def load_role(name: str) -> type[RoleExtension]:
    """The class registered for role ``name``; raise :class:`RoleNotFound` saying why not."""
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise RoleNotFound(f"no role named {name!r} is installed (entry point group {ENTRY_POINT_GROUP})")
    try:
        loaded = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise RoleNotFound(f"role {name!r} ({found[0].value}) cannot be loaded: {exc}") from exc
    if not isinstance(loaded, type):
        raise RoleNotFound(f"role {name!r} ({found[0].value}) is not a class")
    role: type[RoleExtension] = loaded
    return role
