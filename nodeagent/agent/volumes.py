"""A node's volumes: named volumes on the node, shared volumes every node sees, and task mounts.

``ContainerSpec.Mounts`` (what ``--mount`` and a stack's ``volumes:`` send) become the emulated
container's mounts (:mod:`nodeagent.images.fs`) when a task is prepared:

* ``type=volume``, driver ``local`` (the default): a named volume **of this node**, created on
  first use under ``DATA_DIR/volumes/NAME/_data`` (as Docker's ``/var/lib/docker/volumes``) and
  kept there, so a task restarted on the same node finds its data and a task on another node
  starts empty. No Source: an anonymous volume, memory that goes with the container;
* ``type=volume``, driver ``swarmlet/shared`` (``volume-driver=swarmlet/shared``, or a stack's
  ``driver: swarmlet/shared``): a volume whose data every node sees, under the node's
  ``--shared-volumes`` folder, which is one folder for the whole cluster (a compose volume
  mounted into every node container; the cluster's state folder for local processes);
* ``type=bind``: a directory of the node (inside the node's container with compose); a source
  that does not exist rejects the task with Docker's words;
* ``type=tmpfs``: memory that goes with the container.

``ReadOnly`` is kept. The node's Engine API lists and inspects its volumes (``GET /volumes``,
``/volumes/{name}``), creates and removes them (``POST /volumes/create``, ``DELETE``), as an
engine does: each node answers for itself.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from nodeagent.images.fs import DirMount, MemMount, Mount

__all__ = ["LOCAL_DRIVER", "SHARED_DRIVER", "MountError", "VolumeError", "VolumeStore"]

LOCAL_DRIVER = "local"
SHARED_DRIVER = "swarmlet/shared"
"""The shared volume driver's name: data in one folder every node of the cluster mounts."""

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_META = "volume.json"


class MountError(Exception):
    """A task's mount cannot be set up: the task is rejected with these words (Docker's)."""


