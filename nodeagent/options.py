"""The node agent's configuration: command-line flags, each also readable from the environment.

Every flag ``--some-flag`` can come from ``SWARMLET_SOME_FLAG`` instead; a flag given on the
command line wins over the environment. Bad values raise :class:`OptionsError` whose message
names the flag (or the environment variable, when that is where the value came from), and the
process exits 2 with it, before anything is started or written.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AWAIT_TOKEN_SECONDS", "ENV_PREFIX", "AgentOptions", "OptionsError", "parse_cpus", "parse_options",
           "parse_size"]

AWAIT_TOKEN_SECONDS = 120.0
"""How long ``--await-token`` waits for a token in the token file; then the join goes on with what
the file holds (and an empty or malformed token is refused as without the flag)."""

#: Environment variables that configure the agent start with this.
ENV_PREFIX = "SWARMLET_"

ROLES = ("manager", "worker")
DISCOVER_METHODS = ("mdns",)
GOSSIP_CONFIGS = ("default", "lan")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# A hostname as Docker accepts one: letters, digits, dots, dashes, underscores; at most 253 chars.
_HOSTNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


class OptionsError(ValueError):
    """A configuration value is missing or invalid; ``str(e)`` names the flag or variable."""


@dataclass(frozen=True)
class AgentOptions:
    """Everything the node agent is told at start. Field names follow the flags."""

    role: str
    """``manager`` or ``worker``."""
    hostname: str
    """The node's hostname as Swarm shows it (``docker node ls``)."""
    advertise_addr: str
    """The address other nodes reach this one at (an IP or a resolvable name)."""
    listen_addr: str
    """The address every server of the agent binds to."""
    gossip_port: int
    """Gossip: UDP datagrams and gRPC streams, both on this port (Swarm's 7946)."""
    cluster_port: int
    """Managers: Raft, control API and dispatcher over gRPC (Swarm's 2377)."""
    metrics_port: int
    """Prometheus ``/metrics`` over HTTP (Docker's 9323)."""
    engine_port: int
    """The Docker Engine API over HTTP (Docker's 2375)."""
    data_dir: str
    """Where the node id, the join state and (on managers) Raft's files are kept."""
    bootstrap: bool
    """This manager creates the cluster (the first manager only)."""
    join: tuple[str, ...]
    """Manager cluster addresses ``host:port`` to join through."""
    discover: str | None
    """``mdns`` to find managers by zeroconf, or None to use :attr:`join`."""
    token_file: str | None
    """The file holding the join token this node presents (``SWMTKN-1-...``)."""
    manager_token_file: str | None
    """Managers: the file holding the manager join token the cluster accepts."""
    worker_token_file: str | None
    """Managers: the file holding the worker join token the cluster accepts."""
    gossip_config: str
    """The gossip timing preset: ``default`` or ``lan``."""
    time_scale: float
    """Every protocol timer is multiplied by this (2.0 = slow motion, 0.2 = fast tests)."""
    log_level: str
    """Python logging level name, lower case."""
    await_token: bool = False
    """Wait (up to :data:`AWAIT_TOKEN_SECONDS`) for the token file to hold a join token before
    joining: `swarmlet up` starts every node at once and writes the tokens, in place, once its
    first manager has created the cluster and shown them."""
    no_swarm: bool = False
    """Start in no swarm (Docker's "Swarm: inactive"): the Engine API, gossip and metrics run, and
    the node waits for ``docker swarm init`` or ``docker swarm join``; a node that entered a swarm
    that way comes back in it at restart (``DATA_DIR/swarm.json``)."""
    web_port: int = 8081
    """Managers: the web view of the cluster over HTTP (a promoted worker serves it from then on)."""
    gossip_join: tuple[str, ...] = ()
    """Gossip seed addresses ``host:port``; when empty they are derived from :attr:`join`
    (the managers' hosts at this node's gossip port) or from mDNS."""
    nano_cpus: int | None = None
    """CPUs this node declares (in billionths, as Docker's NanoCPUs); None: the machine's."""
    memory_bytes: int | None = None
    """Memory this node declares, in bytes; None: the machine's."""
    data_path_port: int = 4789
    """The overlay's VXLAN frames (UDP) and stream tunnels (TCP), as Docker's --data-path-port."""
    shared_volumes: str = "/var/lib/swarmlet-shared"
    """The folder of the ``swarmlet/shared`` volume driver: the same folder on every node of the
    cluster (a compose volume mounted into every node; the cluster's state folder locally)."""
    initial_cluster: tuple[tuple[str, str], ...] = ()
    """Managers of a new cluster: its founding managers, (hostname, cluster address), this one
    among them. Each starts as one of Raft's voters with them (as etcd's --initial-cluster), so
    no membership change is needed; their node IDs follow from the cluster's CA and the names
    (:func:`nodeagent.identity.founder_id`). Ignored once the node has Raft data."""
    tls: bool = True
    """Mutual TLS on every gRPC channel between nodes (``--no-tls`` turns it off, for benchmarks)."""
    engine_tls: tuple[str, str, str] | None = None
    """The Engine API over TLS with client certificates, as dockerd's ``--tlsverify``: the files
    (CA that client certificates must chain to, server certificate, server key); None: HTTP."""

    @property
    def gossip_address(self) -> str:
        """The gossip address other nodes use for this one (``advertise_addr:gossip_port``)."""
        return join_host_port(self.advertise_addr, self.gossip_port)

    @property
    def cluster_address(self) -> str:
        """The cluster address other nodes use for this manager (``advertise_addr:cluster_port``)."""
        return join_host_port(self.advertise_addr, self.cluster_port)

    def gossip_seeds(self) -> tuple[str, ...]:
        """The gossip addresses to join through: :attr:`gossip_join`, else the --join hosts."""
        if self.gossip_join:
            return self.gossip_join
        return tuple(join_host_port(split_host_port(a)[0], self.gossip_port) for a in self.join)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``); raise ValueError if it is not one."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{address!r} is not HOST:PORT (port {port_text!r} is not a number)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{address!r}: port must be 1-65535")
    return host, port


