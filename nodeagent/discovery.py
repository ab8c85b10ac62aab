"""Finding managers by mDNS (zeroconf): managers announce, workers with ``--discover mdns`` browse.

A manager registers ``<hostname>._swarmlet._tcp.local.`` with its cluster address (the port is
the cluster port, 2377) and TXT properties ``node_id``, ``role`` and ``gossip`` (its gossip
port). A browsing worker keeps the set of announced managers up to date and hands the agent
session their cluster addresses and the gossip shell their gossip addresses.

mDNS is multicast on the local link, so it works inside one compose network (one broadcast
domain) and not across routed networks; there ``--join`` names the managers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from nodeagent.identity import token_digest
from nodeagent.options import join_host_port

__all__ = ["SERVICE_TYPE", "AnnouncedManager", "ManagerAnnouncer", "ManagerBrowser", "cluster_digest"]

log = logging.getLogger(__name__)

#: The DNS-SD service type managers announce.
SERVICE_TYPE = "_swarmlet._tcp.local."
# Goodbye packets and the socket close must fit in the process's one-second shutdown.
_CLOSE_TIMEOUT_SECONDS = 0.3
_INFO_TIMEOUT_MS = 3000


def cluster_digest(token_file: str | None) -> str:
    """The CA digest of the join token in ``token_file`` ("" if there is none or it is unreadable).

    Tokens read ``SWMTKN-1-<CA digest>-<secret>`` and both tokens of a cluster share the digest,
    so managers announce it and workers keep only the managers of their own cluster: two
    clusters on one network (or one machine) never mix.
    """
    return token_digest(token_file)


def _instance_name(hostname: str) -> str:
    # A DNS label holds at most 63 bytes; hostnames from compose are well below that.
    return f"{hostname[:63]}.{SERVICE_TYPE}"


class ManagerAnnouncer:
    """Announces this manager on the local link until stopped."""

    def __init__(self, *, hostname: str, node_id: str, address: str, cluster_port: int, gossip_port: int,
                 cluster: str = "", interfaces: Any = None) -> None:
        """``address`` is the IP other nodes reach this manager at (the advertise address);
        ``cluster`` is the CA digest of the cluster's tokens (see :func:`cluster_digest`)."""
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            _instance_name(hostname),
            parsed_addresses=[address],
            port=cluster_port,
            properties={"node_id": node_id, "role": "manager", "gossip": str(gossip_port),
                        "cluster": cluster},
            server=f"{hostname[:63]}.local.",
        )
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start announcing (mDNS probing runs in the background, about 0.75 s)."""
        kwargs: dict[str, Any] = {"ip_version": IPVersion.V4Only}
        if self._interfaces is not None:
            kwargs["interfaces"] = self._interfaces
        self._zc = AsyncZeroconf(**kwargs)
        self._task = asyncio.get_running_loop().create_task(self._register(), name="mdns-announce")

    async def _register(self) -> None:
        assert self._zc is not None
        try:
            await (await self._zc.async_register_service(self.info, allow_name_change=True))
            log.info("announcing %s on mDNS", self.info.name)
        except Exception as exc:  # no multicast here: the cluster still works through --join
            log.warning("mDNS announcement failed: %s", exc)

    async def stop(self) -> None:
        """Say goodbye (best effort, bounded) and close."""
        if self._task is not None:
            self._task.cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._zc.async_close(), _CLOSE_TIMEOUT_SECONDS)
            self._zc = None


class AnnouncedManager:
    """One manager seen on mDNS."""

    __slots__ = ("cluster_address", "gossip_address", "hostname", "node_id")

    def __init__(self, hostname: str, node_id: str, cluster_address: str, gossip_address: str) -> None:
        self.hostname = hostname
        self.node_id = node_id
        self.cluster_address = cluster_address
        self.gossip_address = gossip_address


class ManagerBrowser:
    """Keeps the managers announced on the local link; read them any time on the loop."""

    def __init__(self, cluster: str = "", interfaces: Any = None) -> None:
        """Configure; :meth:`start` begins browsing. With ``cluster`` (a CA digest), managers that
        announce another cluster are ignored."""
        self.cluster = cluster
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._found: dict[str, AnnouncedManager] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()
        """Set whenever a manager appears or goes."""

    def managers(self) -> list[str]:
        """Cluster addresses ``host:port`` of the managers seen, sorted."""
        return sorted(m.cluster_address for m in self._found.values())

    def gossip_seeds(self) -> list[str]:
        """Gossip addresses of the managers seen, sorted."""
        return sorted(m.gossip_address for m in self._found.values() if m.gossip_address)

    async def start(self) -> None:
        """Start browsing ``_swarmlet._tcp.local.``."""
        kwargs: dict[str, Any] = {"ip_version": IPVersion.V4Only}
        if self._interfaces is not None:
            kwargs["interfaces"] = self._interfaces
        self._zc = AsyncZeroconf(**kwargs)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            if self._found.pop(name, None) is not None:
                log.info("mDNS: manager %s went away", name)
                self.changed.set()
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _resolve(self, name: str) -> None:
        if self._zc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, _INFO_TIMEOUT_MS):
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            return
        props = {k.decode(errors="replace"): (v or b"").decode(errors="replace")
                 for k, v in info.properties.items()}
        theirs = props.get("cluster", "")
        if self.cluster and theirs and theirs != self.cluster:
            log.debug("mDNS: ignoring %s, a manager of another cluster", name)
            return
        gossip = ""
        if props.get("gossip", "").isdigit():
            gossip = join_host_port(addresses[0], int(props["gossip"]))
        found = AnnouncedManager(
            hostname=name.removesuffix("." + SERVICE_TYPE),
            node_id=props.get("node_id", ""),
            cluster_address=join_host_port(addresses[0], info.port),
            gossip_address=gossip,
        )
        if name not in self._found:
            log.info("mDNS: found manager %s at %s", found.hostname, found.cluster_address)
        self._found[name] = found
        self.changed.set()

    async def stop(self) -> None:
        """Stop browsing and close (bounded)."""
        for task in list(self._pending):
            task.cancel()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._browser.async_cancel(), _CLOSE_TIMEOUT_SECONDS)
            self._browser = None
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._zc.async_close(), _CLOSE_TIMEOUT_SECONDS)
            self._zc = None
