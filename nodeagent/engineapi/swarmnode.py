"""The node's own swarm routes: ``POST /swarm/init``, ``/swarm/join``, ``/swarm/leave``, ``/swarm/unlock``.

Every node answers them, managers and workers and blank engines alike (they change the node, not
the cluster). Each handler reads the body as Docker's daemon reads it, refuses in the daemon's
order and words, and then asks the node's :class:`SwarmMembership` (nodeagent/membership.py)
to enter or leave. What a refusal says is decided by pure functions here
(:func:`leave_refusal`), so they can be tested as tables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from nodeagent.engineapi.errors import NOT_IN_SWARM, NOT_MANAGER_WORKER, ApiError, json_response
from nodeagent.engineapi.gojson import (
    ANY,
    BOOL,
    INT64,
    STRING,
    UINT64,
    GoJSONError,
    decode,
    map_of,
    scalar,
    slice_of,
    struct,
)
from nodeagent.engineapi.system import SwarmInfo

__all__ = [
    "ALREADY_IN_SWARM",
    "BAD_ADVERTISE_ADDR",
    "BAD_LISTEN_ADDR",
    "CLUSTER_SPEC",
    "INIT_REQUEST",
    "JOIN_REQUEST",
    "JOIN_TIMEOUT",
    "NOT_PART_OF_SWARM",
    "UNLOCK_REQUEST",
    "JoinFailed",
    "NodeSwarmRoutes",
    "SwarmMembership",
    "interface_ipv4",
    "leave_refusal",
    "resolve_address",
]

ALREADY_IN_SWARM = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.'
)
"""Docker's 503 for swarm init or join on a node in a swarm (api/err-swarm-init-again.json)."""
NOT_PART_OF_SWARM = "This node is not part of a swarm"
"""Docker's 503 for swarm leave on a node in no swarm (moby's errNoSwarm)."""
JOIN_TIMEOUT = (
    "Timeout was reached before node joined. The attempt to join the swarm will continue in the "
    'background. Use the "docker info" command to see the current swarm status of your node.'
)
"""Docker's 503 when no manager answered a join in time (five-nodes/x-multi.txt)."""
JOIN_REFUSED = "A valid join token is necessary to join this cluster"
"""The dispatcher's words for a well-formed token that is not the cluster's."""

_UINT32 = scalar("uint32", "uint")
_DURATION = scalar("time.Duration", "int")
CLUSTER_SPEC = struct(
    "swarm.Spec",
    Name=STRING,
    Labels=map_of(STRING),
    Orchestration=struct("swarm.OrchestrationConfig", TaskHistoryRetentionLimit=INT64),
    Raft=struct("swarm.RaftConfig", SnapshotInterval=UINT64, KeepOldSnapshots=UINT64,
                LogEntriesForSlowFollowers=UINT64, ElectionTick=scalar("int", "int"),
                HeartbeatTick=scalar("int", "int")),
    Dispatcher=struct("swarm.DispatcherConfig", HeartbeatPeriod=_DURATION),
    CAConfig=struct("swarm.CAConfig", NodeCertExpiry=_DURATION, ExternalCAs=ANY, SigningCACert=STRING,
                    SigningCAKey=STRING, ForceRotate=UINT64),
    TaskDefaults=struct("swarm.TaskDefaults", LogDriver=ANY),
    EncryptionConfig=struct("swarm.EncryptionConfig", AutoLockManagers=BOOL),
)
"""Docker's swarm.Spec, as ``POST /swarm/update`` and init's Spec read it."""
INIT_REQUEST = struct(
    "swarm.InitRequest",
    ListenAddr=STRING, AdvertiseAddr=STRING, DataPathAddr=STRING, DataPathPort=_UINT32,
    ForceNewCluster=BOOL, Spec=CLUSTER_SPEC, AutoLockManagers=BOOL,
    Availability=scalar("swarm.NodeAvailability", "string"), DefaultAddrPool=slice_of(STRING),
    SubnetSize=_UINT32,
)
"""Docker's swarm.InitRequest (the manager that creates the cluster merges its Spec)."""
JOIN_REQUEST = struct(
    "swarm.JoinRequest",
    ListenAddr=STRING, AdvertiseAddr=STRING, DataPathAddr=STRING, RemoteAddrs=slice_of(STRING),
    JoinToken=STRING, Availability=scalar("swarm.NodeAvailability", "string"),
)
"""Docker's swarm.JoinRequest."""
UNLOCK_REQUEST = struct("swarm.UnlockRequest", UnlockKey=STRING)
"""Docker's swarm.UnlockRequest."""

_DEFAULT_SWARM_PORT = 2377
# Seconds the daemon waits for a join before answering JOIN_TIMEOUT (moby's swarmConnectTimeout).
_JOIN_SECONDS = 20.0
_INIT_SECONDS = 30.0


