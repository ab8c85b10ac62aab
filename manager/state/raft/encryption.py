"""Raft's encryption at rest: the data key that seals the log and snapshots, and the key that wraps it.

Two keys, as swarmkit has them:

* the **data key** (DEK): 32 random bytes; :class:`DataCipher` seals every WAL record batch and
  every snapshot with it (AES-256-GCM, a random 96-bit nonce per seal, the purpose bound in as
  associated data so that a sealed record cannot pass for a snapshot or the other way round);
* the **key-encryption key** (KEK): wraps the DEK (AES-256-GCM again). Without autolock the
  KEK is random and stored in plaintext beside the wrapped DEK (as swarmkit does); with autolock
  it is derived from the unlock key (HKDF-SHA256) and never written, so the DEK, hence the log,
  cannot be read without the key.

The unlock key is shown to users as Swarm shows it: ``SWMKEY-1-`` and the key's 32 bytes in
unpadded standard base64 (:func:`format_unlock_key`, :func:`parse_unlock_key`).

The cryptography comes from the ``cryptography`` library; nothing here does I/O. Nonces and new
keys are drawn from ``os.urandom``, which is what makes AES-GCM safe to use; a seal is not
deterministic, by design.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "KEY_BYTES",
    "SEAL_OVERHEAD",
    "UNLOCK_KEY_PREFIX",
    "DataCipher",
    "DecryptError",
    "format_unlock_key",
    "kek_from_unlock_key",
    "new_key",
    "parse_unlock_key",
    "unwrap_key",
    "wrap_key",
]

KEY_BYTES = 32
"""Every key is 256 bits: the DEK, the KEK and the unlock key."""
_NONCE_BYTES = 12
_TAG_BYTES = 16
SEAL_OVERHEAD = _NONCE_BYTES + _TAG_BYTES
"""Bytes a seal adds to its plaintext: the nonce before it, the GCM tag after."""

UNLOCK_KEY_PREFIX = "SWMKEY-1-"
"""How Swarm's unlock keys begin (swarmkit's encryption.HumanReadableKey)."""
_INVALID_KEY_STRING = "invalid key string"
"""swarmkit's ParseHumanReadableKey error: Docker answers it 400."""

_WRAP_AAD = b"swarmlet raft data key"
_KEK_INFO = b"swarmlet raft key-encryption key"


class DecryptError(Exception):
    """A sealed blob did not open: the wrong key, or bytes changed since it was sealed."""


def new_key() -> bytes:
    """A fresh random 256-bit key (a DEK, a plaintext KEK or an unlock key)."""
    return os.urandom(KEY_BYTES)


def _check(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes, not {len(key)}")


class DataCipher:
    """AES-256-GCM: ``seal`` under the current key, ``open`` under it or an older one, with a
    purpose (associated data).

    The older keys are those of a data key rotation under way (swarmkit's pending DEK): what
    was sealed before the rotation still opens until a snapshot under the new key replaces it.
    """

    def __init__(self, key: bytes, older: tuple[bytes, ...] = ()) -> None:
        """``key``: the 32-byte DEK that seals; ``older``: DEKs that may still open old data."""
        _check(key)
        for old in older:
            _check(old)
        self.key = key
        """The key that seals."""
        self.older = older
        """Keys that only open."""
        self._aead = AESGCM(key)
        self._older = [AESGCM(old) for old in older]
        self.older_opens = 0
        """How many opens needed an older key (the storage counts them to know which files
        still need one)."""

    def rotated(self, new_key: bytes) -> DataCipher:
        """A cipher that seals under ``new_key`` and still opens under this one's keys."""
        return DataCipher(new_key, (self.key, *self.older))

    def seal(self, plaintext: bytes, purpose: bytes) -> bytes:
        """nonce | ciphertext | tag; ``purpose`` must be given again to open it."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, purpose)

    def open(self, sealed: bytes, purpose: bytes) -> bytes:
        """The plaintext of :meth:`seal`'s output (under the current key or an older one);
        raises :class:`DecryptError` if no key opens it."""
        if len(sealed) < SEAL_OVERHEAD:
            raise DecryptError("sealed data too short")
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, purpose)
        except InvalidTag:
            pass
        for aead in self._older:
            try:
                plain = aead.decrypt(nonce, body, purpose)
            except InvalidTag:
                continue
            self.older_opens += 1
            return plain
        raise DecryptError("authentication failed (wrong key, or the data was changed)")


def wrap_key(kek: bytes, dek: bytes) -> bytes:
    """``dek`` sealed under ``kek``."""
    _check(dek)
    return DataCipher(kek).seal(dek, _WRAP_AAD)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """The DEK :func:`wrap_key` sealed; raises :class:`DecryptError` for another KEK."""
    dek = DataCipher(kek).open(wrapped, _WRAP_AAD)
    if len(dek) != KEY_BYTES:
        raise DecryptError("the wrapped key has the wrong length")
    return dek


def kek_from_unlock_key(unlock_key: bytes) -> bytes:
    """The KEK an autolocked manager derives from the unlock key (HKDF-SHA256)."""
    _check(unlock_key)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_KEK_INFO).derive(unlock_key)


def format_unlock_key(unlock_key: bytes) -> str:
    """``SWMKEY-1-`` and unpadded standard base64, as ``docker swarm unlock-key`` prints it."""
    return UNLOCK_KEY_PREFIX + base64.b64encode(unlock_key).decode().rstrip("=")


def parse_unlock_key(text: str) -> bytes:
    """The key's bytes from ``SWMKEY-1-...``; ValueError("invalid key string") as swarmkit says."""
    if not text.startswith(UNLOCK_KEY_PREFIX):
        raise ValueError(_INVALID_KEY_STRING)
    body = text[len(UNLOCK_KEY_PREFIX) :]
    if len(body) % 4 == 1 or body.endswith("=") or not body.isascii():
        raise ValueError(_INVALID_KEY_STRING)  # Go's RawStdEncoding refuses these
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise ValueError(_INVALID_KEY_STRING) from None
