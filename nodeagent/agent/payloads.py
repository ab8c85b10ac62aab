"""The agent's side of secrets and configs: where a reference's file goes, and a task's template context.

The dispatcher delivers to a node ``{ID, Spec.Name, Data}`` (and Spec.Templating) of the secrets
and configs its assigned tasks reference (docs/engineapi.md, "Secrets and configs"). When a
task starts, the agent expands templated payloads (templates.py) with :func:`task_context` and
writes each at :func:`file_target`. Pure: nothing here touches a file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.agent.templates import TemplateContext

__all__ = ["CONFIGS_DIR", "SECRETS_DIR", "FileTarget", "file_target", "task_context"]

SECRETS_DIR = "/run/secrets"  # where a secret whose target is a bare name goes (Docker's)
CONFIGS_DIR = "/"  # where a config whose target is a relative path goes (Docker's)
_DEFAULT_MODE = 0o444


@dataclass(frozen=True)
class FileTarget:
    """Where and how a secret or config appears in a task's filesystem."""

    path: str
    uid: int
    gid: int
    mode: int


def _number(value: Any) -> int:
    text = str(value or "0")
    return int(text) if text.isdigit() else 0


def file_target(kind: str, ref: Mapping[str, Any]) -> FileTarget:
    """The file of a SecretReference / ConfigReference (kind "secret" or "config").

    A relative File.Name is under /run/secrets for a secret and under / for a config, as Docker
    places them. Swarm stores the reference as the client sent it; the docker CLI always sends
    UID "0", GID "0" and Mode 0444, and those are the defaults here for a client that sent
    less (UID "", GID "", Mode 0).
    """
    file = ref.get("File") or {}
    name = str(file.get("Name") or "")
    base = SECRETS_DIR if kind == "secret" else CONFIGS_DIR
    path = name if posixpath.isabs(name) else posixpath.join(base, name)
    mode = int(file.get("Mode") or 0) or _DEFAULT_MODE
    return FileTarget(posixpath.normpath(path), _number(file.get("UID")), _number(file.get("GID")), mode)


def task_context(
    task: Mapping[str, Any],
    *,
    hostname: str = "",
    os: str = "",
    architecture: str = "",
    secrets: Mapping[str, bytes] | None = None,
    configs: Mapping[str, bytes] | None = None,
) -> TemplateContext:
    """The template context of ``task`` (the store's shape: Spec, ServiceID, Slot, NodeID...).

    ``secrets`` and ``configs`` map payload IDs to their (unexpanded) data, as delivered; the
    template functions find them by the task's reference targets, as swarmkit's do. The task's
    name is swarmkit's naming.Task: ``service.slot.id`` (``service.nodeid.id`` when global).
    """
    container = (task.get("Spec") or {}).get("ContainerSpec") or {}
    service_name = str((task.get("ServiceAnnotations") or {}).get("Name") or "")
    labels = (task.get("ServiceAnnotations") or {}).get("Labels") or {}
    slot = int(task.get("Slot") or 0)
    node_id = str(task.get("NodeID") or "")
    slot_text = str(slot) if slot else node_id
    name = str((task.get("Annotations") or {}).get("Name") or "")
    if not name:
        name = f"{service_name}.{slot_text}.{task.get('ID', '')}"

    def by_target(refs: Any, key: str, data: Mapping[str, bytes] | None) -> dict[str, bytes]:
        out = {}
        for ref in refs or []:
            file = ref.get("File") if isinstance(ref, dict) else None
            if isinstance(file, dict) and file.get("Name") and ref.get(key) in (data or {}):
                out[str(file["Name"])] = (data or {})[ref[key]]
        return out

    return TemplateContext(
        service_id=str(task.get("ServiceID") or ""),
        service_name=service_name,
        service_labels={str(k): str(v) for k, v in labels.items()},
        node_id=node_id,
        node_hostname=hostname,
        node_os=os,
        node_architecture=architecture,
        task_id=str(task.get("ID") or ""),
        task_name=name,
        task_slot=slot_text,
        env=[str(e) for e in container.get("Env") or []],
        secrets=by_target(container.get("Secrets"), "SecretID", secrets),
        configs=by_target(container.get("Configs"), "ConfigID", configs),
    )
