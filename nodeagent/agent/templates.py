"""Templated secrets and configs (``--template-driver golang``), expanded as swarmkit's agent does.

In Swarm the agent expands a payload whose Spec.Templating.Name is ``golang`` when the task
starts (swarmkit template/expand.go): Go's text/template with ``missingkey=error``, the context
``.Service.{ID,Name,Labels}``, ``.Node.{ID,Hostname,Platform.{OS,Architecture}}``,
``.Task.{ID,Name,Slot}``, and the functions ``env`` (the task's ContainerSpec.Env), ``secret``
and ``config`` (the payload the task mounts at that target, File.Name), and ``join``.

This module is the pure expander the agent calls. It implements the part of text/template
those templates use: field chains, string literals, calls of ``env``, ``secret``, ``config``,
``join`` and ``index`` with string or field arguments, comments, and the trim markers ``{{-``
and ``-}}``. Errors are Go's, word for word (``template: expansion:1:4: executing "expansion" at
<.Foo>: can't evaluate field Foo in type *template.PayloadContext``). Anything else Go's
templates have (pipelines, if, range, variables, printf...) is refused with a
:class:`TemplateError` that names it, never expanded wrongly. No I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TemplateContext", "TemplateError", "expand", "expand_payload"]

_NAME = "expansion"  # swarmkit's template name: every message says it


class TemplateError(ValueError):
    """A template that cannot be expanded; ``str(e)`` is Go's message (or names what is unsupported)."""


@dataclass(frozen=True)
class TemplateContext:
    """What a payload template sees: the task, its service and node, and what the task mounts.

    ``secrets`` and ``configs`` map a reference's target (File.Name, as the task's ContainerSpec
    gives it) to the payload's data; ``env`` is the ContainerSpec's Env (``KEY=value``).
    ``task_slot`` is the slot as text, or the node ID for a global task (swarmkit's rule).
    """

    service_id: str = ""
    service_name: str = ""
    service_labels: Mapping[str, str] = field(default_factory=dict)
    node_id: str = ""
    node_hostname: str = ""
    node_os: str = ""
    node_architecture: str = ""
    task_id: str = ""
    task_name: str = ""
    task_slot: str = ""
    env: Sequence[str] = ()
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    configs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Expanded:
    """An expanded payload; ``sensitive`` when a secret went into it (swarmkit keeps it off disk)."""

    data: bytes
    sensitive: bool


def expand_payload(data: bytes, templating: Mapping[str, Any] | None, ctx: TemplateContext) -> Expanded:
    """A secret's or config's data as the task sees it (swarmkit's ExpandSecretSpec/ExpandConfigSpec)."""
    if not templating:
        return Expanded(data, False)
    if templating.get("Name") != "golang":
        raise TemplateError("unrecognized template type")
    text, sensitive = _expand(data.decode("utf-8", errors="surrogateescape"), ctx)
    return Expanded(text.encode("utf-8", errors="surrogateescape"), sensitive)


def expand(text: str, ctx: TemplateContext) -> str:
    """``text`` expanded as a golang template against ``ctx``."""
    return _expand(text, ctx)[0]


# ---- lexing: text and actions ------------------------------------------------------------------

_SPACE = " \t\r\n"


@dataclass
class _Action:
    pos: int  # byte offset of the action's body (after "{{" and a trim marker)
    body: str


def _split(text: str) -> list[str | _Action]:
    """Text pieces and actions, with the trim markers applied to the text around them."""
    parts: list[str | _Action] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if start < 0:
            parts.append(chunk)
            return parts
        inner = start + 2
        if text.startswith("-", inner) and inner + 1 < len(text) and text[inner + 1] in _SPACE:
            chunk = chunk.rstrip(_SPACE)
            inner += 2
        parts.append(chunk)
        comment = text.startswith("/*", inner)
        end = _close(text, inner, comment)
        if end < 0:
            what = "comment" if comment else "action"
            raise TemplateError(f"template: {_NAME}:{_line(text, start)}: unclosed {what}")
        body_end = end
        trim_next = False
        if end >= 2 and text[end - 1] == "-" and text[end - 2] in _SPACE and end - 1 >= inner:
            trim_next = True
            body_end = end - 2
        if not comment:
            parts.append(_Action(inner, text[inner:body_end]))
        pos = end + 2


