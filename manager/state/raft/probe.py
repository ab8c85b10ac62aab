"""Is a leader whose connection broke dead, or only unreachable? Knock on its port and see.

A stream with the leader can break because its process died (its kernel closed the connections)
or because the network hiccupped. A connection attempt tells them apart: a refused connection
means nothing listens there any more. The probe only finds out; what to do about it is the core's
decision (:meth:`manager.state.raft.core.RaftNode.report_leader_unreachable`), which the shell
feeds with what the probe found, at its next turn of the loop.

A probe that times out (a paused container, a cut cable) or connects reports nothing: then the
election timeout decides, as Raft does when a dead leader cannot be told from a slow one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["LeaderProbe", "split_address"]

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int] | None:
    """("host", port) of a "host:port" address, None if it is not one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class LeaderProbe:
    """Probes the port of a leader whose stream broke; reports ``(leader, term)`` if refused."""

    def __init__(
        self,
        address_of: Callable[[str], str],
        report: Callable[[str, int], None],
        *,
        timeout_s: float = 0.3,
    ) -> None:
        """``address_of`` gives a peer's "host:port"; ``report`` is called with the leader and the
        term in which its stream broke when its port refuses connections."""
        self._address_of = address_of
        self._report = report
        self._timeout_s = timeout_s
        self._probing: dict[str, asyncio.Task[None]] = {}

    def stream_broke(self, peer: str, leader: str, term: int) -> None:
        """A stream with ``peer`` broke while this node followed ``leader`` in ``term``."""
        if peer != leader or peer in self._probing:
            return
        task = asyncio.create_task(self._probe(peer, term), name=f"raft-probe-{peer}")
        self._probing[peer] = task
        task.add_done_callback(lambda _t: self._probing.pop(peer, None))

    async def close(self) -> None:
        """Cancel probes under way."""
        tasks = list(self._probing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe(self, leader: str, term: int) -> None:
        where = split_address(self._address_of(leader))
        if where is None:
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*where), self._timeout_s)
        except (ConnectionRefusedError, ConnectionResetError):
            log.info("raft: leader %s refuses connections at %s:%d (term %d)", leader, *where, term)
            self._report(leader, term)
            return
        except (TimeoutError, OSError):
            return  # cannot tell (a paused or cut-off host): the election timeout decides
        writer.close()  # it still listens: a broken connection, not a dead leader
