"""The embedded DNS of a node, as a pure resolver over the endpoint table, and VIP balancing.

Docker's rules (libnetwork's resolver, swarm mode), which this file holds in one place:

* a name is looked up on the networks the asking task is attached to, in the order of its
  attachments; the first network that knows the name answers (a task never learns names of a
  network it is not on);
* a service name, or an alias its service gave it on that network, resolves to the service's VIP
  on that network in ``vip`` mode, to the addresses of its running tasks in ``dnsrr`` mode;
* ``tasks.NAME`` resolves to the addresses of the running tasks of service NAME (either mode);
* names are case-insensitive and a trailing dot is ignored; task addresses are sorted, so the
  answer is the same on every node (Docker shuffles them; round robin is done on the VIP instead).

Traffic to a VIP goes to one of the service's running tasks on that network, chosen round robin
per (network, VIP) by :class:`RoundRobin` (IPVS does this in Docker's load-balancer sandbox).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nodeagent.networkdb.core import Endpoint

__all__ = ["Answer", "RoundRobin", "backends", "find_endpoint", "resolve"]


@dataclass(frozen=True)
class Answer:
    """What a name resolved to, on which network."""

    network_id: str
    addresses: tuple[str, ...]
    vip: bool  # True when the one address is a VIP (balanced by the node)


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _addr_key(addr: str) -> tuple[int, str]:
    try:
        return int(ipaddress.ip_address(addr)), addr
    except ValueError:
        return 0, addr


def resolve(name: str, networks: Sequence[str], endpoints: Iterable[Endpoint]) -> Answer | None:
    """Resolve ``name`` for a task attached to ``networks`` (in order); None when unknown (NXDOMAIN)."""
    wanted = _norm(name)
    if not wanted:
        return None
    tasks_of = wanted[len("tasks."):] if wanted.startswith("tasks.") else None
    by_network: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_network.setdefault(endpoint.network_id, []).append(endpoint)
    for network in networks:
        found = by_network.get(network, [])
        if tasks_of is not None:
            hits = [e for e in found if e.service.lower() == tasks_of]
            if hits:
                return Answer(network, tuple(sorted({e.addr for e in hits}, key=_addr_key)), False)
            continue
        hits = [e for e in found if e.service.lower() == wanted or wanted in (a.lower() for a in e.aliases)]
        if not hits:
            continue
        vips = sorted({e.vip for e in hits if e.endpoint_mode == "vip" and e.vip})
        if vips:
            return Answer(network, (vips[0],), True)
        return Answer(network, tuple(sorted({e.addr for e in hits}, key=_addr_key)), False)
    return None


def backends(network: str, vip: str, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The running tasks behind ``vip`` on ``network``, in a stable order (empty: not a VIP)."""
    hits = [e for e in endpoints if e.network_id == network and e.vip == vip and e.endpoint_mode == "vip"]
    return sorted(hits, key=lambda e: (_addr_key(e.addr), e.task_id))


def find_endpoint(network: str, addr: str, endpoints: Iterable[Endpoint]) -> Endpoint | None:
    """The task holding overlay address ``addr`` on ``network``."""
    for endpoint in endpoints:
        if endpoint.network_id == network and endpoint.addr == addr:
            return endpoint
    return None


@dataclass
class RoundRobin:
    """The next backend for each (network, VIP), in turn."""

    _next: dict[tuple[str, str], int] = field(default_factory=dict)

    def pick(self, network: str, vip: str, choices: Sequence[Endpoint]) -> Endpoint | None:
        """One of ``choices``, the one after the last picked for this VIP."""
        if not choices:
            return None
        key = (network, vip)
        index = self._next.get(key, 0) % len(choices)
        self._next[key] = index + 1
        return choices[index]