# (flag, dest, kind, default, help). The kind picks the parser and the validation.
_FLAGS: list[tuple[str, str, str, object, str]] = [
    ("--role", "role", "choice", None, "manager or worker (required)"),
    ("--hostname", "hostname", "hostname", None, "the node's hostname (default: this machine's)"),
    ("--advertise-addr", "advertise_addr", "host", None,
     "the address other nodes reach this one at (default: what the hostname resolves to)"),
    ("--listen-addr", "listen_addr", "ip", "0.0.0.0", "the address the agent's servers bind to"),
    ("--gossip-port", "gossip_port", "port", 7946, "gossip port: UDP datagrams and gRPC streams"),
    ("--cluster-port", "cluster_port", "port", 2377, "managers: Raft, control API, dispatcher (gRPC)"),
    ("--metrics-port", "metrics_port", "port", 9323, "Prometheus /metrics over HTTP"),
    ("--engine-port", "engine_port", "port", 2375, "the Docker Engine API over HTTP"),
    ("--data-path-port", "data_path_port", "port", 4789, "overlay data path: VXLAN (UDP) and tunnels (TCP)"),
    ("--web-port", "web_port", "port", 8081, "managers: the web view of the cluster over HTTP"),
    ("--data-dir", "data_dir", "path", "/var/lib/swarmlet", "the node's state folder"),
    ("--shared-volumes", "shared_volumes", "path", "/var/lib/swarmlet-shared",
     "the swarmlet/shared volume driver's folder: one folder every node of the cluster mounts"),
    ("--bootstrap", "bootstrap", "bool", False, "this manager creates the cluster (the first one only)"),
    ("--initial-cluster", "initial_cluster", "members", (),
     "managers: the founding managers of a new cluster, NAME=HOST:PORT[,...] (this one among them); "
     "they start as Raft's voters together, and the leader they elect creates the cluster"),
    ("--no-tls", "no_tls", "bool", False,
     "plaintext gRPC between nodes (no certificates): only to measure what mutual TLS costs"),
    ("--tlsverify", "tlsverify", "bool", False,
     "the Engine API over TLS, and only for clients with a certificate signed by --tlscacert "
     "(as dockerd's --tlsverify)"),
    ("--tlscacert", "tlscacert", "file", None, "with --tlsverify: trust client certificates this CA signed"),
    ("--tlscert", "tlscert", "file", None, "with --tlsverify: the Engine API's certificate"),
    ("--tlskey", "tlskey", "file", None, "with --tlsverify: the Engine API's key"),
    ("--no-swarm", "no_swarm", "bool", False,
     "start in no swarm; join or create one through the Engine API (docker swarm join / init)"),
    ("--join", "join", "addresses", (), "manager cluster addresses HOST:PORT[,HOST:PORT...]"),
    ("--gossip-join", "gossip_join", "addresses", (),
     "gossip seeds HOST:PORT[,...] (default: the --join hosts at the gossip port)"),
    ("--discover", "discover", "choice", None, "mdns: find managers by zeroconf instead of --join"),
    ("--token-file", "token_file", "file", None, "the file with the join token this node presents"),
    ("--await-token", "await_token", "bool", False,
     "wait for the token file to hold a join token (it is written once the first manager made the cluster)"),
    ("--manager-token-file", "manager_token_file", "path", None,
     "managers: the manager join token file (--bootstrap: made there if missing, with the root CA)"),
    ("--worker-token-file", "worker_token_file", "path", None,
     "managers: the worker join token file (--bootstrap: made there if missing)"),
    ("--gossip-config", "gossip_config", "choice", "default", "gossip timing preset: default or lan"),
    ("--time-scale", "time_scale", "scale", 1.0, "multiply every protocol timer by this"),
    ("--log-level", "log_level", "choice", "info", "debug, info, warning, error or critical"),
    ("--cpus", "nano_cpus", "cpus", None,
     "CPUs this node declares to the scheduler, e.g. 1 or 0.5 (default: the machine's)"),
    ("--memory", "memory_bytes", "size", None,
     "memory this node declares to the scheduler, e.g. 1g or 512m (default: the machine's)"),
]
_CHOICES = {
    "role": ROLES, "discover": DISCOVER_METHODS, "gossip_config": GOSSIP_CONFIGS, "log_level": LOG_LEVELS,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, so the caller decides (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise OptionsError(message)


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _build_parser() -> _Parser:
    parser = _Parser(prog="python -m nodeagent", description="The swarmlet node agent.",
                     epilog="Every flag can also be set as SWARMLET_<FLAG> in the environment; flags win.")
    for flag, dest, kind, _default, help_text in _FLAGS:
        if kind == "bool":
            parser.add_argument(flag, dest=dest, action="store_const", const="true", default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=dest, default=None, help=f"{help_text} [{_env_name(flag)}]")
    return parser


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> AgentOptions:
    """Build the options from flags and environment; raise :class:`OptionsError` naming the culprit.

    Nothing is touched on disk or the network except name resolution of the hostname when
    ``--advertise-addr`` is not given.
    """
    parser = _build_parser()
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    namespace = parser.parse_args(list(argv))
    values: dict[str, Any] = {}
    for flag, dest, kind, default, _help in _FLAGS:
        raw = getattr(namespace, dest)
        source = flag
        if raw is None and _env_name(flag) in environ:
            raw = environ[_env_name(flag)]
            source = _env_name(flag)
        if raw is None:
            values[dest] = default
            continue
        try:
            values[dest] = _convert(kind, dest, str(raw))
        except ValueError as exc:
            raise OptionsError(f"invalid value for {source}: {exc}") from None
    return _finish(values)


def _convert(kind: str, dest: str, raw: str) -> object:
    value = raw.strip()
    if kind == "choice":
        choices = _CHOICES[dest]
        if value.lower() not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return value.lower()
    if kind == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not a boolean (true or false)")
    if kind == "port":
        try:
            port = int(value)
        except ValueError:
            raise ValueError(f"{raw!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{port} is not a port number (1-65535)")
        return port
    if kind == "scale":
        try:
            scale = float(value)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        # Below 0.01 the timers fall under the loop's own scheduling jitter; above 100 nothing
        # would happen within a human's patience.
        if not 0.01 <= scale <= 100.0:
            raise ValueError(f"{scale} is outside 0.01..100")
        return scale
    if kind == "addresses":
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"{raw!r} names no address")
        for part in parts:
            split_host_port(part)
        return tuple(parts)
    if kind == "members":
        members = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            name, sep, address = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"{part!r} is not NAME=HOST:PORT")
            split_host_port(address.strip())
            members.append((name.strip(), address.strip()))
        names = [name for name, _ in members]
        if not members:
            raise ValueError(f"{raw!r} names no manager")
        if len(set(names)) != len(names):
            raise ValueError(f"{raw!r} names a manager twice")
        return tuple(members)
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{raw!r} is not an IP address") from None
    if kind in ("hostname", "host"):
        if not value or len(value) > 253 or not set(value) <= _HOSTNAME_CHARS | {":"}:
            raise ValueError(f"{raw!r} is not a valid host name")
        if kind == "hostname" and ":" in value:
            raise ValueError(f"{raw!r} is not a valid host name")
        return value
    if kind == "path":
        if not value or "\0" in value:
            raise ValueError(f"{raw!r} is not a path")
        return value
    if kind == "cpus":
        return parse_cpus(value) if value else None
    if kind == "size":
        return parse_size(value) if value else None
    if kind == "file":
        if not os.path.isfile(value):
            raise ValueError(f"{raw!r}: no such file")
        return value
    raise AssertionError(f"unknown option kind {kind}")


