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
from typing import Any, Protocol

from deploy.addresses import DEFAULT_PUBLISH, AddressError, PortRange, node_addr, parse_name

__all__ = [
    "BACKENDS",
    "CHAOS_ACTIONS",
    "DEFAULT_PROJECT",
    "DISCOVERY",
    "Backend",
    "BackendError",
    "ClusterState",
    "Layout",
    "NodeHandle",
    "UnknownNode",
    "clear_join_tokens",
    "cluster_block",
    "credentials_dir",
    "fetch_operator_certificate",
    "has_tokens",
    "natural_key",
    "project_name",
    "read_state",
    "remove_state",
    "resolve_node",
    "save_join_tokens",
    "state_dir",
    "use_cluster_tls",
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
    """For a manager: "ADDR:2377" where its control API answers from the host."""
    metrics_url: str | None = None
    """Where its Prometheus metrics are served from the host."""
    docker_host: str | None = None
    """The DOCKER_HOST value that reaches its Engine API (every node serves one)."""
    addr: str | None = None
    """The node's own address on the host (deploy/addresses.py), where all its ports are."""
    web_url: str | None = None
    """For a manager: its web view of the swarm (docs/web.md)."""
    admin_addr: str | None = None
    """"ADDR:7946" where the node agent's admin service (its link faults) answers from the host."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which nodes a cluster has and where: what `up` asked for, as `node add` and `rm` changed it."""

    names: tuple[str, ...]
    """The nodes' hostnames, managerN and workerN (their numbers give their addresses)."""
    block: int = 0
    """The cluster's 127.B block (deploy/addresses.py)."""
    publish: tuple[PortRange, ...] = DEFAULT_PUBLISH
    """Service ports each node publishes on its address (compose)."""
    discover: str = "names"
    """How workers find the managers: "names" or "mdns"."""
    no_swarm: bool = False
    """Nodes start outside any swarm (the agent's --no-swarm), for `docker swarm init/join` by hand."""
    image: str | None = None
    """The node image's content-keyed tag the containers run (compose); None: swarmlet/node:latest."""
    cpus: str = ""
    """The CPUs every node declares to the scheduler (the agent's --cpus); "": the machine's."""
    memory: str = ""
    """The memory every node declares (the agent's --memory, e.g. 1g); "": the machine's."""
    founders: tuple[str, ...] = ()
    """The managers that founded the cluster together (the agent's --initial-cluster): all the
    managers of the `up` that made it. Managers added later, or made again after `node rm`,
    join through the dispatcher instead; () for a cluster made before founders existed, whose
    manager1 bootstrapped it alone."""

    def capacity_env(self) -> dict[str, str]:
        """The agents' environment for the declared capacity (empty values: the machine's)."""
        return {"SWARMLET_CPUS": self.cpus, "SWARMLET_MEMORY": self.memory}

    @classmethod
    def of(cls, managers: int, workers: int, **kwargs: Any) -> Layout:
        """manager1..N and worker1..M."""
        names = [f"manager{i}" for i in range(1, managers + 1)]
        names += [f"worker{i}" for i in range(1, workers + 1)]
        return cls(tuple(names), **kwargs)

    def role_names(self, role: str) -> list[str]:
        """The names of one role, in number order."""
        return sorted((n for n in self.names if parse_name(n)[0] == role), key=natural_key)

    def addr(self, name: str) -> str:
        """The address of the node called ``name``."""
        role, index = parse_name(name)
        return node_addr(self.block, role, index)

    def with_names(self, names: Sequence[str]) -> Layout:
        """The same cluster with another node set (managers first, by number)."""
        ordered = sorted(names, key=lambda n: (parse_name(n)[0] != "manager", natural_key(n)))
        founders = tuple(n for n in self.founders if n in ordered)
        return dataclasses.replace(self, names=tuple(ordered), founders=founders)

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict for the state file."""
        return {"names": list(self.names), "block": self.block, "publish": [list(r) for r in self.publish],
                "discover": self.discover, "no_swarm": self.no_swarm, "image": self.image,
                "cpus": self.cpus, "memory": self.memory, "founders": list(self.founders)}

    @classmethod
    def from_json(cls, data: object) -> Layout | None:
        """The inverse of to_json; None for a state file written before layouts were recorded."""
        if not isinstance(data, dict):
            return None
        try:
            publish = tuple((int(a), int(b)) for a, b in data.get("publish", DEFAULT_PUBLISH))
            layout = cls(tuple(str(n) for n in data["names"]), int(data.get("block", 0)), publish,
                         str(data.get("discover", "names")), bool(data.get("no_swarm", False)),
                         data.get("image") or None, str(data.get("cpus") or ""),
                         str(data.get("memory") or ""),
                         tuple(str(n) for n in data.get("founders") or ()))
            for name in layout.names:
                layout.addr(name)
        except (KeyError, TypeError, ValueError, AddressError):
            return None
        return layout


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
    """Backend-specific details (the local backend's process table) and the layout."""

    @property
    def layout(self) -> Layout | None:
        """The cluster's layout as recorded by `up`, `node add` and `node rm`."""
        return Layout.from_json(self.extra.get("layout"))

    def with_layout(self, layout: Layout) -> ClusterState:
        """This state with ``layout`` recorded (and the counts it implies)."""
        extra = dict(self.extra, layout=layout.to_json())
        managers = len(layout.role_names("manager"))
        return ClusterState(self.backend, managers, len(layout.names) - managers, extra)


class Backend(Protocol):
    """A way of running nodes. Every method raises :class:`BackendError` for what the user must fix."""

    name: str

    def check(self, layout: Layout) -> None:
        """Fail early, with advice, when this backend cannot run such a cluster (no engine, port taken)."""

    def prepare(self, progress: Callable[[str], None]) -> str | None:
        """Build or fetch whatever is missing before nodes can start (images), reporting steps.

        Returns the node image the nodes will run (compose), or None (local processes)."""

    def agent_help(self, layout: Layout) -> str:
        """``python -m nodeagent --help`` as the nodes would run it (to check for a flag)."""

    def start_cluster(self, layout: Layout) -> None:
        """Start the nodes of ``layout`` (and remove this cluster's nodes not in it); returns once
        they are started, not once they are Ready."""

    def start_node(self, layout: Layout, name: str) -> None:
        """Start the node ``name`` of ``layout`` alone (`swarmlet node add`); the others are left be."""

    def remove_node(self, layout: Layout, node: NodeHandle) -> None:
        """Stop and remove ``node`` (its container and its data); ``layout`` is the cluster without it."""

    def nodes(self) -> list[NodeHandle]:
        """The nodes this backend runs for the cluster, in a stable order, managers first."""

    def chaos(self, action: str, node: NodeHandle) -> str:
        """Do one of CHAOS_ACTIONS to a node; returns what was done, in a few words."""

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        """The node's log lines (stdout and stderr), following new ones if asked."""

    def down(self) -> list[str]:
        """Remove every node, network and volume the cluster has; returns what was removed."""

    def prometheus_url(self, timeout: float = 60.0) -> str | None:
        """The cluster's Prometheus (docs/metrics.md) once it runs, else None (the local backend
        has none); waits up to ``timeout`` s for a start that `start_cluster` began."""


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
    """Where the join tokens, the cluster's root CA certificate and the operator's certificate
    live; compose.yml reads its token secrets from here. Never the CA's key: that is made on the
    first manager and kept in the Raft store (docs/security.md)."""
    return state_dir()


MANAGER_TOKEN_FILE = "manager_token"
WORKER_TOKEN_FILE = "worker_token"
CA_CERT_FILE = "ca.crt"
OPERATOR_CERT_FILE = "operator.crt"
OPERATOR_KEY_FILE = "operator.key"
_CA_KEY_FILE = "ca.key"


def save_join_tokens(swarm: dict[str, Any], folder: pathlib.Path | None = None) -> bool:
    """Keep the join tokens and the root CA certificate of ``swarm`` (``GET /swarm``) in the
    state folder, where compose's secrets and `swarmlet node add` find them; a CA key file left
    there by an older swarmlet is deleted. False (nothing written) when ``swarm`` holds no tokens."""
    folder = folder or credentials_dir()
    tokens = swarm.get("JoinTokens") or {}
    manager, worker = str(tokens.get("Manager") or ""), str(tokens.get("Worker") or "")
    root = str((swarm.get("TLSInfo") or {}).get("TrustRoot") or "")
    if not manager or not worker:
        return False
    if root:
        from nodeagent.tls import write_private

        write_private(folder, {CA_CERT_FILE: root.encode()})
    for name, token in ((WORKER_TOKEN_FILE, worker), (MANAGER_TOKEN_FILE, manager)):
        _write_in_place(folder / name, (token + "\n").encode())
    (folder / _CA_KEY_FILE).unlink(missing_ok=True)
    return True


def clear_join_tokens(folder: pathlib.Path | None = None) -> None:
    """Empty the token files (made if missing), in place, before a new cluster starts: compose
    mounts them into the joining nodes as they are, and those nodes wait (``--await-token``) until
    :func:`save_join_tokens` writes the new cluster's tokens into the same files."""
    folder = folder or credentials_dir()
    for name in (MANAGER_TOKEN_FILE, WORKER_TOKEN_FILE):
        _write_in_place(folder / name, b"")


def _write_in_place(path: pathlib.Path, data: bytes) -> None:
    """Overwrite ``path`` keeping its inode (mode 0600): a container that has the file
    bind-mounted (a compose secret) sees the new content, where a rename would leave it the old
    file. A reader may see it empty or half written; the agents wait for a whole token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.truncate(0)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)


def has_tokens(folder: pathlib.Path | None = None) -> bool:
    """Whether ``folder`` holds both join tokens."""
    folder = folder or credentials_dir()
    return (folder / MANAGER_TOKEN_FILE).is_file() and (folder / WORKER_TOKEN_FILE).is_file()


def fetch_operator_certificate(control_addr: str, folder: pathlib.Path | None = None,
                               timeout: float = 10.0) -> None:
    """Ask the manager at ``control_addr`` (its 2377) for an operator certificate with the manager
    token kept in ``folder``, and keep it there (operator.crt, operator.key) for
    :func:`use_cluster_tls`. The roots the manager shows are checked against the token's CA
    digest before the token is sent, as a joining node does. Raises BackendError."""
    import grpc
    from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

    from nodeagent import tls

    folder = folder or credentials_dir()
    try:
        token = (folder / MANAGER_TOKEN_FILE).read_text().strip()
    except OSError as e:
        raise BackendError(f"no manager join token in {folder} ({e.strerror})") from None
    digest = token.split("-")[2] if token.count("-") == 3 else ""
    tls.set_enabled(True)
    try:
        with tls.channel(control_addr, joining=True, roots=tls.JOIN_CA_CERT_PEM, sync=True) as channel:
            stub = dispatcher_pb2_grpc.NodeCAStub(channel)  # type: ignore[no-untyped-call]
            roots = bytes(stub.GetRootCACertificate(dispatcher_pb2.GetRootCACertificateRequest(),
                                                    timeout=timeout).certificate)
            if not roots or tls.ca_digest(roots) != digest:
                raise BackendError(f"the root CA of {control_addr} does not match the manager token in "
                                   f"{folder}: the token was not sent")
        key = tls.new_key()
        csr = tls.make_csr(key, tls.OPERATOR_CN)
        request = dispatcher_pb2.IssueOperatorCertificateRequest(token=token, csr=csr)
        with tls.channel(control_addr, joining=True, roots=roots, sync=True) as channel:
            stub = dispatcher_pb2_grpc.NodeCAStub(channel)  # type: ignore[no-untyped-call]
            reply = stub.IssueOperatorCertificate(request, timeout=timeout)
    except grpc.RpcError as e:
        why = e.details() or e.code()
        raise BackendError(f"{control_addr} gave no operator certificate: {why}") from None
    from nodeagent.tls import write_private

    write_private(folder, {OPERATOR_CERT_FILE: bytes(reply.certificate), OPERATOR_KEY_FILE: key,
                            CA_CERT_FILE: bytes(reply.root_ca)})
    held = tls.credentials()
    if held is None or held.identity.node_id == tls.OPERATOR_CN:
        tls.set_credentials(tls.NodeCredentials(bytes(reply.certificate), key, bytes(reply.root_ca)))


def use_cluster_tls(folder: pathlib.Path | None = None) -> bool:
    """Have this process's gRPC clients (``swarmlet status``, the tests) present the operator's
    manager certificate kept in ``folder`` (:func:`fetch_operator_certificate`); False when there
    is none yet, or ``SWARMLET_NO_TLS`` says the nodes run plaintext. A state folder that holds a
    root CA's key (a cluster a test made with its own CA) signs one here instead."""
    from nodeagent import tls

    if os.environ.get("SWARMLET_NO_TLS", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    folder = folder or credentials_dir()
    try:
        cert = (folder / CA_CERT_FILE).read_bytes()
    except OSError:
        return False
    try:
        credentials = tls.NodeCredentials((folder / OPERATOR_CERT_FILE).read_bytes(),
                                          (folder / OPERATOR_KEY_FILE).read_bytes(), cert)
    except OSError:
        credentials = None
    held = tls.credentials()
    if credentials is not None:
        if not (tls.enabled() and held is not None and held.cert_pem == credentials.cert_pem
                and held.roots_pem == cert):
            tls.set_enabled(True)
            tls.set_credentials(credentials)
        return True
    try:
        key = (folder / _CA_KEY_FILE).read_bytes()
    except OSError:
        return False
    if tls.enabled() and held is not None and held.roots_pem == cert:
        return True
    tls.use_operator_certificate(cert, key)
    return True


def write_state(state: ClusterState, folder: pathlib.Path | None = None) -> None:
    """Remember the running cluster, replacing the state file atomically."""
    folder = folder or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{_STATE_FILE}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")
    os.replace(tmp, folder / _STATE_FILE)


def read_state(folder: pathlib.Path | None = None) -> ClusterState | None:
    """The remembered cluster, or None if `swarmlet up` has not made one (or down removed it)."""
    path = (folder or state_dir()) / _STATE_FILE
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


def cluster_block(project: str, layout: Layout | None) -> int:
    """The 127.B block of the project's cluster: the recorded one, else the project's preferred
    block, or the next one no running cluster listens on (read from the kernel's TCP table)."""
    from deploy.addresses import blocks_listening, choose_block, preferred_block

    if layout is not None:
        return layout.block
    preferred = preferred_block(project, DEFAULT_PROJECT)
    if preferred == 0:
        return 0  # the default project's addresses are the documented ones
    try:
        taken = blocks_listening(pathlib.Path("/proc/net/tcp").read_text())
    except OSError:
        taken = set()
    try:
        return choose_block(preferred, taken)
    except AddressError as e:
        raise BackendError(str(e)) from None
