"""A manager's Raft keys on disk: the data key, wrapped, beside the log (``raft/keys.json``).

The file holds the data key (DEK) sealed under a key-encryption key (KEK, see
:mod:`manager.state.raft.encryption`) and, without autolock, that KEK in plaintext, as swarmkit
keeps its raft DEK in the TLS key's headers::

    {"version": 1, "dek": "<base64 of the wrapped DEK>", "kek": "<base64 KEK>"}    unlocked
    {"version": 1, "dek": "<base64 of the wrapped DEK>", "autolock": true}        autolocked

and, while the data key is being rotated, ``"pending_dek"`` (the new DEK, wrapped under the same
KEK) or ``"needs_rotation": true`` (a rotation is wanted and has not begun).

An autolocked file has no KEK: it is derived from the unlock key, which only the Raft store
(itself encrypted) and the administrator hold. A manager that starts on such a file is *locked*
until :meth:`RaftKeys.unlock` gets the key. When the cluster's autolock setting or key changes,
every manager re-wraps its DEK (:meth:`RaftKeys.rewrap`); when autolock is turned *on* (the KEK
goes from plaintext to derived), the DEK itself is rotated too, as swarmkit's RaftDEKManager
does, so that a copy of the disk taken before autolock opens nothing written afterwards:

1. :meth:`RaftKeys.rewrap` marks ``needs_rotation``;
2. the Raft shell calls :meth:`RaftKeys.begin_rotation`: a new DEK is written as ``pending_dek``
   and the log seals everything from then on with it (the old DEK still opens older files);
3. once a snapshot under the new DEK has replaced every file the old one sealed, the shell
   calls :meth:`RaftKeys.finish_rotation`: the pending DEK becomes the DEK, the old one is gone.

A manager that restarts mid-rotation reads the log with both keys and carries on.
Writes are atomic (a temporary file, fsynced, renamed, the directory fsynced) and serialised by a
lock (the key sync and the Raft shell write from threads).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from pathlib import Path

from manager.state.raft.encryption import (
    DecryptError,
    kek_from_unlock_key,
    new_key,
    unwrap_key,
    wrap_key,
)

__all__ = ["INVALID_UNLOCK_KEY", "KEY_FILE", "InvalidUnlockKey", "RaftKeys"]

KEY_FILE = "keys.json"
"""The key file's name, in the Raft storage directory."""
INVALID_UNLOCK_KEY = "swarm could not be unlocked: invalid key provided"
"""Docker's 401 for ``docker swarm unlock`` with a well-formed key that is not the swarm's."""


class InvalidUnlockKey(Exception):
    """The unlock key does not open this manager's data key (Docker's words in ``str()``)."""

    def __init__(self) -> None:
        super().__init__(INVALID_UNLOCK_KEY)


class RaftKeys:
    """The key file of one manager: load it (creating it on first start), unlock, re-wrap, rotate."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """Nothing is read here; :meth:`load` does it."""
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._wrapped = b""
        self._wrapped_pending = b""
        self._kek: bytes | None = None
        self._dek: bytes | None = None
        self.pending_dek: bytes | None = None
        """The new data key of a rotation under way (it seals; the DEK only opens), or None."""
        self.needs_rotation = False
        """Whether a data key rotation is wanted and has not begun (autolock was turned on)."""
        self.unlock_key: bytes | None = None
        """The unlock key the file is wrapped under now; None without autolock."""

    @property
    def locked(self) -> bool:
        """Whether the data key is still unknown (an autolocked file not yet unlocked)."""
        return self._dek is None

    @property
    def dek(self) -> bytes:
        """The data key; RuntimeError while locked."""
        if self._dek is None:
            raise RuntimeError("the Raft keys are locked")
        return self._dek

    def load(self) -> None:
        """Read the file, or create it with a fresh DEK under a plaintext KEK if there is none.

        Raises ValueError naming the file if it is damaged (a manager must not start then).
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            with self._lock:
                self._dek = new_key()
                self._write(None)
            return
        try:
            doc = json.loads(raw)
            self._wrapped = base64.b64decode(doc["dek"], validate=True)
            pending = doc.get("pending_dek")
            self._wrapped_pending = base64.b64decode(pending, validate=True) if pending is not None else b""
            self.needs_rotation = bool(doc.get("needs_rotation", False))
            kek = doc.get("kek")
            self._kek = base64.b64decode(kek, validate=True) if kek is not None else None
            if doc.get("version") != 1 or (self._kek is None) != bool(doc.get("autolock")):
                raise ValueError("unknown version, or neither a KEK nor autolock")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"{self.path}: damaged Raft key file: {exc}") from None
        if self._kek is not None:
            try:
                self._open(self._kek)
            except DecryptError as exc:
                raise ValueError(f"{self.path}: damaged Raft key file: {exc}") from None

    def _open(self, kek: bytes) -> None:
        dek = unwrap_key(kek, self._wrapped)
        pending = unwrap_key(kek, self._wrapped_pending) if self._wrapped_pending else None
        self._dek, self.pending_dek = dek, pending

    def unlock(self, unlock_key: bytes) -> None:
        """Open the data key with the administrator's unlock key; :class:`InvalidUnlockKey` if it
        is not the key the file was wrapped under."""
        if len(unlock_key) != 32:
            raise InvalidUnlockKey()
        try:
            self._open(kek_from_unlock_key(unlock_key))
        except DecryptError:
            raise InvalidUnlockKey() from None
        self.unlock_key = unlock_key

    def rewrap(self, unlock_key: bytes | None) -> None:
        """Wrap the data key under ``unlock_key`` (autolock), or under a fresh plaintext KEK (None).

        Going from a plaintext KEK to autolock also asks for a data key rotation (swarmkit's
        "unlocked to locked"); rotating the unlock key or turning autolock off does not.
        """
        with self._lock:
            if self.unlock_key is None and unlock_key is not None:
                self.needs_rotation = True
            self._write(unlock_key)

    def begin_rotation(self) -> bytes:
        """Start the data key rotation asked for: a new DEK, written as pending, is returned
        (the log seals with it from now on). With a rotation already under way, its pending DEK."""
        with self._lock:
            if self.pending_dek is None:
                self.pending_dek = new_key()
                self.needs_rotation = False
                self._write(self.unlock_key)
            return self.pending_dek

    def finish_rotation(self) -> None:
        """The log no longer needs the old DEK: the pending DEK becomes the DEK."""
        with self._lock:
            if self.pending_dek is None:
                return
            self._dek, self.pending_dek = self.pending_dek, None
            self._write(self.unlock_key)

    def _write(self, unlock_key: bytes | None) -> None:
        doc: dict[str, object] = {"version": 1}
        if unlock_key is None:
            kek = new_key()
            doc["kek"] = base64.b64encode(kek).decode()
        else:
            kek = kek_from_unlock_key(unlock_key)
            doc["autolock"] = True
        wrapped = wrap_key(kek, self.dek)
        doc["dek"] = base64.b64encode(wrapped).decode()
        wrapped_pending = b""
        if self.pending_dek is not None:
            wrapped_pending = wrap_key(kek, self.pending_dek)
            doc["pending_dek"] = base64.b64encode(wrapped_pending).decode()
        if self.needs_rotation:
            doc["needs_rotation"] = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(doc, sort_keys=True) + "\n")
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        if self._fsync:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._wrapped, self._wrapped_pending = wrapped, wrapped_pending
        self._kek = kek if unlock_key is None else None
        self.unlock_key = unlock_key
