"""The objects the store keeps, shaped like swarmkit's and the Docker Engine API's.

Every object is ID + Version.Index + CreatedAt/UpdatedAt + Spec (what the user asked for, which
"the system will never modify") + Status (what was observed), plus ``extra``: the kind's other
top-level fields (a node's Description and ManagerStatus, a task's ServiceID/Slot/NodeID/
DesiredState, the cluster's JoinTokens...). Specs and statuses are JSON objects in the Engine
API's field names (PascalCase), so ``to_api`` is mostly a reshuffle.

Stored JSON is frozen (``FrozenDict``/``FrozenList``): every manager must keep byte-identical
state, and a caller mutating a spec it got from ``Store.get`` in place would silently fork this
manager from the others. ``copy.deepcopy`` of a frozen value gives an ordinary, mutable one.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from nodeagent.identity import new_id

__all__ = [
    "KINDS",
    "NAMED_KINDS",
    "TASK_STATES",
    "FrozenDict",
    "FrozenList",
    "StoredObject",
    "default_cluster_spec",
    "format_timestamp",
    "freeze",
    "new_id",
    "thaw",
]

KINDS: tuple[str, ...] = ("cluster", "node", "service", "task", "network", "secret", "config")

# Kinds whose Spec.Name must be unique (case-insensitively, as swarmkit's name index is).
NAMED_KINDS: frozenset[str] = frozenset({"service", "network", "secret", "config"})

# Swarm's task states in lifecycle order (swarmkit api.TaskState); orchestrators compare positions.
TASK_STATES: tuple[str, ...] = (
    "new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
    "complete", "shutdown", "failed", "rejected", "remove", "orphaned",
)  # fmt: skip



def _frozen(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError("stored objects are read-only: copy.deepcopy() them before changing anything")


class FrozenDict(dict[str, Any]):
    """A JSON object that refuses changes; ``copy.deepcopy`` returns a plain mutable dict."""

    __slots__ = ()
    __setitem__ = _frozen
    __delitem__ = _frozen
    __ior__ = _frozen
    clear = _frozen
    pop = _frozen
    popitem = _frozen
    setdefault = _frozen
    update = _frozen

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        thawed: dict[str, Any] = thaw(self)
        return thawed

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (thaw(self),))


class FrozenList(list[Any]):
    """A JSON array that refuses changes; ``copy.deepcopy`` returns a plain mutable list."""

    __slots__ = ()
    __setitem__ = _frozen
    __delitem__ = _frozen
    __iadd__ = _frozen
    __imul__ = _frozen
    append = _frozen
    extend = _frozen
    insert = _frozen
    pop = _frozen
    remove = _frozen
    clear = _frozen
    sort = _frozen
    reverse = _frozen

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        thawed: list[Any] = thaw(self)
        return thawed

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (thaw(self),))


def freeze(value: Any) -> Any:
    """Return ``value`` (decoded JSON) with every object and array replaced by a frozen copy."""
    if isinstance(value, FrozenDict | FrozenList):
        return value  # frozen all the way down by construction
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return FrozenList(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Return a plain, mutable deep copy of a JSON value (frozen or not)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, eq=True)
class StoredObject:
    """One object as committed: read-only; ``copy.deepcopy(obj.spec)`` to build an update."""

    kind: str
    id: str
    version: int  # Version.Index: the Raft index of the entry that last wrote this object
    created_at: str  # RFC 3339, chosen by the proposer of the entry that created it
    updated_at: str  # RFC 3339, chosen by the proposer of the entry that last wrote it
    spec: dict[str, Any]
    status: dict[str, Any]
    extra: dict[str, Any]

    __hash__ = None  # type: ignore[assignment]  # holds dicts: equality yes, hashing no

    @property
    def name(self) -> str:
        """The name lookups match: Spec.Name; for a node without one, its hostname; for a task, Name."""
        name = self.spec.get("Name")
        if isinstance(name, str) and name:
            return name
        if self.kind == "node":
            desc = self.extra.get("Description")
            if isinstance(desc, Mapping) and isinstance(desc.get("Hostname"), str):
                return str(desc["Hostname"])
        if self.kind == "task" and isinstance(self.extra.get("Name"), str):
            return str(self.extra["Name"])
        return ""

    def data(self) -> bytes:
        """A secret's or config's payload, decoded from Spec.Data (base64); b"" if there is none."""
        raw = self.spec.get("Data")
        return base64.b64decode(raw) if isinstance(raw, str) else b""

    def to_record(self) -> dict[str, Any]:
        """The object as the store serialises it in snapshots (plain JSON, every field)."""
        return {
            "Kind": self.kind,
            "ID": self.id,
            "Version": self.version,
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Spec": self.spec,
            "Status": self.status,
            "Extra": self.extra,
        }

    def to_api(self) -> dict[str, Any]:
        """The object in the Docker Engine API's JSON shape (a fresh, mutable copy).

        Nodes and tasks carry Status; other kinds keep their status out of the API shape.
        Secrets never show their Data, as in Swarm. Networks take the shape of the Engine's
        Network resource (Name, Id, Created, Scope...), since that is what /networks returns.
        """
        if self.kind == "network":
            return self._network_api()
        out: dict[str, Any] = {
            "ID": self.id,
            "Version": {"Index": self.version},
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Spec": thaw(self.spec),
        }
        if self.kind == "secret":
            out["Spec"].pop("Data", None)
        out.update(thaw(self.extra))
        if self.kind in ("node", "task"):
            out["Status"] = thaw(self.status)
        return out

    def _network_api(self) -> dict[str, Any]:
        spec = thaw(self.spec)
        extra = thaw(self.extra)
        options = dict(spec.get("Options") or {})
        options.update(extra.get("DriverOptions") or {})  # e.g. the VXLAN ID the allocator chose
        return {
            "Name": spec.get("Name", ""),
            "Id": self.id,
            "Created": self.created_at,
            "Scope": "swarm",
            "Driver": spec.get("Driver") or "overlay",
            "EnableIPv6": bool(spec.get("EnableIPv6", False)),
            "IPAM": extra.get("IPAM")
            or spec.get("IPAM")
            or {"Driver": "default", "Options": None, "Config": []},
            "Internal": bool(spec.get("Internal", False)),
            "Attachable": bool(spec.get("Attachable", False)),
            "Ingress": bool(spec.get("Ingress", False)),
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {},
            "Options": options,
            "Labels": spec.get("Labels") or {},
            "Version": {"Index": self.version},
            "UpdatedAt": self.updated_at,
        }


def default_cluster_spec() -> dict[str, Any]:
    """Swarm's cluster Spec defaults, as `docker swarm update` reads them back from /swarm."""
    return {
        "Name": "default",
        "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": 5},
        "Raft": {
            "SnapshotInterval": 10000,
            "KeepOldSnapshots": 0,
            "LogEntriesForSlowFollowers": 500,
            "ElectionTick": 10,
            "HeartbeatTick": 1,
        },
        "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},  # nanoseconds: 5 s
        "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000},  # nanoseconds: 90 days
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": False},
    }


def format_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with sub-second digits as Go prints them (trailing zeros dropped): for ``now``."""
    micros = round(seconds * 1_000_000)
    whole, frac = divmod(micros, 1_000_000)
    base = datetime.datetime.fromtimestamp(whole, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:06d}".rstrip("0") + "Z"
    return base + "Z"
