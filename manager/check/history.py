"""Reading and validating operation histories.

A history is JSON lines, one event per line, in the order the events happened::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": [1, 2]}
    {"process": 3, "type": "fail", "f": "cas", "key": "k1", "value": [1, 2]}

Every ``invoke`` is completed by the next ``ok``, ``fail`` or ``info`` event of the same process.
This module pairs them into :class:`Operation` records and rejects anything it cannot pair, naming
the line, so that the checker never has to guess what a malformed history meant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNCTIONS",
    "OUTCOMES",
    "HistoryError",
    "Operation",
    "load_history",
    "parse_operations",
    "read_history",
]

FUNCTIONS = ("read", "write", "cas")
"""The operations a register knows."""

OUTCOMES = ("ok", "fail", "info")
"""How an invoked operation can end."""

_TYPES = ("invoke", *OUTCOMES)


class HistoryError(ValueError):
    """A history that cannot be read as one: ``line`` is the offending line (1-based) when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        self.reason = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True, slots=True)
class Operation:
    """One invoked operation and how it ended.

    ``call`` and ``ret`` are positions in the history (event numbers, 0-based) and give the real-time
    order; ``ret`` is None when the operation has no known end (``info``, or still open when the
    history stops), which the checker treats as a response at infinity.
    """

    process: int | str
    f: str  # "read", "write" or "cas"
    key: str | int | None
    value: Any  # the invoke's value: None for a read, the value for a write, [expected, new] for a cas
    outcome: str  # "ok", "fail" or "info" ("info" also for an operation never completed)
    result: Any  # for an ok read, the value read; otherwise None
    invoke_line: int
    complete_line: int | None  # None when the history ends before the operation does
    call: int
    ret: int | None

    def describe(self) -> dict[str, Any]:
        """The operation as a JSON-friendly dict, for printing the ones that cannot be ordered."""
        shown: dict[str, Any] = {"process": self.process, "type": self.outcome, "f": self.f}
        if self.key is not None:
            shown["key"] = self.key
        shown["value"] = self.result if self.f == "read" else self.value
        shown["invoke_line"] = self.invoke_line
        shown["complete_line"] = self.complete_line
        return shown


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `"process": true` is a mistake, not process 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_event(event: Any, line: int) -> tuple[int | str, str, str, str | int | None]:
    """Shape checks that do not need the rest of the history; returns (process, type, f, key)."""
    if not isinstance(event, Mapping):
        raise HistoryError(f"expected a JSON object, got {type(event).__name__}", line)
    for field in ("process", "type", "f"):
        if field not in event:
            raise HistoryError(f'missing "{field}"', line)
    process = event["process"]
    if not (_is_int(process) or isinstance(process, str)):
        raise HistoryError(f'"process" must be an integer or a string, not {json.dumps(process)}', line)
    kind = event["type"]
    if kind not in _TYPES:
        raise HistoryError(f'"type" must be one of {", ".join(_TYPES)}, not {json.dumps(kind)}', line)
    f = event["f"]
    if f not in FUNCTIONS:
        raise HistoryError(f'"f" must be one of {", ".join(FUNCTIONS)}, not {json.dumps(f)}', line)
    key = event.get("key")
    if key is not None and not (_is_int(key) or isinstance(key, str)):
        raise HistoryError(f'"key" must be a string or an integer, not {json.dumps(key)}', line)
    if kind == "invoke":
        value = event.get("value")
        if f == "read" and value is not None:
            raise HistoryError('a read is invoked with "value": null (the value read goes on its ok)', line)
        if f == "write" and "value" not in event:
            raise HistoryError('a write is invoked with the "value" it writes', line)
        if f == "cas" and not (isinstance(value, list) and len(value) == 2):
            raise HistoryError('a cas is invoked with "value": [expected, new]', line)
    elif kind == "ok" and f == "read" and "value" not in event:
        raise HistoryError('an ok read must carry the "value" it read (null if nothing was written)', line)
    return process, kind, f, key


def parse_operations(
    events: Iterable[Mapping[str, Any]], lines: Sequence[int] | None = None
) -> list[Operation]:
    """Pair invokes with their completions, in invoke order.

    ``lines[i]`` is the file line of event ``i`` (for messages); without it, event ``i`` is line i+1.
    Raises :class:`HistoryError` naming the line on anything malformed. Operations still open when
    the history ends become ``info``: they may or may not have happened.
    """
    open_ops: dict[int | str, tuple[int, int, Mapping[str, Any]]] = {}  # process -> (position, line, invoke)
    done: list[Operation] = []
    position = -1
    for position, event in enumerate(events):
        line = lines[position] if lines is not None else position + 1
        process, kind, f, key = _check_event(event, line)
        if kind == "invoke":
            if process in open_ops:
                _, open_line, pending = open_ops[process]
                raise HistoryError(
                    f"process {process!r} invokes a {f} while its {pending['f']} from line {open_line}"
                    " has not completed (a process runs one operation at a time)",
                    line,
                )
            open_ops[process] = (position, line, event)
            continue
        if process not in open_ops:
            raise HistoryError(f"{kind} {f} for process {process!r}, which has no operation open", line)
        call, invoke_line, invoke = open_ops.pop(process)
        if invoke["f"] != f:
            raise HistoryError(
                f"{kind} {f} completes process {process!r}'s {invoke['f']} from line {invoke_line}", line
            )
        if invoke.get("key") != key:
            raise HistoryError(
                f"completion key {json.dumps(key)} differs from the invoke's {json.dumps(invoke.get('key'))}"
                f" (line {invoke_line})",
                line,
            )
        # A process whose operation ended in info may issue more: it is then a new logical process,
        # which needs nothing special here because every operation is checked on its own.
        done.append(
            Operation(
                process=process,
                f=f,
                key=key,
                value=invoke.get("value"),
                outcome=kind,
                result=event.get("value") if (f == "read" and kind == "ok") else None,
                invoke_line=invoke_line,
                complete_line=line,
                call=call,
                ret=position if kind != "info" else None,
            )
        )
    for process, (call, invoke_line, invoke) in open_ops.items():
        done.append(
            Operation(
                process=process,
                f=invoke["f"],
                key=invoke.get("key"),
                value=invoke.get("value"),
                outcome="info",
                result=None,
                invoke_line=invoke_line,
                complete_line=None,
                call=call,
                ret=None,
            )
        )
    done.sort(key=lambda op: op.call)
    return done


def read_history(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """Read and validate a JSON-lines file; returns the events and the line number of each.

    Blank lines are skipped. Raises :class:`HistoryError` naming the line on malformed input and
    ``OSError`` when the file cannot be read.
    """
    events: list[dict[str, Any]] = []
    lines: list[int] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise HistoryError("not UTF-8 text", number) from None
            if not text.strip():
                continue
            try:
                event = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise HistoryError(f"not valid JSON: {exc.msg} (column {exc.colno})", number) from None
            if not isinstance(event, dict):
                raise HistoryError(f"expected a JSON object, got {type(event).__name__}", number)
            events.append(event)
            lines.append(number)
    parse_operations(events, lines)
    return events, lines


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines history, validated; :class:`HistoryError` ("line 12: ...") if malformed."""
    return read_history(path)[0]
