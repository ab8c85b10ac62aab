"""What a node says about itself: ``/version``, ``/info`` and the Swarm part of ``/info``.

The shapes are Docker's (api/version.json, api/info.json in the reference recordings); the
values are swarmlet's own: the Engine version is swarmlet's version, the Go-specific fields say
Python, and counters of things swarmlet does not have (images, a storage driver) are zero or
empty rather than invented.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "NodeFacts",
    "SwarmInfo",
    "info_body",
    "rfc3339_nano",
    "session_swarm_info",
    "version_body",
]

API_VERSION = "1.47"
"""The Engine API version served (Docker 27)."""
MIN_API_VERSION = "1.24"
"""The oldest Engine API version accepted."""


def rfc3339_nano(ns: int) -> str:
    """A UTC time as Go's RFC3339Nano prints it: up to 9 fractional digits, trailing zeros dropped."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


def _os_release() -> tuple[str, str]:
    try:
        with open("/etc/os-release") as f:
            pairs = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return "Linux", ""
    return pairs.get("PRETTY_NAME", "Linux").strip('"'), pairs.get("VERSION_ID", "").strip('"')


@dataclass(frozen=True)
class NodeFacts:
    """The node's identity and its machine, as /version and /info report them."""

    node_id: str
    hostname: str
    engine_version: str
    """swarmlet's version: what ``docker version`` shows as the Engine's."""
    kernel_version: str = field(default_factory=lambda: platform.release())
    architecture: str = field(default_factory=lambda: platform.machine() or "x86_64")
    ncpu: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_bytes: int = field(default_factory=_memory_bytes)
    started_ns: int = field(default_factory=time.time_ns)

    @property
    def go_arch(self) -> str:
        """The architecture in Go's words (``amd64``), as /version's Arch has it."""
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(self.architecture, self.architecture)


@dataclass(frozen=True)
class SwarmInfo:
    """The Swarm section of /info, and what /_ping's Swarm header says."""

    local_node_state: str = "inactive"
    """inactive, pending, active, error or locked (Docker's LocalNodeState)."""
    node_id: str = ""
    node_addr: str = ""
    control_available: bool = False
    """True on a manager: it answers the cluster routes."""
    error: str = ""
    remote_managers: tuple[tuple[str, str], ...] | None = None
    """(NodeID, Addr) of the managers this node knows; None before it knows any."""
    nodes: int = 0
    managers: int = 0
    cluster: dict[str, Any] | None = None
    """Managers only: the cluster object (ID, Version, CreatedAt, UpdatedAt, Spec, TLSInfo...)."""

    def ping_header(self) -> str:
        """The ``Swarm`` header of /_ping: ``inactive``, ``active/worker``, ``active/manager``..."""
        if self.local_node_state != "active":
            return self.local_node_state
        return "active/manager" if self.control_available else "active/worker"

    def to_api(self) -> dict[str, Any]:
        """Docker's ``Info.Swarm`` (Nodes, Managers and Cluster only on managers, as omitempty does)."""
        out: dict[str, Any] = {
            "NodeID": self.node_id,
            "NodeAddr": self.node_addr,
            "LocalNodeState": self.local_node_state,
            "ControlAvailable": self.control_available,
            "Error": self.error,
            "RemoteManagers": None
            if self.remote_managers is None
            else [{"NodeID": n, "Addr": a} for n, a in self.remote_managers],
        }
        if self.nodes:
            out["Nodes"] = self.nodes
        if self.managers:
            out["Managers"] = self.managers
        if self.cluster is not None:
            out["Cluster"] = self.cluster
        return out


def session_swarm_info(session: Callable[[], Any], node_id: str, node_addr: str) -> Callable[[], SwarmInfo]:
    """The node's own view of its swarm, from its agent session (``session()``; None: no session).

    A node with no session is in no swarm; a session that has not joined yet is pending. A
    worker knows the manager its session is open with (not that manager's node id). A manager's
    cluster routes replace this view with the store's.
    """

    def view() -> SwarmInfo:
        current = session()
        if current is None:
            return SwarmInfo(node_addr=node_addr)
        connected = str(getattr(current, "connected_to", "") or "")
        return SwarmInfo(
            local_node_state="active" if getattr(current, "joined", False) else "pending",
            # The session's: a node joined through the Engine API runs under the ID the CA chose.
            node_id=str(getattr(current, "node_id", "") or node_id),
            node_addr=node_addr,
            remote_managers=(("", connected),) if connected else (),
        )

    return view


def version_body(facts: NodeFacts) -> dict[str, Any]:
    """``GET /version``: api/version.json's shape with swarmlet's values."""
    details = {
        "ApiVersion": API_VERSION,
        "Arch": facts.go_arch,
        "BuildTime": rfc3339_nano(facts.started_ns),
        "Experimental": "false",
        "GitCommit": "swarmlet",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": facts.kernel_version,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "swarmlet"},
        "Components": [{"Name": "Engine", "Version": facts.engine_version, "Details": details}],
        "Version": facts.engine_version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "swarmlet",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": facts.go_arch,
        "KernelVersion": facts.kernel_version,
        "BuildTime": details["BuildTime"],
    }


def info_body(facts: NodeFacts, swarm: SwarmInfo, now_ns: int | None = None) -> dict[str, Any]:
    """``GET /info``: api/info.json's shape; Swarm is :meth:`SwarmInfo.to_api`."""
    os_name, os_version = _os_release()
    return {
        "ID": facts.node_id,
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "swarmlet",
        "DriverStatus": None,
        "Plugins": {"Volume": ["local"], "Network": ["overlay"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": False,
        "SwapLimit": False,
        "CpuCfsPeriod": False,
        "CpuCfsQuota": False,
        "CPUShares": False,
        "CPUSet": False,
        "PidsLimit": False,
        "IPv4Forwarding": False,
        "Debug": False,
        "NFd": 0,
        "OomKillDisable": False,
        "NGoroutines": 0,
        "SystemTime": rfc3339_nano(time.time_ns() if now_ns is None else now_ns),
        "LoggingDriver": "json-file",
        "CgroupDriver": "none",
        "CgroupVersion": "",
        "NEventsListener": 0,
        "KernelVersion": facts.kernel_version,
        "OperatingSystem": os_name,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": facts.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": None,
        "NCPU": facts.ncpu,
        "MemTotal": facts.memory_bytes,
        "GenericResources": None,
        "DockerRootDir": "/var/lib/swarmlet",
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": facts.hostname,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": facts.engine_version,
        "Runtimes": {"swarmlet": {"path": "swarmlet"}},
        "DefaultRuntime": "swarmlet",
        "Swarm": swarm.to_api(),
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [],
        "Warnings": None,
    }