def _close(text: str, inner: int, comment: bool) -> int:
    """Where the action's ``}}`` starts (outside string literals), or -1."""
    if comment:
        stop = text.find("*/", inner + 2)
        if stop < 0:
            return -1
        rest = stop + 2
        while rest < len(text) and text[rest] in _SPACE + "-":
            rest += 1
        return rest if text.startswith("}}", rest) else -1
    i = inner
    while i < len(text):
        char = text[i]
        if char in "\"`":
            close = _string_end(text, i)
            if close < 0:
                return -1
            i = close
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    return -1


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        if quote == '"' and text[i] == "\n":
            return -1
        i += 1
    return -1


def _line(text: str, pos: int) -> int:
    return 1 + text.count("\n", 0, pos)


# ---- parsing one action --------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s+|(?P<str>"(?:[^"\\\n]|\\.)*"|`[^`]*`)"""
                    r"""|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)"""
                    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>\S)""")
_FUNCTIONS = {"env": 1, "secret": 1, "config": 1}  # name -> arguments; join and index are variadic
_GO_BUILTINS = {"and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
                "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"}
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
             "nil", "true", "false"}


@dataclass(frozen=True)
class _Token:
    kind: str  # str, field, ident
    value: str
    pos: int
    text: str  # as written (what Go prints in an error's context)


def _tokens(action: _Action, text: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(action.body):
        kind = m.lastgroup
        if kind is None:
            continue
        pos = action.pos + m.start()
        raw = m.group()
        if kind == "other":
            raise _unsupported(text, pos, f"{raw!r} in an action")
        value = raw
        if kind == "str" and raw.startswith("`"):
            value = raw[1:-1]
        elif kind == "str":
            try:
                value = json.loads(raw)  # Go's escapes that JSON shares: \n \t \" \\ \uXXXX...
            except ValueError:
                raise _unsupported(text, pos, f"the escapes in {raw}") from None
        out.append(_Token(kind, value, pos, raw))
    return out


def _unsupported(text: str, pos: int, what: str) -> TemplateError:
    return TemplateError(
        f"template: {_NAME}:{_line(text, pos)}: swarmlet does not support {what} in templates "
        "(fields, string literals, env, secret, config, join and index are supported)")


# ---- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Struct:
    """A struct of swarmkit's template context: Go's type name and its fields in declared order."""

    type_name: str
    fields: dict[str, Any]


def _root(ctx: TemplateContext) -> _Struct:
    platform = _Struct("template.Platform", {"Architecture": ctx.node_architecture, "OS": ctx.node_os})
    return _Struct("*template.PayloadContext", {
        "Service": _Struct("struct { ID string; Name string; Labels map[string]string }",
                           {"ID": ctx.service_id, "Name": ctx.service_name,
                            "Labels": dict(ctx.service_labels)}),
        "Node": _Struct("struct { ID string; Hostname string; Platform template.Platform }",
                        {"ID": ctx.node_id, "Hostname": ctx.node_hostname, "Platform": platform}),
        "Task": _Struct("struct { ID string; Name string; Slot string }",
                        {"ID": ctx.task_id, "Name": ctx.task_name, "Slot": ctx.task_slot}),
    })


def _type_name(value: Any) -> str:
    if isinstance(value, _Struct):
        return value.type_name
    return "map[string]string" if isinstance(value, dict) else "string"


def _print(value: Any) -> str:
    """fmt.Print's way: strings as they are, maps as ``map[k:v ...]`` (sorted), structs ``{a b}``."""
    if isinstance(value, _Struct):
        return "{" + " ".join(_print(v) for v in value.fields.values()) + "}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{value[k]}" for k in sorted(value)) + "]"
    return str(value)


