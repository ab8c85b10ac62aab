"""The secrets and configs a node holds for its tasks: in memory only, and the files a task sees.

The dispatcher sends a node ``{ID, Spec: {Name, Data, Templating}}`` of each secret and config
that a task assigned to it uses, before the task, and withdraws it once no task there needs it
(docs/engineapi.md, "Secrets and configs"). :class:`Dependencies` keeps them in a dict and
nowhere else: nothing here writes a file, a log line or a status, so a secret lives on the node
exactly as long as a task there may mount it, as swarmkit's agent keeps them (its tmpfs aside).

:meth:`Dependencies.files` is the emulated runtime's ``files(task)`` seam: when a task starts,
every reference becomes a file at its target (:func:`~nodeagent.agent.payloads.file_target`),
templated payloads expanded with the task's own context. What cannot be mounted is the error
moby's container start gives, which the task reports as its Err.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.agent.payloads import file_target, task_context
from nodeagent.agent.templates import TemplateError, expand_payload

__all__ = ["KINDS", "Dependencies", "MountError", "Payload", "references"]

KINDS = ("secret", "config")
"""The kinds delivered with assignments besides tasks."""

_REFS = {"secret": ("Secrets", "SecretID"), "config": ("Configs", "ConfigID")}


class MountError(Exception):
    """A secret or config a task references cannot be mounted; ``str(e)`` is moby's wording."""


@dataclass(frozen=True)
class Payload:
    """One delivered secret or config."""

    kind: str  # "secret" | "config"
    id: str
    name: str
    data: bytes
    templating: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        """Never the data: a payload printed in a log or a traceback must not leak a secret."""
        return f"Payload({self.kind} {self.id} {self.name!r}, {len(self.data)} bytes)"

    @classmethod
    def from_api(cls, kind: str, obj: Mapping[str, Any]) -> Payload:
        """From the dispatcher's JSON; ValueError when it is not a payload."""
        spec = obj.get("Spec")
        if kind not in KINDS or not isinstance(spec, Mapping) or not isinstance(obj.get("ID"), str):
            raise ValueError(f"not a {kind} payload")
        try:
            data = base64.b64decode(str(spec.get("Data") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{kind} {obj['ID']}: Data is not base64") from None
        templating = spec.get("Templating")
        return cls(kind, str(obj["ID"]), str(spec.get("Name") or ""), data,
                   dict(templating) if isinstance(templating, Mapping) and templating else None)  # fmt: skip


def references(task: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(kind, reference) of each secret and config the task's ContainerSpec names."""
    container = (task.get("Spec") or {}).get("ContainerSpec") or {}
    out: list[tuple[str, Mapping[str, Any]]] = []
    for kind, (key, _id_key) in _REFS.items():
        for ref in container.get(key) or []:
            if isinstance(ref, Mapping):
                out.append((kind, ref))
    return out


def _ref_id(kind: str, ref: Mapping[str, Any]) -> str:
    return str(ref.get(_REFS[kind][1]) or "")


class Dependencies:
    """The node's delivered secrets and configs, by (kind, ID), in memory."""

    def __init__(self, *, node_os: str = "linux", architecture: str = "") -> None:
        """``node_os`` and ``architecture`` are what templates see as .Node.Platform."""
        self._held: dict[tuple[str, str], Payload] = {}
        self.node_os = node_os
        self.architecture = architecture

    def __len__(self) -> int:
        return len(self._held)

    def apply(self, complete: bool, updates: Iterable[Payload], removals: Iterable[tuple[str, str]]) -> None:
        """One assignments message's secrets and configs: a complete set replaces what is held."""
        if complete:
            self._held.clear()
        for payload in updates:
            self._held[(payload.kind, payload.id)] = payload
        for key in removals:
            self._held.pop(key, None)

    def keep_only(self, tasks: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """Drop what none of ``tasks`` (the tasks assigned here) references; returns the dropped keys.

        The dispatcher withdraws a payload itself; this makes the node's own rule hold even if a
        removal was lost with a stream: nothing is kept that no task here names.
        """
        used = {(kind, _ref_id(kind, ref)) for task in tasks for kind, ref in references(task)}
        dropped = [key for key in self._held if key not in used]
        for key in dropped:
            del self._held[key]
        return dropped

    def get(self, kind: str, payload_id: str) -> Payload | None:
        """A held payload, or None."""
        return self._held.get((kind, payload_id))

    def rows(self) -> list[dict[str, Any]]:
        """What is held, for ListPayloads: kind, ID, name, size, templated; never the data."""
        return [
            {"kind": p.kind, "id": p.id, "name": p.name, "size": len(p.data), "templated": bool(p.templating)}
            for _key, p in sorted(self._held.items())
        ]

    def contains_bytes(self, needle: bytes) -> bool:
        """Whether any held payload's data contains ``needle`` (for tests of what was dropped)."""
        return any(needle in p.data for p in self._held.values())

    def files(self, task: Mapping[str, Any], hostname: str = "") -> dict[str, bytes]:
        """Path -> content of every secret and config ``task`` mounts, expanded for this task.

        Raises :class:`MountError` with moby's words when a referenced payload is not here or
        does not expand (``unable to get secret from secret store: secret ID not found``;
        ``unable to get config from config store: failed to expand templated config ID: ...``).
        A config with a Runtime target (a credential spec) is no file and is skipped.
        """
        refs = references(task)
        raw: dict[str, dict[str, bytes]] = {"secret": {}, "config": {}}
        for kind, ref in refs:
            held = self._held.get((kind, _ref_id(kind, ref)))
            if held is not None:
                raw[kind][held.id] = held.data
        ctx = None
        out: dict[str, bytes] = {}
        for kind, ref in refs:
            if not isinstance(ref.get("File"), Mapping):
                continue
            ref_id = _ref_id(kind, ref)
            held = self._held.get((kind, ref_id))
            if held is None:
                raise MountError(f"unable to get {kind} from {kind} store: {kind} {ref_id} not found")
            data = held.data
            if held.templating:
                if ctx is None:
                    ctx = task_context(
                        task, hostname=hostname, os=self.node_os, architecture=self.architecture,
                        secrets=raw["secret"], configs=raw["config"],
                    )  # fmt: skip
                try:
                    data = expand_payload(held.data, held.templating, ctx).data
                except TemplateError as exc:
                    raise MountError(
                        f"unable to get {kind} from {kind} store: "
                        f"failed to expand templated {kind} {ref_id}: {exc}"
                    ) from None
            out[file_target(kind, ref).path] = data
        return out