def _finish(values: dict[str, Any]) -> AgentOptions:
    if values["no_swarm"]:
        for flag, dest in (("--bootstrap", "bootstrap"), ("--join", "join"), ("--discover", "discover"),
                           ("--token-file", "token_file"), ("--initial-cluster", "initial_cluster")):
            if values[dest]:
                raise OptionsError(f"--no-swarm and {flag} exclude each other: a blank node enters a "
                                   "swarm through docker swarm init or join")
        # A blank node has no role until it enters a swarm: the role is the swarm's to decide.
        values["role"] = values["role"] or "worker"
    if values["role"] is None:
        raise OptionsError(f"--role is required (manager or worker; or set {_env_name('--role')})")
    role = str(values["role"])
    hostname = values["hostname"] or socket.gethostname()
    advertise = values["advertise_addr"]
    if advertise is None:
        try:
            advertise = socket.gethostbyname(str(hostname))
        except OSError as exc:
            raise OptionsError(
                f"--advertise-addr is needed: the hostname {hostname!r} does not resolve ({exc})"
            ) from None
    if values["discover"] is not None and values["join"]:
        raise OptionsError("--discover and --join exclude each other: give one way to find managers")
    if role == "worker":
        for flag, dest in (("--bootstrap", "bootstrap"), ("--manager-token-file", "manager_token_file"),
                           ("--worker-token-file", "worker_token_file"),
                           ("--initial-cluster", "initial_cluster")):
            if values[dest]:
                raise OptionsError(f"{flag} is for managers only (this node's --role is worker)")
    for flag, dest in (("--manager-token-file", "manager_token_file"),
                       ("--worker-token-file", "worker_token_file")):
        # A bootstrapping manager makes the cluster's tokens (and its root CA) where they are missing.
        path = values[dest]
        if path and not values["bootstrap"] and not os.path.isfile(str(path)):
            raise OptionsError(f"invalid value for {flag}: {str(path)!r}: no such file")
    if values["initial_cluster"]:
        names = [name for name, _ in values["initial_cluster"]]
        if values["bootstrap"]:
            raise OptionsError("--bootstrap and --initial-cluster exclude each other: the founding managers "
                               "create the cluster together")
        if str(hostname) not in names:
            raise OptionsError(f"--initial-cluster does not name this node ({hostname}): "
                               f"it names {', '.join(names)}")
        if not values["manager_token_file"]:
            raise OptionsError("--initial-cluster needs --manager-token-file (the founders' node IDs "
                               "follow from the cluster's CA digest in the token)")
    engine_tls = None
    given = [flag for flag in ("tlscacert", "tlscert", "tlskey") if values[flag]]
    if values["tlsverify"]:
        missing = [f"--{flag}" for flag in ("tlscacert", "tlscert", "tlskey") if not values[flag]]
        if missing:
            raise OptionsError(f"--tlsverify needs {', '.join(missing)}")
        engine_tls = (str(values["tlscacert"]), str(values["tlscert"]), str(values["tlskey"]))
    elif given:
        raise OptionsError(f"--{given[0]} is only used with --tlsverify")
    ports = {"--gossip-port": values["gossip_port"], "--metrics-port": values["metrics_port"],
             "--engine-port": values["engine_port"], "--data-path-port": values["data_path_port"],
             "--web-port": values["web_port"]}
    if role == "manager" or values["no_swarm"]:  # a blank node may become a manager
        ports["--cluster-port"] = values["cluster_port"]
    seen: dict[object, str] = {}
    for flag, port in ports.items():
        if port in seen:
            raise OptionsError(f"{flag} {port} is already taken by {seen[port]}")
        seen[port] = flag
    return AgentOptions(
        role=role,
        hostname=str(hostname),
        advertise_addr=str(advertise),
        listen_addr=str(values["listen_addr"]),
        gossip_port=int(values["gossip_port"]),
        cluster_port=int(values["cluster_port"]),
        metrics_port=int(values["metrics_port"]),
        engine_port=int(values["engine_port"]),
        web_port=int(values["web_port"]),
        data_dir=str(values["data_dir"]),
        shared_volumes=str(values["shared_volumes"]),
        bootstrap=bool(values["bootstrap"]),
        join=tuple(values["join"]),
        discover=values["discover"],
        token_file=values["token_file"],
        manager_token_file=values["manager_token_file"],
        worker_token_file=values["worker_token_file"],
        gossip_config=str(values["gossip_config"]),
        time_scale=float(values["time_scale"]),
        log_level=str(values["log_level"]),
        gossip_join=tuple(values["gossip_join"]),
        nano_cpus=values["nano_cpus"],
        memory_bytes=values["memory_bytes"],
        no_swarm=bool(values["no_swarm"]),
        data_path_port=int(values["data_path_port"]),
        initial_cluster=tuple(values["initial_cluster"]),
        tls=not values["no_tls"],
        engine_tls=engine_tls,
        await_token=bool(values["await_token"]),
    )


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from Docker's size words: ``512m``, ``1g``, ``1.5G``, ``2048`` (units of 1024, as Docker's)."""
    value = text.strip().lower()
    if value.endswith("b"):  # "512mb" is "512m", "100b" is 100 bytes
        value = value[:-1]
    unit = value[-1] if value and value[-1] in "kmgt" else ""
    number = value[:-1] if unit else value
    try:
        size = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (like 512m or 1g)") from None
    if not size > 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return int(size * _SIZE_UNITS[unit])


def parse_cpus(text: str) -> int:
    """NanoCPUs from a CPU count, as ``docker service create --reserve-cpu`` reads one: ``0.5`` -> 5e8."""
    try:
        cpus = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of CPUs") from None
    if not 0 < cpus <= 1024:
        raise ValueError(f"{text!r}: the CPUs must be more than 0 (and at most 1024)")
    return round(cpus * 1e9)
