"""What the `swarmlet` commands need from a way of running nodes, and which one a cluster uses.

Two backends implement :class:`Backend`: compose (a container per node, deploy.backends.compose)
and local (a process per node on its own 127.0.0.x address, deploy.backends.local). `swarmlet up`
records the backend it used in a state file, so that status, chaos, logs and down act on the
cluster that is there without being told again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

__all__ = [
    "BACKENDS",
    "CHAOS_ACTIONS",
    "DEFAULT_PROJECT",
    "DISCOVERY",
    "Backend",
    "BackendError",
    "ClusterState",
    "NodeHandle",
    "UnknownNode",
    "credentials_dir",
    "natural_key",
    "project_name",
    "read_state",
    "remove_state",
    "resolve_node",
    "state_dir",
    "write_state",
]

BACKENDS = ("compose", "local")
"""Backend names, as `--backend` takes them."""

DISCOVERY = ("names", "mdns")
"""How workers find managers, as `--discover` takes it."""

CHAOS_ACTIONS = ("stop", "start", "kill", "pause", "unpause", "restart", "disconnect", "connect")
"""What `swarmlet chaos` can do to a node."""

_STATE_FILE = "state.json"

DEFAULT_PROJECT = "swarmlet"
"""The compose project of the default cluster (compose.yml says ``name: swarmlet``)."""

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class BackendError(Exception):
    """Something the user must fix; ``str(e)`` is the message to print (no traceback)."""


class UnknownNode(BackendError):
    """A NODE argument that names no node; the message lists the nodes there are."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) if known else "(none: is the cluster up?)"
        super().__init__(f"No such node: {name}. The nodes are: {listed}")
        self.name = name
        self.known = list(known)


@dataclasses.dataclass(frozen=True)
class NodeHandle:
    """One node as the backend sees it (a container or a process), whatever the cluster thinks."""

    hostname: str
    """The node's hostname, as `swarmlet status` shows it; chaos and logs take this name."""
    role: str
    """"manager" or "worker"."""
    state: str
    """The container's or process's state: "running", "paused", "exited", ..."""
    ref: str
    """The backend's own handle: a container id, or a process's name in the state folder."""
    aliases: tuple[str, ...] = ()
    """Other names that pick this node too (a compose container's name, a service name)."""
    control_addr: str | None = None
    """For a manager: "127.0.0.1:PORT" where its control API answers from the host."""
    metrics_url: str | None = None
    """Where its Prometheus metrics are served from the host."""
    docker_host: str | None = None
    """For a manager: the DOCKER_HOST value that reaches its Engine API front end."""


@dataclasses.dataclass(frozen=True)
class ClusterState:
    """What `swarmlet up` remembers about the cluster it made."""

    backend: str
    """"compose" or "local"."""
    managers: int
    """Managers asked for."""
    workers: int
    """Workers asked for."""
    extra: dict[str, object] = dataclasses.field(default_factory=dict)
    """Backend-specific details (the local backend's process table)."""


class Backend(Protocol):
    """A way of running nodes. Every method raises :class:`BackendError` for what the user must fix."""

    name: str

    def check(self, managers: int, workers: int) -> None:
        """Fail early, with advice, when this backend cannot run such a cluster (no engine, port taken)."""

    def prepare(self, progress: Callable[[str], None]) -> None:
        """Build or fetch whatever is missing before nodes can start (images), reporting steps."""

    def start_cluster(self, managers: int, workers: int, discover: str = "names") -> None:
        """Start the nodes; returns once they are started, not once they are Ready.

        ``discover`` is how workers find the managers: "names" (a --join list) or "mdns".
        """

    def nodes(self) -> list[NodeHandle]:
        """The nodes this backend runs for the cluster, in a stable order, managers first."""

    def chaos(self, action: str, node: NodeHandle) -> str:
        """Do one of CHAOS_ACTIONS to a node; returns what was done, in a few words."""

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        """The node's log lines (stdout and stderr), following new ones if asked."""

    def down(self) -> list[str]:
        """Remove every node, network and volume the cluster has; returns what was removed."""


def natural_key(text: str) -> list[object]:
    """Sort key that orders "manager2" before "manager10", as Docker sorts hostnames."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def resolve_node(name: str, nodes: Sequence[NodeHandle]) -> NodeHandle:
    """The node called ``name`` (hostname or alias; a unique prefix of a hostname also works).

    Raises :class:`UnknownNode`, listing the hostnames there are, when nothing or more than one matches.
    """
    for node in nodes:
        if name == node.hostname or name in node.aliases:
            return node
    prefixed = [n for n in nodes if name and n.hostname.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise UnknownNode(name, sorted((n.hostname for n in nodes), key=natural_key))


def project_name() -> str:
    """The cluster's project name: SWARMLET_PROJECT (``swarmlet --project NAME`` sets it), else swarmlet.

    Compose names the containers, network and volumes after it, so clusters of different
    projects live side by side and each command acts on its own project only.
    """
    name = os.environ.get("SWARMLET_PROJECT") or DEFAULT_PROJECT
    if not _PROJECT_NAME.match(name):
        raise BackendError(
            f"invalid project name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or a digit"
        )
    return name


def state_dir(project: str | None = None) -> pathlib.Path:
    """The folder for the cluster's state, tokens and local logs.

    SWARMLET_STATE if set; else .cache/cluster for the default project and
    .cache/cluster-NAME for the project NAME.
    """
    if os.environ.get("SWARMLET_STATE"):
        return pathlib.Path(os.environ["SWARMLET_STATE"])
    project = project or project_name()
    folder = "cluster" if project == DEFAULT_PROJECT else f"cluster-{project}"
    return pathlib.Path(__file__).resolve().parents[2] / ".cache" / folder


def credentials_dir() -> pathlib.Path:
    """Where the CA and the two join tokens live; compose.yml reads its secrets from here."""
    return state_dir()


def write_state(state: ClusterState) -> None:
    """Remember the running cluster, replacing the state file atomically."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{_STATE_FILE}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")
    os.replace(tmp, folder / _STATE_FILE)


def read_state() -> ClusterState | None:
    """The remembered cluster, or None if `swarmlet up` has not made one (or down removed it)."""
    path = state_dir() / _STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read {path}: {e}") from None
    return ClusterState(
        backend=str(data["backend"]), managers=int(data["managers"]), workers=int(data["workers"]),
        extra=dict(data.get("extra") or {}),
    )


def remove_state() -> None:
    """Forget the cluster (after down)."""
    (state_dir() / _STATE_FILE).unlink(missing_ok=True)
