"""Sequential specifications the checker orders operations against.

Both models are a register (read, write, cas) starting at null; ``kv`` is one independent register
per key, so its history is split per key and each part checked on its own (a kv store is
linearizable exactly when every key is, because linearizability is local: Herlihy and Wing).

Values are interned to small integers (by their canonical JSON text) so that the search compares
and hashes ints; :class:`ValueTable` turns them back into JSON for messages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from manager.check.history import HistoryError, Operation

__all__ = [
    "CAS",
    "CAS_FAILED",
    "CAS_MAYBE",
    "MODELS",
    "NULL",
    "READ",
    "UNREAD",
    "WRITE",
    "Step",
    "ValueTable",
    "encode",
    "split",
    "step",
]

MODELS = ("register", "kv")
"""Model names accepted by ``--model``."""

NULL = 0
"""The interned id of JSON null: a register's value before anything is written."""

UNREAD = 1
"""Stands for every written value that no operation ever reads or compares against.

Such values are interchangeable for the future of a search (every read and cas of a known value
fails on them, every failed cas succeeds), so they share one id and one memo entry.
"""

# What an operation does to the register, once its outcome is folded in.
READ = 0  # ok read: the register must hold ``a``
WRITE = 1  # ok write, or a write that may have happened (info): the register becomes ``a``
CAS = 2  # ok cas: the register must hold ``a``; it becomes ``b``
CAS_FAILED = 3  # failed cas: the register must hold anything but ``a``; unchanged
CAS_MAYBE = 4  # cas with unknown outcome: becomes ``b`` if it holds ``a``, else unchanged


class ValueTable:
    """Interns JSON values as ints; equal JSON (after key sorting) gets the same id."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {"null": NULL}
        self._texts: list[str] = ["null", "(a value no operation reads)"]

    def intern(self, value: Any) -> int:
        """The id of ``value``, assigned on first sight."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        found = self._ids.get(text)
        if found is None:
            found = len(self._texts)
            self._ids[text] = found
            self._texts.append(text)
        return found

    def text(self, value_id: int) -> str:
        """The JSON text of an interned value."""
        return self._texts[value_id]


@dataclass(frozen=True, slots=True)
class Step:
    """An operation as the search sees it: what it does (``kind``) to the register, with ``a``/``b``.

    ``call`` and ``ret`` order it in real time; ``ret`` None is a response at infinity.
    """

    kind: int
    a: int
    b: int
    call: int
    ret: int | None
    op: Operation


def step(state: int, kind: int, a: int, b: int) -> int:
    """The register after applying one operation to ``state``, or -1 when it cannot apply there."""
    if kind == READ:
        return state if state == a else -1
    if kind == WRITE:
        return a
    if kind == CAS:
        return b if state == a else -1
    if kind == CAS_FAILED:
        return state if state != a else -1
    # CAS_MAYBE: taking effect needs the expected value; otherwise it is as if it never ran.
    return b if state == a else state


def encode(op: Operation, values: ValueTable) -> Step | None:
    """Fold an operation's outcome into what it does, or None when it certainly changed nothing.

    - a failed read or write did not happen; a read that never returned (info) constrains nothing;
    - a failed cas did happen: it read a value other than the expected one;
    - a write or cas that ended in info may have happened at any point after its invoke, or not at
      all: it gets a response at infinity, so the search may also place it after everything else,
      which is the same as leaving it out.
    """
    if op.f == "read":
        if op.outcome != "ok":
            return None
        return Step(READ, values.intern(op.result), 0, op.call, op.ret, op)
    if op.f == "write":
        if op.outcome == "fail":
            return None
        return Step(WRITE, values.intern(op.value), 0, op.call, op.ret, op)
    expected, new = values.intern(op.value[0]), values.intern(op.value[1])
    kind = {"ok": CAS, "fail": CAS_FAILED, "info": CAS_MAYBE}[op.outcome]
    return Step(kind, expected, new, op.call, op.ret, op)


def split(ops: Sequence[Operation], model: str) -> dict[str | int | None, list[Operation]]:
    """The independent parts of a history: one per key for ``kv``, one for ``register``.

    A ``register`` history must use one key (or none); a second key is an error naming its line,
    since checking two registers as one would report anomalies that are not there.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    parts: dict[str | int | None, list[Operation]] = {}
    if model == "register":
        first = ops[0].key if ops else None
        for op in ops:
            if op.key != first:
                raise HistoryError(
                    f"key {json.dumps(op.key)} differs from {json.dumps(first)}: the register model"
                    " checks one register (use --model kv for one register per key)",
                    op.invoke_line,
                )
        if ops:
            parts[first] = list(ops)
        return parts
    for op in ops:
        parts.setdefault(op.key, []).append(op)
    return parts