class _State:
    def __init__(self, text: str, ctx: TemplateContext) -> None:
        self.text = text
        self.ctx = ctx
        self.sensitive = False
        self.root = _root(ctx)

    def fail(self, pos: int, context: str, message: str) -> TemplateError:
        line = _line(self.text, pos)
        column = pos - (self.text.rfind("\n", 0, pos) + 1)
        where = f"{_NAME}:{line}:{column}"
        return TemplateError(f'template: {where}: executing "{_NAME}" at <{context}>: {message}')

    def field(self, token: _Token, pos: int) -> Any:
        if token.value == ".":
            raise _unsupported(self.text, token.pos, "{{.}} (the whole context)")
        value: Any = self.root
        for name in token.value[1:].split("."):
            if isinstance(value, _Struct) and name in value.fields:
                value = value.fields[name]
            elif isinstance(value, dict):
                if name not in value:
                    raise self.fail(pos, token.text, f'map has no entry for key "{name}"')
                value = value[name]
            else:
                raise self.fail(pos, token.text, f"can't evaluate field {name} in type {_type_name(value)}")
        return value

    def call(self, name: str, args: list[Any], node: str, pos: int) -> str:
        if name in _FUNCTIONS and len(args) != _FUNCTIONS[name]:
            raise self.fail(pos, name, f"wrong number of args for {name}: want 1 got {len(args)}")
        if name != "index":
            for arg in args:
                if not isinstance(arg, str):
                    found = _type_name(arg)
                    raise self.fail(pos, node, f"wrong type for value; expected string; found {found}")
        if name == "env":
            for entry in self.ctx.env:
                key, sep, value = entry.partition("=")
                if sep and key == args[0]:
                    return value
            return ""
        if name in ("secret", "config"):
            payload = (self.ctx.secrets if name == "secret" else self.ctx.configs).get(args[0])
            if payload is None:
                raise self.fail(pos, node, f"error calling {name}: {name} target {args[0]} not found")
            self.sensitive = self.sensitive or name == "secret"
            return payload.decode("utf-8", errors="surrogateescape")
        if name == "join":
            if not args:
                raise self.fail(pos, node, "error calling join: runtime error: index out of range [0] "
                                "with length 0")
            return str(args[0]).join(args[1:])
        # index: only of a map (the service's labels) by a string key; a missing key gives "".
        if len(args) != 2 or not isinstance(args[0], dict) or not isinstance(args[1], str):
            raise _unsupported(self.text, pos, "index other than of the labels by a string")
        return str(args[0].get(args[1], ""))

    def action(self, action: _Action) -> str:
        tokens = _tokens(action, self.text)
        if not tokens:
            line = _line(self.text, action.pos)
            raise TemplateError(f"template: {_NAME}:{line}: missing value for command")
        head = tokens[0]
        if head.kind == "ident":
            if head.value in _KEYWORDS:
                raise _unsupported(self.text, head.pos, f'"{head.value}"')
            if head.value not in _FUNCTIONS and head.value not in ("join", "index"):
                if head.value in _GO_BUILTINS:
                    raise _unsupported(self.text, head.pos, f'the function "{head.value}"')
                raise TemplateError(f'template: {_NAME}:{_line(self.text, head.pos)}: function '
                                    f'"{head.value}" not defined')
            args = [self.operand(t) for t in tokens[1:]]
            node = " ".join(t.text for t in tokens)
            return self.call(head.value, args, node, head.pos)
        if len(tokens) > 1:
            raise _unsupported(self.text, tokens[1].pos, "arguments after a value (or pipelines)")
        return _print(self.operand(head))

    def operand(self, token: _Token) -> Any:
        if token.kind == "str":
            return token.value
        if token.kind == "field":
            # Go places a field chain at its second field (parse.Tree.operand).
            pos = token.pos + token.value.index(".", 1) if token.value.count(".") > 1 else token.pos
            return self.field(token, pos)
        if token.value in _KEYWORDS:
            raise _unsupported(self.text, token.pos, f'"{token.value}"')
        raise _unsupported(self.text, token.pos, f'the function "{token.value}" as an argument')


def _expand(text: str, ctx: TemplateContext) -> tuple[str, bool]:
    state = _State(text, ctx)
    out = []
    for part in _split(text):
        out.append(part if isinstance(part, str) else state.action(part))
    return "".join(out), state.sensitive
