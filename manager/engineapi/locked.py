"""The Engine API of a manager locked by autolock: every cluster route refused, ``swarm unlock`` served.

A manager that restarts with autolock on cannot read its Raft log until it is given the unlock
key (docs/security.md). Meanwhile it serves nothing of the swarm: the cluster routes answer
Docker's 503 "Swarm is encrypted and needs to be unlocked...", ``/info`` says
``LocalNodeState: locked`` (``docker info``: "Swarm: locked"), and ``POST /swarm/unlock`` hands
the key to the runtime, which starts serving once the key opens its data key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from manager.state.raft.encryption import parse_unlock_key
from manager.state.raft.keyfile import INVALID_UNLOCK_KEY, InvalidUnlockKey
from nodeagent.engineapi import CLUSTER_ROUTES, ApiError, Route, SwarmInfo
from nodeagent.engineapi.errors import SWARM_LOCKED

__all__ = ["LockedManagerApi"]


class LockedManagerApi:
    """A ``ClusterApi`` for a locked manager; ``runtime`` gives ``unlock(key)`` and ``locked``."""

    def __init__(self, runtime: Any) -> None:
        """Answer for ``runtime`` (the manager runtime, or a fake in tests)."""
        self.runtime = runtime
        self._lock = asyncio.Lock()  # one unlock at a time

    def routes(self) -> list[Route]:
        """Every cluster route, each refused with Docker's locked message."""
        return [(method, path, self._refuse) for method, path in CLUSTER_ROUTES]

    async def _refuse(self, request: web.Request) -> web.StreamResponse:
        raise ApiError.unavailable(SWARM_LOCKED)

    def swarm_info(self, base: SwarmInfo) -> SwarmInfo:
        """``locked``, with Docker's words in Error; no node id or managers until unlocked."""
        return SwarmInfo(local_node_state="locked", node_addr=base.node_addr, error=SWARM_LOCKED)

    def manager_stats(self) -> tuple[bool, int, int] | None:
        """Unknown while locked."""
        return None

    async def unlock(self, text: str) -> None:
        """``POST /swarm/unlock``: 400 for a malformed key (swarmkit's words), 401 for a wrong one."""
        try:
            key = parse_unlock_key(text)
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None
        async with self._lock:
            if not self.runtime.locked:
                raise ApiError.conflict("swarm is not locked")
            try:
                await self.runtime.unlock(key)
            except InvalidUnlockKey:
                raise ApiError(401, INVALID_UNLOCK_KEY) from None
