"""Request bodies read the way Docker's daemon reads them: Go's encoding/json into Go structs.

The docker CLI and every other Engine API client were written against Go's decoder, so its
rules are the contract:

* object keys match struct fields by name, exactly or else case-insensitively
  (``{"labels": ...}`` fills ``Labels``); unknown keys are ignored; a repeated key: the last wins;
* ``null`` leaves a field at its zero value (here: the key is absent from the result);
* a value of the wrong JSON type is refused in Go's words, naming the struct and the field path:
  ``json: cannot unmarshal string into Go struct field NodeSpec.Labels of type map[string]string``;
* bad syntax is refused with Go's scanner message (``invalid character 'n' looking for
  beginning of object key string``).

A Go type is described once with :func:`struct`, :func:`map_of`, :func:`slice_of` and the scalar
constructors; :func:`decode` checks a body against it and returns plain Python values whose
object keys are the fields' declared names.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ANY",
    "BOOL",
    "BYTES",
    "INT64",
    "STRING",
    "UINT64",
    "GoField",
    "GoJSONError",
    "GoType",
    "decode",
    "go_base64",
    "map_of",
    "open_struct",
    "scalar",
    "slice_of",
    "struct",
]

Kind = Literal["string", "int", "uint", "float", "bool", "bytes", "map", "slice", "struct", "any"]


class GoJSONError(ValueError):
    """The body does not decode into the Go type; ``str(e)`` is Go's message."""


@dataclass(frozen=True)
class GoField:
    """One field of a Go struct: its JSON name and type."""

    name: str
    type: GoType


@dataclass(frozen=True)
class GoType:
    """A Go type as encoding/json sees it; ``name`` is how Go prints it (``swarm.NodeRole``)."""

    name: str
    kind: Kind
    elem: GoType | None = None
    fields: tuple[GoField, ...] = ()
    open: bool = False  # keep keys the struct does not declare (parts swarmlet keeps unread)

    @property
    def short_name(self) -> str:
        """The struct's name without its package, as Go's errors name the containing struct."""
        return self.name.rsplit(".", 1)[-1]


def scalar(name: str, kind: Kind) -> GoType:
    """A named scalar type, such as ``scalar("swarm.NodeRole", "string")``."""
    return GoType(name, kind)


STRING = scalar("string", "string")
INT64 = scalar("int64", "int")
UINT64 = scalar("uint64", "uint")
BOOL = scalar("bool", "bool")
ANY = scalar("interface {}", "any")
BYTES = scalar("[]uint8", "bytes")
"""``[]byte``: a base64 string (standard alphabet, padded), decoded as Go decodes it; kept as base64."""


def map_of(elem: GoType) -> GoType:
    """``map[string]<elem>``."""
    return GoType(f"map[string]{elem.name}", "map", elem)


def slice_of(elem: GoType) -> GoType:
    """``[]<elem>``."""
    return GoType(f"[]{elem.name}", "slice", elem)


def struct(name: str, **fields: GoType) -> GoType:
    """A struct named ``name`` (with its package: ``swarm.NodeSpec``), fields in declared order."""
    return GoType(name, "struct", fields=tuple(GoField(k, v) for k, v in fields.items()))


def open_struct(name: str, **fields: GoType) -> GoType:
    """A struct whose declared fields are typed and whose other keys are kept as given.

    For a part swarmlet stores without reading all of it (a ContainerSpec), where only some
    fields need Go's checks.
    """
    return GoType(name, "struct", fields=tuple(GoField(k, v) for k, v in fields.items()), open=True)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUES = {c: i for i, c in enumerate(_B64)}


def go_base64(text: str) -> bytes:
    """``text`` decoded as Go's base64.StdEncoding decodes it (what encoding/json does for []byte).

    Newlines are skipped; anything else wrong is Go's ``illegal base64 data at input byte N``,
    N counted as Go counts it. Trailing bits of the last quantum are ignored, as in Go.
    """
    out = bytearray()
    si, n = 0, len(text)
    while True:
        quantum: list[int] = []
        while len(quantum) < 4:
            if si == n:
                if not quantum:
                    return bytes(out)
                raise GoJSONError(f"illegal base64 data at input byte {si - len(quantum)}")
            char = text[si]
            si += 1
            if char in _B64_VALUES:
                quantum.append(_B64_VALUES[char])
                continue
            if char in "\r\n":
                continue
            if char != "=" or len(quantum) < 2:
                raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
            if len(quantum) == 2:  # "==" expected: the first is read
                while si < n and text[si] in "\r\n":
                    si += 1
                if si == n:
                    raise GoJSONError(f"illegal base64 data at input byte {n}")
                if text[si] != "=":
                    raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < n and text[si] in "\r\n":
                si += 1
            if si < n:
                raise GoJSONError(f"illegal base64 data at input byte {si}")
            break
        value = 0
        for part in quantum:
            value = value << 6 | part
        value <<= 6 * (4 - len(quantum))
        out += value.to_bytes(3, "big")[: len(quantum) - 1]
        if len(quantum) < 4:
            return bytes(out)


