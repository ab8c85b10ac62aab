"""Autolock on every manager: keep this manager's Raft key file wrapped as the Cluster object says.

swarmkit keeps the unlock key in the Cluster object, and every manager re-encrypts its own keys
when it changes. So here: the Cluster object (in the Raft store, itself encrypted at rest) holds
``extra["UnlockKey"]`` (``SWMKEY-1-...``) while ``Spec.EncryptionConfig.AutoLockManagers`` is
on; each manager watches it and re-wraps its data key (:meth:`RaftKeys.rewrap`) under the key,
or under a fresh plaintext KEK once autolock is off. After a rotation the old key no longer
opens a manager that has applied it; one that was down meanwhile still needs the old key, as in
Swarm. The writes run one at a time, in a thread, always toward the latest wish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from manager.state.raft.encryption import parse_unlock_key
from manager.state.raft.keyfile import RaftKeys
from manager.state.store import Store

__all__ = ["UNLOCK_KEY_FIELD", "KeySync", "wanted_unlock_key"]

log = logging.getLogger(__name__)

UNLOCK_KEY_FIELD = "UnlockKey"
"""Where the Cluster object keeps the unlock key (in ``extra``; never rendered by the API but by
``GET /swarm/unlockkey``)."""


def wanted_unlock_key(cluster: Any) -> bytes | None:
    """The unlock key the managers' keys must be wrapped under now; None without autolock."""
    if cluster is None:
        return None
    encryption = cluster.spec.get("EncryptionConfig")
    if not isinstance(encryption, dict) or not encryption.get("AutoLockManagers"):
        return None
    text = cluster.extra.get(UNLOCK_KEY_FIELD)
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_unlock_key(text)
    except ValueError:
        log.error("the Cluster object's unlock key is malformed; keeping the Raft keys as they are")
        return None


class KeySync:
    """Follows the Cluster object and re-wraps ``keys`` when its autolock key changes."""

    def __init__(self, keys: RaftKeys, store: Store) -> None:
        """Watches ``store``'s Cluster object from now on (call before the log is replayed)."""
        self.keys = keys
        self.store = store
        self._watch = store.watch(["cluster"], on_change=self.check)
        self._task: asyncio.Task[None] | None = None
        self.rewraps = 0
        """Key file writes made (tests read it)."""

    def check(self) -> None:
        """Compare the store's wish with the key file; start a re-wrap if they differ."""
        self._watch.poll()
        found = self.store.find("cluster")
        if self.keys.locked or self._wanted(found) == self.keys.unlock_key:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sync(), name="raft-key-sync")

    def _wanted(self, found: list[Any]) -> bytes | None:
        return wanted_unlock_key(found[0] if found else None)

    async def idle(self) -> None:
        """Wait until the key file is as the store says (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _sync(self) -> None:
        while True:
            wanted = self._wanted(self.store.find("cluster"))
            if wanted == self.keys.unlock_key:
                return
            try:
                await asyncio.to_thread(self.keys.rewrap, wanted)
            except OSError:
                log.exception("could not re-wrap the Raft data key; trying again")
                await asyncio.sleep(1.0)
                continue
            self.rewraps += 1
            log.info("Raft data key re-wrapped: %s", "autolock on" if wanted else "autolock off")

    async def close(self) -> None:
        """Stop watching; a re-wrap under way is finished first (it is one small atomic write)."""
        self._watch.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
