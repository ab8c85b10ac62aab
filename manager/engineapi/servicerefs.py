"""A service's secret and config references, checked as moby's daemon and swarmkit check them.

Three stages, each in its place in the daemon's order (servicespec.py and services.py call them):

1. moby's conversion (:func:`check_conversion`): a config reference needs exactly one target,
   File or Runtime (400, moby's plain words);
2. swarmkit's validateSecretRefsSpec / validateConfigRefsSpec (:func:`check_references`): an
   ID and a name, a target, a file name, and no two references of a kind at one file name;
3. swarmkit's checkSecretExistence / checkConfigExistence (:func:`check_references_exist`), in
   the write's transaction: the ID must exist and carry that name; every one that does not is
   named (``secrets not found: a, b``).

A reference is stored as given: Swarm fills no File defaults (an API client that sends only
``File.Name`` gets UID "", GID "" and Mode 0 back); the docker CLI always sends UID "0", GID
"0" and Mode 0444. The agent applies the defaults when it writes the file (see
docs/engineapi.md, "Secrets and configs"). Pure: the store is only read.
"""

from __future__ import annotations

from typing import Any

from manager.engineapi.base import rpc_message
from manager.state.store import NotFound, Store
from nodeagent.engineapi import ApiError

__all__ = ["check_conversion", "check_references", "check_references_exist"]

_KINDS = (("secret", "Secrets", "SecretID", "SecretName"), ("config", "Configs", "ConfigID", "ConfigName"))


def _invalid(message: str) -> ApiError:
    return ApiError.bad_request(rpc_message("InvalidArgument", message))


def _refs(container: dict[str, Any], key: str) -> list[dict[str, Any]]:
    refs = container.get(key) or []
    return [r for r in refs if isinstance(r, dict)]


def check_conversion(container: dict[str, Any]) -> None:
    """moby's configReferencesToGRPC: exactly one of File and Runtime (400, plain words)."""
    for ref in _refs(container, "Configs"):
        has_file, has_runtime = isinstance(ref.get("File"), dict), isinstance(ref.get("Runtime"), dict)
        if not has_file and not has_runtime:
            raise ApiError.bad_request("invalid Config: either File or Runtime should be set")
        if has_file and has_runtime:
            raise ApiError.bad_request("invalid Config: cannot specify both File and Runtime")


def check_references(container: dict[str, Any]) -> None:
    """swarmkit's validation of a ContainerSpec's references: secrets first, then configs."""
    for kind, key, id_key, name_key in _KINDS:
        targets: dict[str, str] = {}
        for ref in _refs(container, key):
            name = str(ref.get(name_key) or "")
            if not ref.get(id_key) or not name:
                raise _invalid(f"malformed {kind} reference")
            file = ref.get("File")
            if not isinstance(file, dict) and not (kind == "config" and isinstance(ref.get("Runtime"), dict)):
                raise _invalid(f"malformed {kind} reference, no target provided")
            if not isinstance(file, dict):
                continue  # a Runtime target (a credential spec): no file
            target = str(file.get("Name") or "")
            if not target:
                raise _invalid(f"malformed file {kind} reference, invalid target file name provided")
            if target in targets:
                raise _invalid(f"{kind} references '{targets[target]}' and '{name}' have a conflicting "
                               f"target: '{target}'")
            targets[target] = name


def check_references_exist(store: Store, container: dict[str, Any]) -> None:
    """Every referenced secret and config exists under the name given (secrets checked first)."""
    for kind, key, id_key, name_key in _KINDS:
        missing = []
        for ref in _refs(container, key):
            try:
                name = store.get(kind, str(ref.get(id_key) or "")).spec.get("Name")
            except NotFound:
                name = None
            if name is None or name != ref.get(name_key):
                missing.append(str(ref.get(name_key) or ""))
        if missing:
            noun = kind if len(missing) == 1 else kind + "s"
            raise _invalid(f"{noun} not found: {', '.join(missing)}")
