"""The Cluster spec as ``docker swarm init`` and ``docker swarm update`` send it: decoded, checked, merged.

Pure functions, no I/O. ``swarm init`` merges the values given into the running defaults (moby's
MergeSwarmSpecToGRPC: a field left zero keeps the default); ``swarm update`` replaces the spec
with the one given (swarmkit's UpdateCluster: the CLI sends back the spec it read, changed),
checked in swarmkit's words. Raft's ticks are the exception in both: they are fixed when the
cluster is created, as Swarm's managers read them only when they start, and swarmlet shows what
runs, so the stored ticks are kept whatever the request says.
"""

from __future__ import annotations

import copy
from typing import Any

from manager.ca.tokens import InvalidToken, rotate_token
from manager.keysync import UNLOCK_KEY_FIELD
from nodeagent.engineapi.swarmnode import CLUSTER_SPEC

__all__ = ["CLUSTER_SPEC", "SpecRefused", "merge_init_spec", "rotated_tokens", "updated_spec",
           "with_unlock_key"]

_MIN_CERT_EXPIRY_NS = 3600 * 1_000_000_000
"""swarmkit's ca.MinNodeCertExpiration: one hour."""
_TICKS = ("ElectionTick", "HeartbeatTick")


class SpecRefused(ValueError):
    """The spec is refused; ``code`` is swarmkit's gRPC code name, ``str(e)`` its words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _section(spec: dict[str, Any], name: str) -> dict[str, Any]:
    value = spec.get(name)
    return value if isinstance(value, dict) else {}


def _check(spec: dict[str, Any]) -> None:
    """swarmkit's validateClusterSpec, in its order."""
    expiry = _section(spec, "CAConfig").get("NodeCertExpiry")
    if isinstance(expiry, int) and expiry < _MIN_CERT_EXPIRY_NS:
        raise SpecRefused("InvalidArgument", "minimum certificate expiry time is: 1h0m0s")
    period = _section(spec, "Dispatcher").get("HeartbeatPeriod")
    if isinstance(period, int) and period < 0:
        raise SpecRefused("InvalidArgument", "heartbeat time period cannot be a negative duration")
    if spec.get("Name", "") != "default":
        raise SpecRefused("InvalidArgument", "modification of cluster name is not allowed")


def updated_spec(current: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The spec ``swarm update`` stores: ``given`` in Swarm's shape, the running ticks kept.

    Raises :class:`SpecRefused` (nothing is written then).
    """
    spec: dict[str, Any] = {
        "Name": given.get("Name", ""),
        "Labels": dict(given.get("Labels") or {}),
        "Orchestration": {"TaskHistoryRetentionLimit": int(_section(given, "Orchestration")
                                                             .get("TaskHistoryRetentionLimit", 0))},
        "Raft": {name: int(_section(given, "Raft").get(name, 0))
                 for name in ("SnapshotInterval", "KeepOldSnapshots", "LogEntriesForSlowFollowers")},
        "Dispatcher": {"HeartbeatPeriod": int(_section(given, "Dispatcher").get("HeartbeatPeriod", 0))},
        "CAConfig": {"NodeCertExpiry": int(_section(given, "CAConfig").get("NodeCertExpiry", 0))},
        "TaskDefaults": copy.deepcopy(_section(given, "TaskDefaults")),
        "EncryptionConfig": {"AutoLockManagers": bool(_section(given, "EncryptionConfig")
                                                      .get("AutoLockManagers", False))},
    }
    for tick in _TICKS:
        spec["Raft"][tick] = _section(current, "Raft").get(tick, 0)
    ca = _section(given, "CAConfig")
    for name in ("ExternalCAs", "SigningCACert", "SigningCAKey", "ForceRotate"):
        if ca.get(name):
            spec["CAConfig"][name] = copy.deepcopy(ca[name])
    _check(spec)
    return spec


def merge_init_spec(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The spec a new cluster is created with: ``base`` (the running values) and what ``swarm
    init`` set (a zero value keeps the default, as moby merges; ticks are never taken)."""
    spec = copy.deepcopy(base)
    if given.get("Labels"):
        spec["Labels"] = dict(given["Labels"])
    limit = _section(given, "Orchestration").get("TaskHistoryRetentionLimit")
    if limit is not None:
        spec["Orchestration"]["TaskHistoryRetentionLimit"] = int(limit)
    raft = _section(given, "Raft")
    for name in ("SnapshotInterval", "LogEntriesForSlowFollowers"):
        if raft.get(name):
            spec["Raft"][name] = int(raft[name])
    if raft.get("KeepOldSnapshots") is not None:
        spec["Raft"]["KeepOldSnapshots"] = int(raft["KeepOldSnapshots"])
    period = _section(given, "Dispatcher").get("HeartbeatPeriod")
    if period:
        spec["Dispatcher"]["HeartbeatPeriod"] = int(period)
    expiry = _section(given, "CAConfig").get("NodeCertExpiry")
    if expiry:
        spec["CAConfig"]["NodeCertExpiry"] = int(expiry)
    if _section(given, "EncryptionConfig").get("AutoLockManagers"):
        spec["EncryptionConfig"] = {"AutoLockManagers": True}
    return spec


def with_unlock_key(extra: dict[str, Any], spec: dict[str, Any], *, rotate: bool,
                    fresh: str) -> dict[str, Any]:
    """The Cluster's extra with its unlock key as swarmkit's UpdateCluster leaves it: none
    without autolock; ``fresh`` (a new ``SWMKEY-1-...``) when autolock has no key yet or the key
    is rotated; else the key kept."""
    out = dict(extra)
    if not _section(spec, "EncryptionConfig").get("AutoLockManagers"):
        out.pop(UNLOCK_KEY_FIELD, None)
    elif rotate or not out.get(UNLOCK_KEY_FIELD):
        out[UNLOCK_KEY_FIELD] = fresh
    return out


def rotated_tokens(tokens: dict[str, Any], *, worker: bool, manager: bool) -> dict[str, Any]:
    """The Cluster's JoinTokens with the ones asked for replaced by fresh ones (same CA)."""
    out = dict(tokens)
    for asked, key in ((worker, "Worker"), (manager, "Manager")):
        if asked:
            try:
                out[key] = rotate_token(str(tokens.get(key) or ""))
            except InvalidToken:
                raise SpecRefused("Internal", "error loading cluster rootCA for update") from None
    return out
