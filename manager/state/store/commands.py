"""The commands a leader proposes to Raft: one batch (a transaction) per log entry.

A batch is canonical JSON: ``{"v": 1, "now": <RFC 3339>, "ops": [...]}``. Everything that must be
the same on every manager and cannot be derived from the log (new IDs, the timestamp) is chosen
by the proposer and carried here; the store's ``apply`` adds only the log index.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from manager.state.store.errors import InvalidObject
from manager.state.store.objects import KINDS, FrozenDict, FrozenList, freeze

__all__ = [
    "FORMAT_VERSION",
    "Create",
    "Delete",
    "Op",
    "Update",
    "canonical_json",
    "check_ops",
    "decode_batch",
    "encode_batch",
    "loads_strict",
]

FORMAT_VERSION = 1  # bump only with a decoder that still reads every older version

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# IDs are chosen by proposers; allow swarmkit's base-36 IDs, Docker's 64-hex network IDs and
# readable test IDs, but nothing that could confuse a URL path or a prefix lookup.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Create:
    """Create object ``id`` of ``kind``; fails if the ID (or, for named kinds, the name) is taken."""

    kind: str
    id: str
    spec: dict[str, Any]
    status: dict[str, Any] | None = None  # None: {}
    extra: dict[str, Any] | None = None  # None: {}


@dataclass(frozen=True)
class Update:
    """Replace the given parts of an object; ``version`` is the Version.Index the writer read.

    A field left None keeps its committed value; a given field replaces it whole (no merging).
    """

    kind: str
    id: str
    version: int
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Delete:
    """Remove an object; with ``version``, only if nobody wrote it since that version was read."""

    kind: str
    id: str
    version: int | None = None


Op = Create | Update | Delete


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value: sorted keys, no spaces, ASCII only, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _check_json(value: Any, where: str) -> None:
    """Reject what would not come back from JSON unchanged (non-string keys, NaN, tuples are fine).

    Frozen values are skipped: they were read from the store, which decoded them from JSON, so
    a spec copied from a stored object (a task's from its service's TaskTemplate) costs nothing.
    """
    if value is None or isinstance(value, bool | int | str | FrozenDict | FrozenList):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidObject(f"{where}: numbers must be finite")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidObject(f"{where}: object keys must be strings, got {k!r}")
            _check_json(v, f"{where}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    raise InvalidObject(f"{where}: {type(value).__name__} is not a JSON value")


def _check_object(value: Any, where: str, *, optional: bool, deep: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, dict):
        raise InvalidObject(f"{where} must be a JSON object")
    if deep:
        _check_json(value, where)


def _check_op(op: Any, i: int, *, deep: bool = True) -> None:
    """Check one operation's shape; ``deep`` also walks the JSON (not needed for decoded JSON)."""
    where = f"operation {i}"
    if not isinstance(op, Create | Update | Delete):
        raise InvalidObject(f"{where}: not a store operation: {type(op).__name__}")
    if op.kind not in KINDS:
        raise InvalidObject(f"{where}: unknown object kind {op.kind!r}")
    if not isinstance(op.id, str) or not _ID.match(op.id):
        raise InvalidObject(f"{where}: invalid {op.kind} ID {op.id!r}")
    if isinstance(op, Create):
        _check_object(op.spec, f"{where}: Spec", optional=False, deep=deep)
        _check_object(op.status, f"{where}: Status", optional=True, deep=deep)
        _check_object(op.extra, f"{where}: {op.kind} fields", optional=True, deep=deep)
    elif isinstance(op, Update):
        if isinstance(op.version, bool) or not isinstance(op.version, int) or op.version < 0:
            raise InvalidObject(f"{where}: version must be a non-negative integer")
        _check_object(op.spec, f"{where}: Spec", optional=True, deep=deep)
        _check_object(op.status, f"{where}: Status", optional=True, deep=deep)
        _check_object(op.extra, f"{where}: {op.kind} fields", optional=True, deep=deep)
    elif op.version is not None and (
        isinstance(op.version, bool) or not isinstance(op.version, int) or op.version < 0
    ):
        raise InvalidObject(f"{where}: version must be a non-negative integer")


def check_ops(ops: Sequence[Op]) -> None:
    """Check the shape of every operation (kinds, IDs, JSON-ness); raises InvalidObject."""
    for i, op in enumerate(ops):
        _check_op(op, i)


