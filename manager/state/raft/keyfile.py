"""A manager's Raft keys on disk: the data key, wrapped, beside the log (``raft/keys.json``).

The file holds the data key (DEK) sealed under a key-encryption key (KEK, see
:mod:`manager.state.raft.encryption`) and, without autolock, that KEK in plaintext, as swarmkit
keeps its raft DEK in the TLS key's headers::

    {"version": 1, "dek": "<base64 of the wrapped DEK>", "kek": "<base64 KEK>"}    unlocked
    {"version": 1, "dek": "<base64 of the wrapped DEK>", "autolock": true}        autolocked

An autolocked file has no KEK: it is derived from the unlock key, which only the Raft store
(itself encrypted) and the administrator hold. A manager that starts on such a file is *locked*
until :meth:`RaftKeys.unlock` gets the key. When the cluster's autolock setting or key changes,
every manager re-wraps the same DEK (:meth:`RaftKeys.rewrap`); the log is not re-encrypted.
Writes are atomic (a temporary file, fsynced, renamed, the directory fsynced).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
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
    """The key file of one manager: load it (creating it on first start), unlock, re-wrap."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """Nothing is read here; :meth:`load` does it."""
        self.path = Path(path)
        self._fsync = fsync
        self._wrapped = b""
        self._kek: bytes | None = None
        self._dek: bytes | None = None
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
            self._dek = new_key()
            self._write(self._dek, None)
            return
        try:
            doc = json.loads(raw)
            self._wrapped = base64.b64decode(doc["dek"], validate=True)
            kek = doc.get("kek")
            self._kek = base64.b64decode(kek, validate=True) if kek is not None else None
            if doc.get("version") != 1 or (self._kek is None) != bool(doc.get("autolock")):
                raise ValueError("unknown version, or neither a KEK nor autolock")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"{self.path}: damaged Raft key file: {exc}") from None
        if self._kek is not None:
            try:
                self._dek = unwrap_key(self._kek, self._wrapped)
            except DecryptError as exc:
                raise ValueError(f"{self.path}: damaged Raft key file: {exc}") from None

    def unlock(self, unlock_key: bytes) -> None:
        """Open the data key with the administrator's unlock key; :class:`InvalidUnlockKey` if it
        is not the key the file was wrapped under."""
        if len(unlock_key) != 32:
            raise InvalidUnlockKey()
        try:
            self._dek = unwrap_key(kek_from_unlock_key(unlock_key), self._wrapped)
        except DecryptError:
            raise InvalidUnlockKey() from None
        self.unlock_key = unlock_key

    def rewrap(self, unlock_key: bytes | None) -> None:
        """Wrap the data key under ``unlock_key`` (autolock), or under a fresh plaintext KEK (None)."""
        self._write(self.dek, unlock_key)

    def _write(self, dek: bytes, unlock_key: bytes | None) -> None:
        doc: dict[str, object] = {"version": 1}
        if unlock_key is None:
            kek = new_key()
            doc["kek"] = base64.b64encode(kek).decode()
        else:
            kek = kek_from_unlock_key(unlock_key)
            doc["autolock"] = True
        wrapped = wrap_key(kek, dek)
        doc["dek"] = base64.b64encode(wrapped).decode()
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
        self._wrapped, self._kek = wrapped, (kek if unlock_key is None else None)
        self.unlock_key = unlock_key
