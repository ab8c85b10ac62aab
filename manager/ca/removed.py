"""Removed nodes, kept in the Raft store: their certificates are refused by every manager.

``docker node rm`` deletes the Node object and, in the same write, adds the node's ID to the
Cluster object's ``extra["BlacklistedCertificates"]`` (swarmkit's ``Cluster.BlacklistedCertificates``:
certificate CN -> ``{"Expiry": ...}``), with the time by which every certificate the node may
still hold has expired. Every manager's :class:`~manager.ca.service.CertificateGuard` reads that
list from its own store, so a manager that restarts, recovers from a snapshot or becomes leader
refuses the removed node as the others do. An entry is pruned (on the next removal or ``swarm
update``, as swarmkit does) a week after its expiry: by then the certificate is refused by TLS
itself.

Pure functions over the Cluster object's ``extra``; no I/O, the time is passed in.
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = [
    "CERT_EXPIRY_FIELD",
    "EXPIRED_CERT_GRACE",
    "REMOVED_FIELD",
    "certificate_expiry",
    "is_removed",
    "pruned",
    "removal_expiry",
    "removed_denied",
    "with_removed",
    "without_expired",
]

REMOVED_FIELD = "BlacklistedCertificates"
"""Where the Cluster object keeps removed nodes (in ``extra``; never rendered by the API)."""
CERT_EXPIRY_FIELD = "CertificateExpiry"
"""Where a Node object keeps its latest certificate's NotAfter (in ``extra``, RFC 3339)."""
EXPIRED_CERT_GRACE = datetime.timedelta(days=7)
"""How long an entry outlives its expiry before it is pruned (swarmkit's expiredCertGrace)."""


def removed_denied(node_id: str) -> str:
    """swarmkit's words for a removed node's certificate (ca/auth.go, PermissionDenied)."""
    return f"Permission denied: node {node_id} was removed from swarm"


def _format(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def certificate_expiry(cert_pem: bytes) -> str:
    """A certificate's NotAfter as the Node object records it (RFC 3339, UTC)."""
    from cryptography import x509

    return _format(x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc)


def removal_expiry(node_extra: dict[str, Any], now: datetime.datetime,
                   cert_lifetime: datetime.timedelta) -> datetime.datetime:
    """When every certificate a node removed ``now`` may hold has expired: the later of its
    recorded certificate's NotAfter and ``now + cert_lifetime`` (a renewal whose record was
    lost cannot outlive that, unless ``--cert-expiry`` was lowered since: then the record says)."""
    bound = now + cert_lifetime
    recorded = _parse(node_extra.get(CERT_EXPIRY_FIELD))
    return max(bound, recorded) if recorded is not None else bound


def without_expired(entries: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """``entries`` without those whose expiry passed more than :data:`EXPIRED_CERT_GRACE` ago
    (an entry without an expiry is kept for ever, as in swarmkit)."""
    kept: dict[str, Any] = {}
    for node_id, entry in entries.items():
        expiry = _parse((entry or {}).get("Expiry")) if isinstance(entry, dict) else None
        if expiry is not None and now - EXPIRED_CERT_GRACE > expiry:
            continue
        kept[node_id] = entry
    return kept


def with_removed(extra: dict[str, Any], node_id: str, expiry: datetime.datetime | None,
                 now: datetime.datetime) -> dict[str, Any]:
    """The Cluster ``extra`` with ``node_id`` added to the removed nodes, expired ones pruned."""
    out = dict(extra)
    entries = dict(out.get(REMOVED_FIELD) or {})
    entries[node_id] = {"Expiry": _format(expiry) if expiry is not None else ""}
    out[REMOVED_FIELD] = without_expired(entries, now)
    return out


def pruned(extra: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """The Cluster ``extra`` with expired removed-node entries dropped (``swarm update``)."""
    entries = extra.get(REMOVED_FIELD)
    if not isinstance(entries, dict):
        return extra
    kept = without_expired(entries, now)
    if len(kept) == len(entries):
        return extra
    out = dict(extra)
    out[REMOVED_FIELD] = kept
    return out


def is_removed(cluster: Any, node_id: str) -> bool:
    """Whether the Cluster object lists ``node_id`` as removed (its certificate is refused)."""
    if cluster is None or not node_id:
        return False
    entries = cluster.extra.get(REMOVED_FIELD)
    return isinstance(entries, dict) and node_id in entries