def _op_to_json(op: Op) -> dict[str, Any]:
    if isinstance(op, Create):
        return {"op": "create", "kind": op.kind, "id": op.id, "spec": op.spec,
                "status": op.status or {}, "extra": op.extra or {}}  # fmt: skip
    if isinstance(op, Update):
        out: dict[str, Any] = {"op": "update", "kind": op.kind, "id": op.id, "version": op.version}
        for field in ("spec", "status", "extra"):
            value = getattr(op, field)
            if value is not None:
                out[field] = value
        return out
    return {"op": "delete", "kind": op.kind, "id": op.id, "version": op.version}


def encode_batch(ops: Sequence[Op], *, now: str) -> bytes:
    """Encode a transaction for Raft; ``now`` (RFC 3339) becomes CreatedAt/UpdatedAt of what it writes.

    Raises InvalidObject when an operation is malformed: nothing is proposed then.
    """
    if not isinstance(now, str) or not _TIMESTAMP.match(now):
        raise InvalidObject(f"invalid timestamp {now!r}: want RFC 3339, e.g. 2026-11-22T10:44:27.364128Z")
    try:
        check_ops(ops)
        return canonical_json({"v": FORMAT_VERSION, "now": now, "ops": [_op_to_json(op) for op in ops]})
    except RecursionError:
        raise InvalidObject("object nested too deeply") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise InvalidObject("duplicate key in a JSON object")
    return out


def _frozen_object(pairs: list[tuple[str, Any]]) -> FrozenDict:
    # Objects nested in this one are frozen already (the decoder builds inside out); arrays are
    # not, since json has no hook for them, so they are frozen here.
    out = FrozenDict((k, freeze(v) if type(v) is list else v) for k, v in pairs)
    if len(out) != len(pairs):
        raise InvalidObject("duplicate key in a JSON object")
    return out


def _no_constants(name: str) -> Any:
    raise InvalidObject(f"malformed JSON: {name} is not a JSON number")


def loads_strict(data: bytes | str, *, frozen: bool = False) -> Any:
    """Parse JSON, refusing duplicate keys and NaN/Infinity (they would not survive a round trip).

    ``frozen``: build FrozenDict/FrozenList directly, which is what the store keeps.
    """
    hook = _frozen_object if frozen else _no_duplicate_keys
    try:
        return json.loads(data, object_pairs_hook=hook, parse_constant=_no_constants)
    except InvalidObject:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidObject(f"malformed JSON: {exc}") from None


def _field(raw: dict[str, Any], key: str, i: int) -> Any:
    if key not in raw:
        raise InvalidObject(f"malformed batch: operation {i} has no {key!r}")
    return raw[key]


def _op_from_json(raw: Any, i: int) -> Op:
    if not isinstance(raw, dict):
        raise InvalidObject(f"malformed batch: operation {i} is not an object")
    kind, id_ = _field(raw, "kind", i), _field(raw, "id", i)
    action = raw.get("op")
    op: Op
    if action == "create":
        op = Create(kind, id_, _field(raw, "spec", i), raw.get("status"), raw.get("extra"))
    elif action == "update":
        op = Update(
            kind, id_, _field(raw, "version", i), raw.get("spec"), raw.get("status"), raw.get("extra")
        )
    elif action == "delete":
        op = Delete(kind, id_, raw.get("version"))
    else:
        raise InvalidObject(f"malformed batch: operation {i} has unknown op {action!r}")
    _check_op(op, i, deep=False)  # decoded JSON is JSON: only the shape needs checking
    return op


def decode_batch(data: bytes) -> tuple[list[Op], str]:
    """Decode what ``encode_batch`` made: (operations, now). InvalidObject on anything malformed."""
    try:
        raw = loads_strict(data, frozen=True)
    except InvalidObject as exc:
        raise InvalidObject(f"malformed batch: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
        raise InvalidObject("malformed batch: not a version 1 store transaction")
    now, ops = raw.get("now"), raw.get("ops")
    if not isinstance(now, str) or not _TIMESTAMP.match(now):
        raise InvalidObject(f"malformed batch: invalid timestamp {now!r}")
    if not isinstance(ops, list):
        raise InvalidObject("malformed batch: 'ops' is not a list")
    return [_op_from_json(op, i) for i, op in enumerate(ops)], now
