"""Join tokens shaped like Swarm's, and the root CA they are bound to.

A token reads ``SWMTKN-1-<CA digest>-<secret>``: the digest is the SHA-256 of the root CA
certificate's DER bytes written in base 36 and zero-padded to 50 characters (the length of the
largest 256-bit number in base 36), the secret 25 base-36 characters (about 128 random bits).
The digest lets a joining node check that it talks to the right cluster before it trusts it;
the secret is what the managers compare. The worker and manager tokens share the digest and
differ in the secret, so the secret alone says which role a joining node gets.

This module does no network I/O; the files it writes are the only side effect.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import secrets as _secrets
from dataclasses import dataclass

from manager.ca.authority import new_root
from nodeagent.tls import BASE36_DIGITS, DIGEST_LENGTH, base36, ca_digest, write_private

__all__ = [
    "DIGEST_LENGTH",
    "SECRET_LENGTH",
    "TOKEN_PREFIX",
    "ClusterCredentials",
    "InvalidToken",
    "JoinToken",
    "ca_digest",
    "make_token",
    "parse_token",
    "rotate_token",
]

TOKEN_PREFIX = "SWMTKN"
"""The first field of every join token, as Swarm's."""

SECRET_LENGTH = 25
"""Characters of the secret: 25 base-36 characters hold the 128 random bits Swarm uses."""

_VERSION = 1
_SECRET_BITS = 128

# The file names ClusterCredentials.write uses; compose mounts the token files as secrets.
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
WORKER_TOKEN_FILE = "worker_token"
MANAGER_TOKEN_FILE = "manager_token"


class InvalidToken(ValueError):
    """A join token that is not well formed. ``str(e)`` is Swarm's text ("invalid join token")."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("invalid join token")
        self.detail = detail
        """Why the token was rejected, for logs; never shown in place of Swarm's text."""


@dataclass(frozen=True)
class JoinToken:
    """The parts of a parsed join token."""

    version: int
    """The token format version (1)."""
    ca_digest: str
    """SHA-256 of the root CA certificate's DER, base 36, zero-padded to 50 characters."""
    secret: str
    """The 25 base-36 characters that managers compare to decide whether, and as what, a node joins."""

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}-{self.version}-{self.ca_digest}-{self.secret}"

    def matches_ca(self, ca_cert_pem: bytes) -> bool:
        """Whether this token was made for the root CA certificate ``ca_cert_pem``."""
        return _secrets.compare_digest(self.ca_digest, ca_digest(ca_cert_pem))




def _isbase36(text: str) -> bool:
    return all(c in BASE36_DIGITS for c in text)


def make_token(ca_cert_pem: bytes, secret: str | None = None) -> str:
    """A join token for the root CA ``ca_cert_pem``; a fresh random secret unless one is given."""
    if secret is None:
        secret = base36(_secrets.randbits(_SECRET_BITS), SECRET_LENGTH)
    if len(secret) != SECRET_LENGTH or not _isbase36(secret):
        raise ValueError(f"a token secret is {SECRET_LENGTH} lowercase base-36 characters")
    return str(JoinToken(_VERSION, ca_digest(ca_cert_pem), secret))


def rotate_token(token: str, secret: str | None = None) -> str:
    """A new token for the same cluster: ``token``'s CA digest with a fresh random secret.

    ``docker swarm join-token --rotate`` does this: the CA stays, so only the secret changes,
    and the old token stops working once the Cluster object holds the new one.
    """
    old = parse_token(token)
    if secret is None:
        secret = base36(_secrets.randbits(_SECRET_BITS), SECRET_LENGTH)
    if len(secret) != SECRET_LENGTH or not _isbase36(secret):
        raise ValueError(f"a token secret is {SECRET_LENGTH} lowercase base-36 characters")
    return str(JoinToken(old.version, old.ca_digest, secret))


def parse_token(token: str) -> JoinToken:
    """Split a join token into its parts; raises :class:`InvalidToken` if it is malformed.

    Surrounding whitespace is ignored, since tokens usually come from files that end in a newline.
    """
    parts = token.strip().split("-")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        raise InvalidToken("expected SWMTKN-1-<digest>-<secret>")
    _, version, digest, secret = parts
    if version != str(_VERSION):
        raise InvalidToken(f"unsupported token version {version!r}")
    if len(digest) != DIGEST_LENGTH or not _isbase36(digest):
        raise InvalidToken(f"the CA digest must be {DIGEST_LENGTH} base-36 characters")
    if len(secret) != SECRET_LENGTH or not _isbase36(secret):
        raise InvalidToken(f"the secret must be {SECRET_LENGTH} base-36 characters")
    return JoinToken(_VERSION, digest, secret)


@dataclass(frozen=True)
class ClusterCredentials:
    """A cluster's root CA and its two join tokens."""

    ca_cert_pem: bytes
    """The root CA certificate (PEM); its digest is in both tokens."""
    ca_key_pem: bytes
    """The root CA's private key (PEM, unencrypted); only managers should see it."""
    worker_token: str
    """The token a node presents to join as a worker."""
    manager_token: str
    """The token a node presents to join as a manager."""

    @classmethod
    def create(cls, now: datetime.datetime | None = None) -> ClusterCredentials:
        """A new root CA (ECDSA P-256, valid 20 years as Swarm's) and fresh worker and manager tokens."""
        root = new_root(now or datetime.datetime.now(datetime.UTC))
        return cls(root.cert_pem, root.key_pem, make_token(root.cert_pem), make_token(root.cert_pem))

    def role_for(self, token: str) -> str | None:
        """"worker" or "manager" if ``token`` is one of this cluster's tokens, else None."""
        presented = token.strip()
        if _secrets.compare_digest(presented, self.manager_token):
            return "manager"
        if _secrets.compare_digest(presented, self.worker_token):
            return "worker"
        return None

    def write(self, directory: str | os.PathLike[str]) -> None:
        """Write ca.crt, ca.key, worker_token and manager_token into ``directory`` (made if missing).

        Each file is written beside its final name and renamed into place, so a crash leaves
        either the old file or the new one, never half of one. Only the owner may read them.
        """
        folder = pathlib.Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            CA_CERT_FILE: self.ca_cert_pem,
            CA_KEY_FILE: self.ca_key_pem,
            WORKER_TOKEN_FILE: (self.worker_token + "\n").encode(),
            MANAGER_TOKEN_FILE: (self.manager_token + "\n").encode(),
        }
        write_private(folder, files)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ClusterCredentials:
        """Read what :meth:`write` wrote; raises FileNotFoundError or InvalidToken if it is not all there."""
        folder = pathlib.Path(directory)
        cert = (folder / CA_CERT_FILE).read_bytes()
        key = (folder / CA_KEY_FILE).read_bytes()
        worker = (folder / WORKER_TOKEN_FILE).read_text().strip()
        manager = (folder / MANAGER_TOKEN_FILE).read_text().strip()
        for token in (worker, manager):
            if not parse_token(token).matches_ca(cert):
                raise InvalidToken(f"{folder}: a token does not match {CA_CERT_FILE}")
        return cls(cert, key, worker, manager)
