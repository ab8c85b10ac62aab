"""Where the other managers can be reached: node id -> cluster address ("host:port").

The book is kept on disk (``<data dir>/raft/peers.json``) so that a restarted manager finds its
peers before anyone tells it again.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Mapping

__all__ = ["AddressBook"]

log = logging.getLogger(__name__)


class AddressBook:
    """Cluster addresses of the other managers, by node id, saved on every change."""

    def __init__(self, path: pathlib.Path, initial: Mapping[str, str] | None = None) -> None:
        """``path`` is the file to keep them in; ``initial`` are known before anything is read."""
        self.path = path
        self._addresses: dict[str, str] = dict(initial or {})

    def get(self, node_id: str) -> str:
        """The address of ``node_id``, "" when unknown."""
        return self._addresses.get(node_id, "")

    def all(self) -> dict[str, str]:
        """A copy of every known address."""
        return dict(self._addresses)

    def set(self, node_id: str, address: str) -> bool:
        """Record an address; True when it changed (and was saved)."""
        if not address or self._addresses.get(node_id) == address:
            return False
        self._addresses[node_id] = address
        self.save()
        return True

    def load(self) -> None:
        """Add what the file holds to what is known (what is known wins)."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            for k, v in saved.items():
                self._addresses.setdefault(str(k), str(v))

    def save(self) -> None:
        """Write the book atomically (a failure is logged: the addresses come back by gossip)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self._addresses, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:
            log.warning("raft: could not save peer addresses to %s", self.path)