class VolumeError(Exception):
    """A volume request refused: HTTP status and Docker's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VolumeStore:
    """The volumes of one node: ``local_root`` (its data dir's ``volumes``) and ``shared_root``."""

    def __init__(self, local_root: pathlib.Path, shared_root: pathlib.Path | None,
                 now: Callable[[], str] = _now) -> None:
        """Nothing is created until a volume is."""
        self.roots = {LOCAL_DRIVER: local_root, SHARED_DRIVER: shared_root}
        self.now = now
        self.users: dict[str, set[str]] = {}  # "driver/name" -> IDs of the tasks mounting it

    # ------------------------------------------------------------------ volumes

    def _root(self, driver: str, name: str) -> pathlib.Path:
        if driver not in self.roots:
            raise VolumeError(404, f'create {name}: error looking up volume plugin {driver}: '
                                   f'plugin "{driver}" not found')  # fmt: skip
        root = self.roots[driver]
        if root is None:
            raise VolumeError(500, f"create {name}: the {SHARED_DRIVER} driver has no folder on this node "
                                   "(--shared-volumes)")  # fmt: skip
        return root

    def create(self, name: str, driver: str = "", labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create the volume (or return it, as Docker does for an existing name and driver)."""
        driver = driver or LOCAL_DRIVER
        if not name:
            name = secrets.token_hex(32)
        if not _NAME.match(name):
            raise VolumeError(400, f'create {name}: "{name}" includes invalid characters for a local '
                                   'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you '
                                   "intended to pass a host directory, use absolute path")  # fmt: skip
        existing = self._find(name)
        if existing is not None:
            if existing["Driver"] != driver:
                raise VolumeError(409, f"create {name}: volume name must be unique")
            return existing
        folder = self._root(driver, name) / name
        (folder / "_data").mkdir(parents=True, exist_ok=True)
        meta = {"CreatedAt": self.now(), "Driver": driver, "Labels": dict(labels or {}),
                "Name": name, "Options": dict(options) if options else None}  # fmt: skip
        (folder / _META).write_text(json.dumps(meta))
        return self._render(driver, folder)

    def _render(self, driver: str, folder: pathlib.Path) -> dict[str, Any]:
        try:
            meta = json.loads((folder / _META).read_text())
        except (OSError, ValueError):
            meta = {"CreatedAt": self.now(), "Labels": {}, "Options": None}
        return {
            "CreatedAt": meta.get("CreatedAt", ""), "Driver": driver, "Labels": meta.get("Labels") or {},
            "Mountpoint": str(folder / "_data"), "Name": folder.name, "Options": meta.get("Options"),
            "Scope": "global" if driver == SHARED_DRIVER else "local",
        }  # fmt: skip

    def _find(self, name: str) -> dict[str, Any] | None:
        for driver, root in self.roots.items():
            if root is not None and (root / name / "_data").is_dir():
                return self._render(driver, root / name)
        return None

    def volumes(self) -> list[dict[str, Any]]:
        """Every volume of this node, then every shared one, by name."""
        out = []
        for driver, root in self.roots.items():
            if root is None or not root.is_dir():
                continue
            out += [self._render(driver, d) for d in sorted(root.iterdir()) if (d / "_data").is_dir()]
        return out

    def get(self, name: str) -> dict[str, Any]:
        """One volume; 404 ``get NAME: no such volume``."""
        found = self._find(name)
        if found is None:
            raise VolumeError(404, f"get {name}: no such volume")
        return found

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume no running task mounts (Docker's 409 names the containers)."""
        import shutil

        found = self._find(name)
        if found is None:
            if force:
                return
            raise VolumeError(404, f"get {name}: no such volume")
        users: list[str] = sorted(self.users.get(f"{found['Driver']}/{name}", set()))
        if users:
            raise VolumeError(409, f"remove {name}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(pathlib.Path(found["Mountpoint"]).parent, ignore_errors=True)

    # ------------------------------------------------------------------ task mounts

    def mounts(self, task: Mapping[str, Any], container_id: str = "") -> list[Mount]:
        """The mounts of ``task``'s container (MountError: the task is rejected with those words)."""
        spec = (task.get("Spec") or {}).get("ContainerSpec") or {}
        out: list[Mount] = []
        task_id = str(task.get("ID") or "")
        for raw in spec.get("Mounts") or []:
            if not isinstance(raw, Mapping):
                continue
            kind = str(raw.get("Type") or "volume")
            target = str(raw.get("Target") or "")
            source = str(raw.get("Source") or "")
            read_only = bool(raw.get("ReadOnly"))
            if not target.startswith("/"):
                raise MountError(f"invalid mount config for type \"{kind}\": invalid mount path: "
                                 f"'{target}' mount path must be absolute")  # fmt: skip
            if kind == "bind":
                directory = pathlib.Path(source)
                if not source.startswith("/") or not directory.exists():
                    raise MountError('invalid mount config for type "bind": bind source path does not exist: '
                                     f"{source}")  # fmt: skip
                out.append(DirMount(target, directory, read_only=read_only))
            elif kind == "tmpfs":
                out.append(MemMount(target, read_only=read_only))
            elif kind == "volume":
                if not source:
                    out.append(MemMount(target, read_only=read_only))  # anonymous: goes with the container
                    continue
                options = raw.get("VolumeOptions") or {}
                driver_config = options.get("DriverConfig") or {}
                driver = str(driver_config.get("Name") or LOCAL_DRIVER)
                try:
                    volume = self.create(source, driver, options.get("Labels") or {},
                                         driver_config.get("Options") or None)  # fmt: skip
                except VolumeError as exc:
                    raise MountError(exc.message) from None
                except OSError as exc:
                    raise MountError(f"create {source}: {exc.strerror or exc}") from None
                self.users.setdefault(f"{volume['Driver']}/{source}", set()).add(container_id or task_id)
                out.append(DirMount(target, pathlib.Path(volume["Mountpoint"]), read_only=read_only))
            else:
                raise MountError(f"invalid mount config: mount type unknown: {kind!r}")
        return out

    def release(self, user: str) -> None:
        """The container ``user`` is gone: its volumes may be removed."""
        for users in self.users.values():
            users.discard(user)