class _Number(float):
    """A JSON number that is not an integer literal; keeps its text for Go's error message."""

    text: str

    def __new__(cls, text: str) -> _Number:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in 'cannot unmarshal X into ...'."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass
class _Context:
    """Go's errorContext: the innermost struct being filled and the path of field names."""

    struct: GoType | None
    path: tuple[str, ...]

    def refuse(self, value_kind: str, target: GoType) -> GoJSONError:
        if self.struct is None:
            return GoJSONError(f"json: cannot unmarshal {value_kind} into Go value of type {target.name}")
        field = ".".join(self.path)
        return GoJSONError(
            f"json: cannot unmarshal {value_kind} into Go struct field "
            f"{self.struct.short_name}.{field} of type {target.name}"
        )


_INT_LIMITS = {"int": (-(2**63), 2**63 - 1), "uint": (0, 2**64 - 1)}


def _convert(value: Any, target: GoType, ctx: _Context) -> Any:
    kind = target.kind
    if kind == "any":
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise ctx.refuse(_json_kind(value), target)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ctx.refuse(_json_kind(value), target)
        return value
    if kind in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.refuse(_json_kind(value), target)
        low, high = _INT_LIMITS[kind]
        if isinstance(value, _Number) or not low <= value <= high:
            text = value.text if isinstance(value, _Number) else str(value)
            raise ctx.refuse(f"number {text}", target)
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.refuse(_json_kind(value), target)
        return float(value)
    if kind == "bytes":
        if not isinstance(value, str):
            raise ctx.refuse(_json_kind(value), target)
        return base64.b64encode(go_base64(value)).decode()
    if kind == "map":
        if not isinstance(value, dict):
            raise ctx.refuse(_json_kind(value), target)
        assert target.elem is not None
        return {k: _convert(v, target.elem, ctx) for k, v in value.items() if v is not None}
    if kind == "slice":
        if not isinstance(value, list):
            raise ctx.refuse(_json_kind(value), target)
        assert target.elem is not None
        return [_convert(v, target.elem, ctx) for v in value]
    if not isinstance(value, dict):
        raise ctx.refuse(_json_kind(value), target)
    return _struct(value, target, ctx)


def _struct(value: dict[str, Any], target: GoType, ctx: _Context) -> dict[str, Any]:
    exact = {f.name: f for f in target.fields}
    folded = {f.name.lower(): f for f in reversed(target.fields)}  # the first declared wins
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = exact.get(key) or folded.get(key.lower())
        if field is None:
            if target.open:
                out[key] = item
            continue  # Go ignores keys the struct does not have
        if item is None:
            out.pop(field.name, None)
            continue
        inner = _Context(target, (*ctx.path, field.name))
        out[field.name] = _convert(item, field.type, inner)
    return out


def _last_pairs_win(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)


def _char(text: str, pos: int) -> str:
    c = text[pos]
    return "'" + (c if c.isprintable() else c.encode("unicode_escape").decode()) + "'"


def _open_container(text: str, pos: int) -> str:
    """The innermost bracket open at ``pos`` ("{", "[" or "")."""
    stack: list[str] = []
    in_string = escaped = False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    """Go's scanner message for the error Python's parser found (same position, Go's words)."""
    pos = exc.pos
    if pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    where = _char(text, pos)
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {where} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {where} after object key"
    if exc.msg.startswith("Expecting ','"):
        if _open_container(text, pos) == "{":
            return f"invalid character {where} after object key:value pair"
        return f"invalid character {where} after array element"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {where} after top-level value"
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {where} in string literal"
    for literal in ("true", "false", "null"):
        if text[pos] == literal[0]:
            for offset, expected in enumerate(literal[1:], 1):
                if pos + offset >= len(text):
                    return "unexpected EOF"
                if text[pos + offset] != expected:
                    return (f"invalid character {_char(text, pos + offset)} in literal {literal} "
                            f"(expecting '{expected}')")
    return f"invalid character {where} looking for beginning of value"


def decode(body: bytes | str, target: GoType) -> Any:
    """Decode ``body`` into ``target`` as Go's json.Decoder would; raise :class:`GoJSONError`.

    An empty body decodes to the zero value (an empty struct), as Docker's daemon accepts it.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        return {} if target.kind == "struct" else None
    try:
        value = json.loads(text, object_pairs_hook=_last_pairs_win, parse_float=_Number)
    except json.JSONDecodeError as exc:
        raise GoJSONError(_syntax_message(text, exc)) from None
    if value is None:
        return {} if target.kind == "struct" else None
    return _convert(value, target, _Context(None, ()))