class JoinFailed(Exception):
    """A join did not succeed; ``str(e)`` is the managers' refusal, and ``timed_out`` says the
    node is still trying (Docker's "Timeout was reached ...")."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class SwarmMembership(Protocol):
    """What the routes ask of the node (nodeagent.membership.NodeSwarm)."""

    @property
    def role(self) -> str:
        """The role running now ("" in no swarm)."""
        ...

    def in_swarm(self) -> bool:
        """Whether the node is in a swarm, or joining one."""
        ...

    async def init(self, advertise_addr: str, spec: dict[str, Any], *, timeout: float) -> str:
        """Become the first manager of a new cluster; the node id."""
        ...

    async def join(self, remote_addrs: list[str], token: str, advertise_addr: str, *, timeout: float) -> str:
        """Join through the managers with the token; the role granted (raises JoinFailed)."""
        ...

    async def leave(self) -> None:
        """Leave: session ended, role retired, swarm state deleted."""
        ...


ManagerStats = Callable[[], "tuple[bool, int, int] | None"]
"""(this manager reachable, reachable managers, unreachable managers), None when not known."""


def leave_refusal(is_manager: bool, stats: tuple[bool, int, int] | None) -> str | None:
    """What Docker says to ``swarm leave`` without ``--force`` (None: the node may leave).

    moby's Cluster.Leave: any manager is refused; the last one is told that its state would be
    erased, one whose leaving loses the quorum how many managers would be left.
    """
    if not is_manager:
        return None
    message = "You are attempting to leave the swarm on a node that is participating as a manager. "
    if stats is not None:
        active, reachable, unreachable = stats
        if active and reachable - 2 <= unreachable:
            if reachable == 1 and unreachable == 0:
                return message + "Removing the last manager erases all current state of the swarm. " \
                                 "Use `--force` to ignore this message. "
            left, total = reachable - 1, reachable + unreachable
            message += (f"Removing this node leaves {left} managers out of {total}. "
                        "Without a Raft quorum your swarm will be inaccessible. ")
    return message + ("The only way to restore a swarm that has lost consensus is to reinitialize it with "
                      "`--force-new-cluster`. Use `--force` to suppress this message.")


BAD_LISTEN_ADDR = "listen address must be an IP address or network interface (with optional port number)"
BAD_ADVERTISE_ADDR = (
    "advertise address must be a non-zero IP address or network interface (with optional port number)"
)


def _host(address: str) -> str:
    """The host of ``host`` or ``host:port`` (``[v6]:port`` too)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of the network interface ``name`` (``eth0``), None if there is no such one."""
    import fcntl
    import socket
    import struct as cstruct

    if not name or len(name) > 15 or name not in {n for _, n in socket.if_nameindex()}:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, cstruct.pack("256s", name.encode()))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def resolve_address(host: str, *, unspecified_ok: bool,
                    interfaces: Callable[[str], str | None] = interface_ipv4) -> str | None:
    """An address as moby resolves ``--listen-addr`` / ``--advertise-addr``: an interface name
    gives its address, an IP is taken as it is (0.0.0.0 only where ``unspecified_ok``); None for
    anything else (a host name is not accepted, as in Docker)."""
    found = interfaces(host)
    if found is not None:
        return found
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if ip.is_unspecified and not unspecified_ok else str(ip)


def _with_port(address: str) -> str:
    """``address`` with Swarm's port when it names none (moby's validateAddr)."""
    if address.startswith("[") and "]:" in address:
        return address
    if address.count(":") == 1 and address.rsplit(":", 1)[1].isdigit():
        return address
    return f"{address}:{_DEFAULT_SWARM_PORT}"


def _body(raw: bytes, target: Any) -> dict[str, Any]:
    try:
        decoded = decode(raw or b"{}", target)
    except GoJSONError as exc:
        raise ApiError.bad_request(str(exc)) from None
    return decoded if isinstance(decoded, dict) else {}


class NodeSwarmRoutes:
    """The handlers of the node's swarm routes, for one node."""

    def __init__(self, membership: SwarmMembership, engine: Any, *, time_scale: float = 1.0,
                 interfaces: Callable[[str], str | None] = interface_ipv4) -> None:
        """``engine`` gives ``swarm_info()`` and ``manager_stats()`` (the EngineApiServer);
        ``interfaces(name)`` the address of a network interface (tests replace it)."""
        self.membership = membership
        self.engine = engine
        self.time_scale = time_scale
        self._interfaces = interfaces

    def _addresses(self, body: dict[str, Any]) -> str:
        """Check ListenAddr and AdvertiseAddr as moby does; the advertise host ("" for the node's own)."""
        listen = str(body.get("ListenAddr", ""))
        if not listen:
            raise ApiError.bad_request('invalid ListenAddr "": invalid empty address')
        if resolve_address(_host(listen), unspecified_ok=True, interfaces=self._interfaces) is None:
            raise ApiError.bad_request(BAD_LISTEN_ADDR)
        advertise = str(body.get("AdvertiseAddr", ""))
        if not advertise:
            return ""
        resolved = resolve_address(_host(advertise), unspecified_ok=False, interfaces=self._interfaces)
        if resolved is None:
            raise ApiError.bad_request(BAD_ADVERTISE_ADDR)
        return resolved

    def _info(self) -> SwarmInfo:
        info: SwarmInfo = self.engine.swarm_info()
        return info

    async def init(self, request: web.Request) -> web.StreamResponse:
        """``POST /swarm/init``: a new cluster with this node its first manager; the node id."""
        body = _body(await request.read(), INIT_REQUEST)
        if self.membership.in_swarm():
            if body.get("ForceNewCluster"):
                raise ApiError.not_implemented(
                    "swarmlet does not support --force-new-cluster on a node in a swarm")
            raise ApiError.unavailable(ALREADY_IN_SWARM)
        advertise = self._addresses(body)
        spec = body.get("Spec") or {}
        name = spec.get("Name", "")
        if name not in ("", "default"):
            raise ApiError.bad_request('swarm spec must be named "default"')
        if body.get("AutoLockManagers"):
            spec = {**spec, "EncryptionConfig": {"AutoLockManagers": True}}
        try:
            node_id = await self.membership.init(advertise, spec, timeout=_INIT_SECONDS * self.time_scale)
        except ApiError:
            raise
        except TimeoutError:
            # moby's words when the swarm node does not come up; the node is blank again.
            raise ApiError(500, "swarm component could not be started: the new manager did not "
                                "join its own cluster in time") from None
        except Exception as exc:  # the manager role did not start (a cluster port taken...)
            raise ApiError(500, f"swarm component could not be started: {exc}") from None
        return json_response(node_id)

    async def join(self, request: web.Request) -> web.StreamResponse:
        """``POST /swarm/join``: join through the managers given; answers once joined."""
        body = _body(await request.read(), JOIN_REQUEST)
        if self.membership.in_swarm():
            raise ApiError.unavailable(ALREADY_IN_SWARM)
        if not body.get("ListenAddr"):
            raise ApiError.bad_request('invalid ListenAddr "": invalid empty address')
        remotes = [str(a) for a in body.get("RemoteAddrs") or [] if a]
        if not remotes:
            raise ApiError.bad_request("at least 1 RemoteAddr is required to join")
        advertise = self._addresses(body)
        try:
            token = str(body.get("JoinToken", "")).strip()
            await self.membership.join([_with_port(a) for a in remotes], token, advertise,
                                       timeout=_JOIN_SECONDS * self.time_scale)
        except JoinFailed as exc:
            if exc.timed_out:
                raise ApiError.unavailable(JOIN_TIMEOUT) from None
            message = str(exc)
            if message == JOIN_REFUSED:
                # Swarm's dispatcher refuses with gRPC InvalidArgument: the daemon's 400.
                raise ApiError.bad_request(f"rpc error: code = InvalidArgument desc = {message}") from None
            raise ApiError(500, message) from None
        return web.Response(status=200)

    async def leave(self, request: web.Request) -> web.StreamResponse:
        """``POST /swarm/leave?force=``: a manager needs ``force``; then the node is blank again."""
        if not self.membership.in_swarm():
            raise ApiError.unavailable(NOT_PART_OF_SWARM)
        force = request.query.get("force", "").strip().lower() not in ("", "0", "no", "false", "none")
        if not force:
            stats = getattr(self.engine, "manager_stats", lambda: None)()
            refusal = leave_refusal(self.membership.role == "manager", stats)
            if refusal is not None:
                raise ApiError.unavailable(refusal)
        await self.membership.leave()
        return web.Response(status=200)

    async def unlock(self, request: web.Request) -> web.StreamResponse:
        """``POST /swarm/unlock``: a manager locked by autolock gets its key (moby's UnlockSwarm:
        the node's state is checked first, then the key)."""
        info = self._info()
        if info.local_node_state != "locked":
            if info.control_available:
                raise ApiError.conflict("swarm is not locked")
            raise ApiError.unavailable(NOT_MANAGER_WORKER if info.local_node_state == "active"
                                       else NOT_IN_SWARM)
        body = _body(await request.read(), UNLOCK_REQUEST)
        await self.engine.unlock(str(body.get("UnlockKey", "")))
        return web.Response(status=200)
