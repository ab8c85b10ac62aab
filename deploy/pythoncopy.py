"""The node image's Python, copied into a named volume that every node mounts (docs/bringup.md,
"Images"): the nodes then read one copy through one bind mount and share one page cache, instead
of reading the image through a fuse-overlayfs daemon each.

One volume per node image, ``swarmlet-python-<key>``, and ``swarmlet-python-latest`` for
``swarmlet/node:latest``. The image's ``swarmlet-python-copy`` (deploy/python-copy.sh) fills one,
writing ``KEY`` last; the image's entry point (deploy/node-entrypoint.sh) uses a copy only when
its ``KEY`` is the image's own.
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

from deploy.hostengine import HostEngineError, inspect_object

__all__ = ["ENTRYPOINT", "IMAGE_KEY_FILE", "NODE_KEY_LABEL", "PYTHON_COPY_PATH", "PythonCopyError",
           "ensure_python_volume", "python_volume", "python_volume_key"]

NODE_KEY_LABEL = "org.swarmlet.node-key"
"""The node image's label with its key."""
IMAGE_KEY_FILE = ".swarmlet-image-key"
"""The node image's key, in its dist-packages (and so in every copy of them)."""
ENTRYPOINT = "/usr/local/bin/swarmlet-node"
"""The entry point of a node image that can use a copy (and has ``swarmlet-python-copy``)."""
PYTHON_VOLUME_PREFIX = "swarmlet-python-"
PYTHON_COPY_PATH = "/opt/swarmlet/python"
"""Where the nodes mount the volume with the node image's Python (deploy/node-entrypoint.sh)."""


class PythonCopyError(RuntimeError):
    """The engine refused a look at or a change of a Python volume; the message says which."""


def python_volume(image: str) -> str:
    """The named volume holding a copy of node image ``image``'s Python: one per content-keyed
    tag (``swarmlet-python-<key>``), and ``swarmlet-python-latest`` for ``swarmlet/node:latest``
    (what a plain `docker compose up` mounts)."""
    return PYTHON_VOLUME_PREFIX + image.rpartition(":")[2]


def _docker(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def _inspect(kind: str, name: str) -> dict[str, Any] | None:
    try:
        return inspect_object(kind, name)
    except HostEngineError as e:
        raise PythonCopyError(f"docker {kind} inspect {name}: {e}") from None


def python_volume_key(name: str) -> str | None:
    """The image key a Python volume's copy was made from; None when there is no such volume or
    no whole copy in it. A volume this process cannot look into (an engine elsewhere, a daemon
    of another user) counts as whole: the node's entry point checks the key again before it uses
    the copy, and runs from the image's own files otherwise."""
    volume = _inspect("volume", name)
    if volume is None:
        return None
    key_file = pathlib.Path(str(volume.get("Mountpoint") or "")) / "KEY"
    try:
        return key_file.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"  # not ours to read: trusted, and checked by the node itself


def ensure_python_volume(
    tag: str, progress: Callable[[str], None] | None = None, name: str | None = None
) -> bool:
    """Fill volume ``name`` (by default ``tag``'s own, :func:`python_volume`) with node image
    ``tag``'s Python unless it holds that copy already; True when it was filled now (1-4 s, once
    per image). An image from before the copies (another entry point) gets an empty volume, which
    compose can mount and its entry point ignores."""
    config = (_inspect("image", tag) or {}).get("Config") or {}
    key = str((config.get("Labels") or {}).get(NODE_KEY_LABEL) or "")
    name = name or python_volume(tag)
    held = python_volume_key(name)
    if held in (key, "unknown"):
        return False
    if not key or list(config.get("Entrypoint") or []) != [ENTRYPOINT]:
        if held is None and _inspect("volume", name) is None:
            _docker(["volume", "create", name])
        return False
    (progress or (lambda _msg: None))(f"copying the node image's Python into volume {name}")
    proc = _docker(["run", "--rm", "--network", "none", "--entrypoint", "/usr/local/bin/swarmlet-python-copy",
                    "-v", f"{name}:{PYTHON_COPY_PATH}", tag])
    if proc.returncode != 0:
        raise PythonCopyError(f"copying {tag}'s Python into volume {name} failed (exit {proc.returncode}): "
                              + (proc.stderr or proc.stdout).strip()[-500:])
    return True
