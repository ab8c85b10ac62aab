"""Where each node of a cluster is on the host: the address scheme, pure (no I/O).

Separate machines have an address each, and `docker -H tcp://ADDR:2375` picks the machine. Here
every node gets a loopback address of its own (Linux routes the whole of 127.0.0.0/8 to the
loopback interface, and Docker publishes on any of them without set-up):

    127.B.1.i   manager i   (manager1 127.B.1.1, manager2 127.B.1.2, ...)
    127.B.2.i   worker i    (worker1 127.B.2.1, ...)
    127.B.3.1   the cluster's Prometheus (its UI and API on 9090), never a node's

B is the cluster's *block*: 0 for the default project ``swarmlet`` (so its manager1 is 127.0.1.1,
the address the docs use), and for any other project a number from 1 to 254 derived from its
name, moved to the next free one at `swarmlet up` when another cluster already listens there,
and then recorded in the cluster's state file. Two clusters therefore never share an address,
and every node can use Swarm's own ports (2375, 2377, 9323, and the published service ports).
The compose and local backends use the same scheme.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Iterable, Sequence

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_PUBLISH",
    "ENGINE_PORT",
    "MAX_INDEX",
    "NODE_PORTS",
    "PROMETHEUS_PORT",
    "AddressError",
    "PortRange",
    "blocks_listening",
    "choose_block",
    "docker_host",
    "env_line",
    "format_publish",
    "next_free_name",
    "node_addr",
    "parse_name",
    "parse_publish",
    "port_bindings",
    "preferred_block",
    "prometheus_addr",
    "prometheus_url",
]

ENGINE_PORT = 2375
"""The Docker Engine API, on every node as on every Docker engine."""
WEB_PORT = 8081
"""The managers' web view (docs/web.md)."""
NODE_PORTS = (2377, 2375, 9323, WEB_PORT)
"""What every node publishes on its address: cluster (Raft, control API), Engine API, metrics,
and the web view.

Workers publish 2377 and 8081 too: a worker promoted later serves them, and Docker fixes a
container's published ports when it starts."""
_RESERVED = {2377, 2375, 9323, WEB_PORT, 7946, 4789}
"""Ports the node itself uses: never a service port."""

PortRange = tuple[int, int]
"""An inclusive range of published service ports; a single port is (p, p)."""

DEFAULT_PUBLISH: tuple[PortRange, ...] = ((80, 80), (8080, 8080))
"""Service ports each node publishes for the routing mesh unless `--publish` says otherwise:
80 and 8080, the tutorials' ports. Each published port is a docker-proxy process per node (about
4 s of bring-up and 240 MiB for ten more ports on five nodes, measured), so Swarm's automatic
range (30000-32767) is published only when asked: `--publish 80,8080,30000-30009`."""

DEFAULT_BLOCK = 0
"""The default project's block: its nodes are 127.0.1.i and 127.0.2.i."""
MAX_INDEX = 254
"""Managers and workers are numbered 1 to 254 (the last octet)."""
_ROLE_OCTET = {"manager": 1, "worker": 2}
_SERVICES_OCTET = 3
"""127.B.3.x: the cluster's own services (its Prometheus), apart from the nodes' 127.B.1/2.x."""
PROMETHEUS_PORT = 9090
"""Prometheus's own port (its UI and HTTP API), on the cluster's Prometheus address."""
_NAME = re.compile(r"^(manager|worker)([1-9][0-9]*)$")


class AddressError(ValueError):
    """Bad input to the scheme (a port list, a name, a full block); the message is for the user."""


def preferred_block(project: str, default_project: str = "swarmlet") -> int:
    """The block a project asks for first: 0 for the default project, else 1..254 from its name.

    A hash (CRC-32, stable across runs and machines) spreads projects over the blocks, so the
    tests' projects and a user's second cluster rarely even meet."""
    if project == default_project:
        return DEFAULT_BLOCK
    return zlib.crc32(project.encode()) % 254 + 1


def choose_block(preferred: int, taken: Collection[int]) -> int:
    """``preferred`` if free, else the next free block after it (wrapping within 1..254)."""
    if preferred not in taken:
        return preferred
    for step in range(1, 255):
        block = (preferred - 1 + step) % 254 + 1
        if block not in taken:
            return block
    raise AddressError("every 127.B block from 1 to 254 has a cluster listening on it")


def blocks_listening(proc_net_tcp: str) -> set[int]:
    """The blocks B with a listening TCP socket on some 127.B.1.x or 127.B.2.x, from /proc/net/tcp.

    That is where a running cluster's nodes (their docker-proxy or their own processes) listen;
    the kernel's table sees both backends' clusters, whichever project made them."""
    found = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        addr_hex = fields[1].split(":")[0]
        if len(addr_hex) != 8:
            continue
        # /proc/net/tcp writes the IPv4 address as a little-endian 32-bit hex number.
        octets = bytes.fromhex(addr_hex)[::-1]
        if octets[0] == 127 and octets[2] in (1, 2):
            found.add(octets[1])
    return found


