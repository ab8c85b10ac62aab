"""An emulated container's file system: its mounts, and a writable layer of its own.

A task's process sees three kinds of paths (:class:`~nodeagent.images.base.TaskEnv` reads and
writes through :class:`ContainerFS`):

* its secrets and configs (read-only files, in memory: ``TaskEnv.files``);
* its mounts (``ContainerSpec.Mounts``): a volume or a bind is a directory on the node
  (:class:`DirMount`), a tmpfs or an anonymous volume is memory that goes with the container
  (:class:`MemMount`); the longest target that contains a path wins, as the kernel's mount table;
* everything else: the container's own writable layer, in memory, gone when the task's container
  is (a replaced task starts from the image again, as in Docker).

Errors carry busybox's words (``Read-only file system``, ``No such file or directory``).
"""

from __future__ import annotations

import os
import pathlib
import posixpath
from collections.abc import Mapping

__all__ = ["ContainerFS", "DirMount", "FsError", "MemMount", "Mount"]


class FsError(Exception):
    """A file operation refused, in the kernel's words (``Read-only file system``)."""


class Mount:
    """One mount of a container: a target path and where its files live."""

    kind = ""

    def __init__(self, target: str, *, read_only: bool = False) -> None:
        """``target`` is the absolute path inside the container."""
        self.target = posixpath.normpath(target)
        self.read_only = read_only

    def read(self, rel: str) -> bytes | None:
        """The content of ``rel`` (a path under the target, no leading slash), or None."""
        raise NotImplementedError

    def write(self, rel: str, data: bytes, *, append: bool) -> None:
        """Write (or append) ``data`` to ``rel``."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """Every file under the mount, relative to it."""
        raise NotImplementedError


class DirMount(Mount):
    """A directory on the node: a named volume's ``_data``, a shared volume's, or a bind source."""

    kind = "bind"

    def __init__(self, target: str, directory: pathlib.Path, *, read_only: bool = False) -> None:
        """Files of ``target`` are files under ``directory``."""
        super().__init__(target, read_only=read_only)
        self.directory = directory

    def _path(self, rel: str) -> pathlib.Path:
        path = (self.directory / rel).resolve()
        root = self.directory.resolve()
        if path != root and root not in path.parents:  # ../ out of the mount: not this mount's
            raise FsError("Permission denied")
        return path

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None when there is none."""
        try:
            return self._path(rel).read_bytes()
        except (OSError, FsError):
            return None

    def write(self, rel: str, data: bytes, *, append: bool) -> None:
        """Append with O_APPEND, so two nodes appending to one shared file do not overwrite."""
        if self.read_only:
            raise FsError("Read-only file system")
        path = self._path(rel)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            fd = os.open(path, flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except IsADirectoryError:
            raise FsError("Is a directory") from None
        except OSError as exc:
            raise FsError(exc.strerror or str(exc)) from None

    def names(self) -> list[str]:
        """Files under the directory, relative to it."""
        root = self.directory
        if not root.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class MemMount(Mount):
    """Memory that goes with the container: a tmpfs, or an anonymous volume."""

    kind = "tmpfs"

    def __init__(self, target: str, *, read_only: bool = False) -> None:
        """An empty file system at ``target``."""
        super().__init__(target, read_only=read_only)
        self.files: dict[str, bytes] = {}

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None."""
        return self.files.get(rel)

    def write(self, rel: str, data: bytes, *, append: bool) -> None:
        """Keep the bytes in memory."""
        if self.read_only:
            raise FsError("Read-only file system")
        self.files[rel] = (self.files.get(rel, b"") if append else b"") + data

    def names(self) -> list[str]:
        """Every file held."""
        return sorted(self.files)


class ContainerFS:
    """What a task's process sees of files: read-only payloads, mounts, then its own layer."""

    def __init__(self, payloads: Mapping[str, bytes], mounts: list[Mount] | None = None) -> None:
        """``payloads`` (path -> bytes) are the task's secrets and configs, read live."""
        self.payloads = payloads
        self.mounts: list[Mount] = sorted(mounts or [], key=lambda m: len(m.target), reverse=True)
        self.layer: dict[str, bytes] = {}

    def _mount(self, path: str) -> tuple[Mount, str] | None:
        for mount in self.mounts:
            if path == mount.target:
                return mount, ""
            prefix = mount.target.rstrip("/") + "/"
            if path.startswith(prefix):
                return mount, path[len(prefix):]
        return None

    def read(self, path: str) -> bytes | None:
        """A file's content, or None."""
        path = posixpath.normpath(path)
        if path in self.payloads:
            return self.payloads[path]
        found = self._mount(path)
        if found is not None:
            mount, rel = found
            return mount.read(rel) if rel else None
        return self.layer.get(path)

    def write(self, path: str, data: bytes, *, append: bool = False) -> None:
        """Write or append; FsError in the kernel's words when refused."""
        path = posixpath.normpath(path)
        if not path.startswith("/"):
            raise FsError("No such file or directory")
        if path in self.payloads:
            raise FsError("Read-only file system")  # secrets and configs are mounted read-only
        found = self._mount(path)
        if found is not None:
            mount, rel = found
            if not rel:
                raise FsError("Is a directory")
            mount.write(rel, data, append=append)
            return
        self.layer[path] = (self.layer.get(path, b"") if append else b"") + data

    def exists(self, path: str) -> bool:
        """Whether a file is there."""
        return self.read(path) is not None
