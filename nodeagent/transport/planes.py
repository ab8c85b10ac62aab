"""Link faults on every plane: the asyncio side of :class:`~nodeagent.transport.faults.LinkFaults`.

The gossip transport applies the rules itself. Every other plane (Raft, the dispatcher session
and its task streams, forwarded writes, the network database's syncs, the overlay's datagrams
and tunnels) holds a :class:`FaultGate` on the node's one ``LinkFaults`` and asks it, with the
address of the peer it sends to (``host:port``; the host is what rules match, so one rule for a
node covers all of its ports):

* :meth:`FaultGate.blocked`: is the link partitioned? A plane that can tell who sent it
  something also drops what arrives from a partitioned peer.
* :meth:`FaultGate.stream`: the fate of one message on a stream: ``None`` when partitioned away,
  else the seconds to hold it back (delay, and loss as retransmission waits).
* :meth:`FaultGate.send_later`: run a send after a delay, keeping each peer's messages in the
  order they were given (a stream never reorders).
* :meth:`FaultGate.datagram`: send a datagram zero, one or two times, after its delay.
* :meth:`FaultGate.call`: before a request to a peer: wait out the delay, or, partitioned, wait
  as a request into a black hole does and raise :class:`LinkPartitioned`.

A gate without rules costs one attribute check per message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from nodeagent.transport.faults import LinkFaults

__all__ = ["FaultGate", "LinkPartitioned"]


class LinkPartitioned(ConnectionError):
    """The link with the peer is partitioned away by an injected fault."""


class FaultGate:
    """One plane's view of the node's link faults."""

    def __init__(self, faults: LinkFaults | None, plane: str, rng: random.Random | None = None) -> None:
        """``faults`` None: a gate that never acts (a component run without a node agent)."""
        self.faults = faults
        self.plane = plane
        self.rng = rng if rng is not None else random.Random()
        self._release: dict[str, float] = {}  # peer -> loop time its last delayed message goes out

    @property
    def active(self) -> bool:
        """Whether any rule is in force now."""
        return self.faults is not None and bool(self.faults.rules)

    def blocked(self, peer: str) -> bool:
        """Whether the link with ``peer`` (``host:port`` or a host) is partitioned away."""
        return self.active and self.faults is not None and self.faults.blocked(peer, self.plane)

    def stream(self, peer: str) -> float | None:
        """Seconds to hold one stream message to ``peer`` back, or None: partitioned, not sent."""
        if not self.active or self.faults is None:
            return 0.0
        decision = self.faults.on_stream(peer, self.rng, self.plane)
        return None if decision.copies == 0 else decision.delay

    def send_later(self, peer: str, delay: float, send: Callable[[], None]) -> None:
        """Call ``send`` ``delay`` seconds from now, never before an earlier message to ``peer``."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        last = self._release.get(peer)
        due = now + delay if last is None else max(now + delay, last + 1e-6)
        if due <= now:
            self._release.pop(peer, None)
            send()
            return
        self._release[peer] = due
        loop.call_at(due, send)

    def datagram(self, peer: str, send: Callable[[], None]) -> None:
        """Send one datagram to ``peer`` as the rules say: dropped, once, or twice, maybe later."""
        if not self.active or self.faults is None:
            send()
            return
        decision = self.faults.on_packet(peer, self.rng, self.plane)
        for _ in range(decision.copies):
            if decision.delay > 0:
                asyncio.get_running_loop().call_later(decision.delay, send)
            else:
                send()

    async def call(self, peer: str, timeout: float) -> None:
        """Before one request to ``peer``: hold it back by the link's delay; if the link is
        partitioned, wait ``timeout`` (no answer comes from a black hole) and raise LinkPartitioned."""
        delay = self.stream(peer)
        if delay is None:
            await asyncio.sleep(max(0.0, timeout))
            raise LinkPartitioned(f"the link with {peer} is partitioned (swarmlet chaos)")
        if delay > 0:
            await asyncio.sleep(delay)