def node_addr(block: int, role: str, index: int) -> str:
    """The address of manager ``index`` or worker ``index`` in block ``block``."""
    if role not in _ROLE_OCTET:
        raise AddressError(f"unknown role {role!r}: manager or worker")
    if not 0 <= block <= 254:
        raise AddressError(f"block {block} is outside 0..254")
    if not 1 <= index <= MAX_INDEX:
        raise AddressError(f"{role}{index}: nodes are numbered 1 to {MAX_INDEX}")
    return f"127.{block}.{_ROLE_OCTET[role]}.{index}"


def prometheus_addr(block: int) -> str:
    """Where the cluster of block ``block`` publishes its Prometheus: 127.B.3.1, no node's address."""
    if not 0 <= block <= 254:
        raise AddressError(f"block {block} is outside 0..254")
    return f"127.{block}.{_SERVICES_OCTET}.1"


def prometheus_url(block: int) -> str:
    """The base URL of that Prometheus (its UI; the HTTP API under /api/v1)."""
    return f"http://{prometheus_addr(block)}:{PROMETHEUS_PORT}"


def parse_name(name: str) -> tuple[str, int]:
    """``"worker12"`` -> ``("worker", 12)``; anything else is refused."""
    match = _NAME.match(name)
    if not match:
        raise AddressError(f"{name!r} is not a node name of the form managerN or workerN")
    index = int(match.group(2))
    if index > MAX_INDEX:
        raise AddressError(f"{name}: nodes are numbered 1 to {MAX_INDEX}")
    return match.group(1), index


def next_free_name(role: str, names: Iterable[str]) -> str:
    """The lowest-numbered ``role`` name not in ``names`` (worker1 again after worker1 was removed)."""
    used = set()
    for name in names:
        match = _NAME.match(name)
        if match and match.group(1) == role:
            used.add(int(match.group(2)))
    for index in range(1, MAX_INDEX + 1):
        if index not in used:
            return f"{role}{index}"
    raise AddressError(f"the cluster already has {MAX_INDEX} {role}s")


def parse_publish(text: str) -> tuple[PortRange, ...]:
    """``"80,8080,30000-30009"`` -> ranges, checked: 1..65535, not a node's own port, no overlap.

    An empty string publishes no service port."""
    ranges: list[PortRange] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise AddressError(f"invalid port {item!r} in --publish: use PORT or START-END, comma separated")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        if not 1 <= start <= end <= 65535:
            raise AddressError(f"invalid port range {item!r} in --publish: ports are 1 to 65535, "
                               "START <= END")
        own = sorted(p for p in _RESERVED if start <= p <= end)
        if own:
            raise AddressError(f"--publish {item}: port {own[0]} is the node's own "
                               "(2375, 2377, 4789, 7946, 9323)")
        for a, b in ranges:
            if start <= b and a <= end:
                raise AddressError(f"--publish {item} overlaps {format_publish([(a, b)])}")
        ranges.append((start, end))
    return tuple(sorted(ranges))


def format_publish(ranges: Sequence[PortRange]) -> str:
    """The inverse of :func:`parse_publish`: ``"80,8080,30000-30009"``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def port_bindings(addr: str, publish: Sequence[PortRange]) -> list[str]:
    """Compose's ``ports`` entries for a node at ``addr``: its own ports, then the service ports,
    each on the same port number of its own address."""
    entries = [f"{addr}:{port}:{port}" for port in NODE_PORTS]
    for a, b in publish:
        span = str(a) if a == b else f"{a}-{b}"
        entries.append(f"{addr}:{span}:{span}")
    return entries


def docker_host(addr: str) -> str:
    """The DOCKER_HOST value that reaches the Engine API of the node at ``addr``."""
    return f"tcp://{addr}:{ENGINE_PORT}"


def names_a_node_engine(value: str) -> bool:
    """Whether a DOCKER_HOST value is a swarmlet node's Engine API (tcp://127.B.R.I:2375, R 1 or 2),
    as `swarmlet env` prints it: the engine that runs the node containers is never there."""
    if not value.startswith("tcp://"):
        return False
    host, _, port = value[len("tcp://"):].rstrip("/").rpartition(":")
    octets = host.split(".")
    if port != str(ENGINE_PORT) or len(octets) != 4 or not all(o.isdigit() for o in octets):
        return False
    return octets[0] == "127" and int(octets[2]) in _ROLE_OCTET.values() and 1 <= int(octets[3]) <= MAX_INDEX


def env_line(addr: str) -> str:
    """What `swarmlet env` prints, for a shell to ``eval``."""
    return f"export DOCKER_HOST={docker_host(addr)}"
