"""How long the agent's asyncio loop was held: ``swarmlet_event_loop_lag_seconds`` and a warning.

Everything a node does over the network shares one asyncio loop: gossip probes and acks, Raft
heartbeats and votes, the gRPC streams, the Engine API. A piece of synchronous work that runs for
half a second holds all of them for half a second, and to its peers the node is silent for that
long: Raft's followers start an election after 0.4 to 0.8 s without a heartbeat, and a leader
without answers from a majority for 0.4 s steps down. Such a stall is the usual reason a leader
changes on a busy machine, and nothing else in a node's log would show it.

:class:`LoopLag` sets a timer every ``interval`` seconds and observes how late it fired; the
lateness is how long the loop was held (to within one interval, since a stall that began just
after a timer shows from the next one on). Each is observed in the histogram; one of
``warn_after`` seconds or more is logged as a warning, at most one line per ``quiet_for`` seconds,
the line counting the ones it stands for; the agent arms the warning once it is ready, as its
start holds the loop by design (imports, keys). To learn which task held the loop, run the agent with
``PYTHONASYNCIODEBUG=1``: asyncio then logs every callback that ran longer than 0.1 s, by task.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["LAG_BUCKETS", "LoopLag"]

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""From a loop that keeps up (a few milliseconds) to one held past every timeout of the protocols."""


class LoopLag:
    """Measures the stalls of the running loop; :meth:`run` is the task that does it."""

    def __init__(self, registry: CollectorRegistry, *, interval: float = 0.1,
                 warn_after: float | None = 0.2, quiet_for: float = 10.0) -> None:
        """``warn_after`` defaults to half of Raft's shortest election timeout at time scale 1;
        None measures without warning (the agent's start, whose imports hold the loop by design,
        sets it once the node is ready)."""
        if not interval > 0 or (warn_after is not None and not warn_after > 0) or quiet_for < 0:
            raise ValueError(f"LoopLag needs interval > 0, warn_after > 0, quiet_for >= 0; got "
                             f"{interval!r}, {warn_after!r}, {quiet_for!r}")
        self.interval = interval
        self.warn_after = warn_after
        self.quiet_for = quiet_for
        self.lag = Histogram(
            "swarmlet_event_loop_lag_seconds",
            "How late the agent's asyncio loop ran a periodic timer: how long synchronous work "
            "held the loop, and with it gossip, Raft and the APIs.",
            buckets=LAG_BUCKETS, registry=registry)
        self.longest = 0.0
        """The longest stall seen so far, in seconds."""
        self._unlogged = 0  # stalls over warn_after not yet in a log line
        self._quiet_until = 0.0

    async def run(self) -> None:
        """Observe the loop until cancelled."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            self.observe(max(0.0, now - due), now)
            due = now + self.interval

    def observe(self, lag: float, now: float) -> None:
        """Record one timer ``lag`` seconds late, found at loop time ``now``."""
        self.lag.observe(lag)
        self.longest = max(self.longest, lag)
        if self.warn_after is None or lag < self.warn_after:
            return
        self._unlogged += 1
        if now < self._quiet_until:
            return
        more = self._unlogged - 1
        log.warning("the event loop was held for %.2f s: gossip, Raft and the APIs answered nothing "
                    "meanwhile, and peers may have taken this node for slow or gone%s", lag,
                    f" ({more} more such stall(s) since the last warning)" if more else "")
        self._unlogged = 0
        self._quiet_until = now + self.quiet_for
