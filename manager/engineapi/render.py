"""Store objects in the Engine API's JSON: one function per object kind, used by every route.

Field order and ``omitempty`` follow Docker's Go types (api/types/swarm), so ``docker node
inspect`` prints what it prints against Docker. What the store does not record (a node's
platform and resources, TLS certificates) is filled from :class:`HostFacts`, the machine every
swarmlet node shares; docs/engineapi.md lists these differences.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

from manager.state.store import StoredObject
from manager.state.store.objects import thaw

__all__ = ["PLUGINS", "HostFacts", "cluster_to_api", "node_to_api", "payload_to_api"]

PLUGINS: tuple[dict[str, str], ...] = (
    {"Type": "Log", "Name": "json-file"},
    {"Type": "Network", "Name": "overlay"},
    {"Type": "Volume", "Name": "local"},
)
"""What a swarmlet engine reports as its plugins (the same as /info's Plugins)."""

_EMPTY_TLS = {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""}


def _memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


@dataclass(frozen=True)
class HostFacts:
    """A node description's defaults: the machine the emulated nodes run on."""

    architecture: str = field(default_factory=lambda: platform.machine() or "x86_64")
    nano_cpus: int = field(default_factory=lambda: (os.cpu_count() or 1) * 1_000_000_000)
    memory_bytes: int = field(default_factory=_memory)


def _dict(value: Any) -> dict[str, Any]:
    return thaw(value) if isinstance(value, dict) else {}


_NO_FIELDS: dict[str, Any] = {}


def _fields(value: Any) -> dict[str, Any]:
    """``value`` itself when it is an object (no copy: it is only read), else no fields."""
    return value if isinstance(value, dict) else _NO_FIELDS


def node_to_api(
    node: StoredObject, leader_id: str, host: HostFacts, unreachable: bool = False
) -> dict[str, Any]:
    """A Node as ``GET /nodes/{id}`` returns it.

    ``leader_id`` is the leader as the answering manager sees it now ("" when it knows none): it
    decides ManagerStatus.Leader, since the stored flag lags a failover. ``unreachable``: the
    answering manager's Raft sees this manager gone now, which the stored reachability may not
    say yet (or ever, without quorum).

    The answer shares the stored object's frozen values (labels, platform, plugins...) instead
    of copying them: ``GET /nodes`` renders every node on every call, and deep copies were a
    third of its time (bench/engine_api.py). It is for encoding; ``thaw`` it to change it.
    """
    spec = _fields(node.spec)
    api_spec: dict[str, Any] = {}
    if spec.get("Name"):
        api_spec["Name"] = spec["Name"]
    api_spec["Labels"] = spec.get("Labels") or {}
    api_spec["Role"] = spec.get("Role") or "worker"
    api_spec["Availability"] = spec.get("Availability") or "active"

    desc = _fields(node.extra.get("Description"))
    engine = _fields(desc.get("Engine"))
    api_engine: dict[str, Any] = {"EngineVersion": engine.get("EngineVersion", "")}
    if engine.get("Labels"):
        api_engine["Labels"] = engine["Labels"]
    api_engine["Plugins"] = engine.get("Plugins") or [dict(p) for p in PLUGINS]
    description = {
        "Hostname": desc.get("Hostname", ""),
        "Platform": desc.get("Platform") or {"Architecture": host.architecture, "OS": "linux"},
        "Resources": desc.get("Resources") or {"NanoCPUs": host.nano_cpus, "MemoryBytes": host.memory_bytes},
        "Engine": api_engine,
        "TLSInfo": desc.get("TLSInfo") or dict(_EMPTY_TLS),
    }

    status = _fields(node.status)
    api_status: dict[str, Any] = {"State": status.get("State") or "unknown"}
    if status.get("Message"):
        api_status["Message"] = status["Message"]
    api_status["Addr"] = status.get("Addr", "")

    out: dict[str, Any] = {
        "ID": node.id,
        "Version": {"Index": node.version},
        "CreatedAt": node.created_at,
        "UpdatedAt": node.updated_at,
        "Spec": api_spec,
        "Description": description,
        "Status": api_status,
    }
    manager = node.extra.get("ManagerStatus")
    if isinstance(manager, dict):
        leads = node.id == leader_id if leader_id else bool(manager.get("Leader")) and not unreachable
        reachability = str(manager.get("Reachability") or "unknown")
        api_manager: dict[str, Any] = {}
        if leads:
            api_manager["Leader"] = True
            reachability = "reachable"
        elif unreachable:
            reachability = "unreachable"
        api_manager["Reachability"] = reachability
        api_manager["Addr"] = manager.get("Addr", "")
        out["ManagerStatus"] = api_manager
    return out


def cluster_to_api(cluster: StoredObject, *, join_tokens: bool) -> dict[str, Any]:
    """The Cluster as ``GET /swarm`` returns it (``join_tokens``) or as /info's Swarm.Cluster (not)."""
    extra = _dict(cluster.extra)
    out: dict[str, Any] = {
        "ID": cluster.id,
        "Version": {"Index": cluster.version},
        "CreatedAt": cluster.created_at,
        "UpdatedAt": cluster.updated_at,
        "Spec": _dict(cluster.spec),
        "TLSInfo": extra.get("TLSInfo") or dict(_EMPTY_TLS),
        "RootRotationInProgress": bool(extra.get("RootRotationInProgress", False)),
        "DefaultAddrPool": extra.get("DefaultAddrPool"),
        "SubnetSize": int(extra.get("SubnetSize") or 24),
        "DataPathPort": int(extra.get("DataPathPort") or 4789),
    }
    if join_tokens:
        tokens = _dict(extra.get("JoinTokens"))
        out["JoinTokens"] = {"Worker": tokens.get("Worker", ""), "Manager": tokens.get("Manager", "")}
    return out


def _driver_to_api(value: Any) -> dict[str, Any]:
    driver = _dict(value)
    out: dict[str, Any] = {"Name": driver.get("Name", "")}
    if driver.get("Options"):
        out["Options"] = driver["Options"]
    return out


def payload_to_api(obj: StoredObject) -> dict[str, Any]:
    """A secret or a config as ``docker secret inspect`` / ``docker config inspect`` print it.

    Spec fields in swarm.SecretSpec's order: Name, Labels (``{}`` when none), Data, Driver,
    Templating, the last three omitted when empty. A secret's Data is never shown (swarmkit
    clears it before answering); a config's is, base64 as Docker shows it.
    """
    spec: dict[str, Any] = {"Name": obj.spec.get("Name", ""), "Labels": _dict(obj.spec.get("Labels"))}
    if obj.kind == "config" and obj.spec.get("Data"):
        spec["Data"] = obj.spec["Data"]
    for key in ("Driver", "Templating"):
        if isinstance(obj.spec.get(key), dict):
            spec[key] = _driver_to_api(obj.spec[key])
    return {
        "ID": obj.id,
        "Version": {"Index": obj.version},
        "CreatedAt": obj.created_at,
        "UpdatedAt": obj.updated_at,
        "Spec": spec,
    }
