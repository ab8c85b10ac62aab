"""Who a node is: its ID and the version it runs, each made in one place.

IDs have swarmkit's form, 25 lowercase base-36 characters drawn from 128 random bits; a node
keeps its ID in ``DATA_DIR/node_id`` across restarts. The ID of a node that joins is chosen by
the managers' CA and named by its certificate (the CN); ``node_id`` keeps a copy. Object IDs
(clusters, services, tasks) use the same form, drawn by the proposer from a seeded
``random.Random`` so that simulated runs replay.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets

from nodeagent import __version__

__all__ = [
    "ID_ALPHABET", "ID_LENGTH", "VERSION", "IdentityError", "founder_id", "founders", "is_id", "keep_node_id",
    "load_node_id", "new_id", "token_digest",
]

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 25

VERSION = __version__
"""swarmlet's version: what ``docker node ls`` shows as ENGINE VERSION and /version reports."""


class IdentityError(Exception):
    """The node's ID cannot be read or written; the message names the data directory."""


def new_id(rng: random.Random | None = None) -> str:
    """A new ID: 128 random bits in base 36, 25 characters (from ``rng`` when given, else the OS)."""
    return _base36(rng.getrandbits(128) if rng is not None else secrets.randbits(128))


def founder_id(cluster_key: str, hostname: str) -> str:
    """The node ID of the founding manager ``hostname`` of the cluster whose CA digest (the middle
    part of its join tokens) is ``cluster_key``: 128 bits of SHA-256 of the two, so that every
    founder knows every other's ID before any has started (``--initial-cluster``)."""
    digest = hashlib.sha256(f"swarmlet-founder\0{cluster_key}\0{hostname}".encode()).digest()
    return _base36(int.from_bytes(digest[:16], "big"))


def founders_cluster_id(cluster_key: str) -> str:
    """The cluster ID that the founding managers of the cluster whose CA digest is ``cluster_key``
    agree on before any has started: each puts it in its own certificate (O), and the one that
    leads first writes the Cluster object under it."""
    digest = hashlib.sha256(f"swarmlet-cluster\0{cluster_key}".encode()).digest()
    return _base36(int.from_bytes(digest[:16], "big"))


def token_digest(token_file: str | None) -> str:
    """The CA digest of the join token in ``token_file`` ("" if there is none or it is unreadable).

    Tokens read ``SWMTKN-1-<CA digest>-<secret>``, and both tokens of a cluster share the digest.
    """
    if not token_file:
        return ""
    try:
        with open(token_file) as f:
            parts = f.read().strip().split("-")
    except OSError:
        return ""
    return parts[2] if len(parts) == 4 and parts[0] == "SWMTKN" else ""


def founders(cluster_key: str, members: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Node ID -> cluster address of each founding manager (``--initial-cluster``'s NAME=HOST:PORT)."""
    return {founder_id(cluster_key, name): address for name, address in members}


def _base36(n: int) -> str:
    digits = []
    for _ in range(ID_LENGTH):
        n, d = divmod(n, 36)
        digits.append(ID_ALPHABET[d])
    return "".join(reversed(digits))


def is_id(text: str) -> bool:
    """Whether ``text`` has the form of an ID."""
    return len(text) == ID_LENGTH and set(text) <= set(ID_ALPHABET)


def load_node_id(data_dir: str, first: str | None = None) -> str:
    """The node ID kept in ``DATA_DIR/node_id``, made (and written durably) at first start:
    ``first`` if given (a founding manager's :func:`founder_id`), else a new random one."""
    path = os.path.join(data_dir, "node_id")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        raise IdentityError(f"--data-dir {data_dir}: cannot create it ({exc.strerror})") from None
    try:
        with open(path) as f:
            node_id = f.read().strip()
    except FileNotFoundError:
        node_id = first or new_id()
        _write_id(data_dir, path, node_id)
        return node_id
    except OSError as exc:
        raise IdentityError(f"--data-dir {data_dir}: cannot read {path} ({exc.strerror})") from None
    if not is_id(node_id):
        raise IdentityError(f"--data-dir {data_dir}: {path} does not hold a node id (25 base-36 characters)")
    return node_id


def keep_node_id(data_dir: str, node_id: str) -> str:
    """Write ``node_id`` (the ID the node's certificate names) into ``DATA_DIR/node_id`` unless it
    is there already; returns it."""
    if not is_id(node_id):
        raise IdentityError(f"--data-dir {data_dir}: {node_id!r} is not a node id (25 base-36 characters)")
    path = os.path.join(data_dir, "node_id")
    try:
        with open(path) as f:
            if f.read().strip() == node_id:
                return node_id
    except OSError:
        pass
    _write_id(data_dir, path, node_id)
    return node_id


def _write_id(data_dir: str, path: str, node_id: str) -> None:
    """``node_id`` into ``path`` through a synced temporary file renamed into place."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(node_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise IdentityError(f"--data-dir {data_dir}: cannot write the node id ({exc.strerror})") from None
