"""A simulated network of hosts that implements :class:`nodeagent.transport.Transport`.

Every fault the chaos tools offer in a real cluster exists here, seeded and replayable:

* per-link latency and jitter, packet loss, duplication and reordering (best-effort half only:
  the stream half is reliable and ordered while a link is up, as TCP is);
* cutting one link (both ways or one way), isolating a host, partitioning hosts into groups,
  and healing all of it;
* crashing a host (its timers and in-flight work are gone; state survives only in what the
  harness kept), pausing it (it stops processing but keeps its state; what arrives meanwhile waits,
  as in a socket buffer) and restarting it.

Reachability is decided when a message is sent; a message in flight when a partition starts is
still delivered, as it would be on a wire. Deliveries go to whatever is alive at the address
when they land, so a restarted host can receive packets its former self was sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nodeagent.sim.scheduler import Simulator, Timer
from nodeagent.transport import Codec, MessageHandler

__all__ = ["HostState", "LinkProfile", "SimHost", "SimNetwork"]


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How one directed link behaves. Times are seconds, probabilities are 0..1."""

    latency: float = 0.0005  # one-way delay every message takes
    jitter: float = 0.0  # extra delay drawn uniformly from [0, jitter)
    loss: float = 0.0  # chance a packet is dropped (streams are never dropped by loss)
    duplicate: float = 0.0  # chance a packet is delivered twice
    reorder: float = 0.0  # chance a packet is held back by up to reorder_delay, so later ones overtake it
    reorder_delay: float = 0.010  # the most a reordered packet is held back

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "reorder_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"LinkProfile.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"LinkProfile.{name} must be between 0 and 1, got {value!r}")


class HostState:
    """The states a simulated host can be in."""

    UP = "up"
    PAUSED = "paused"
    DOWN = "down"


class SimHost:
    """One host on the simulated network: a Transport plus the host's own timers.

    Timers scheduled through the host belong to its current incarnation: a crash or restart
    voids them, and while the host is paused they wait for it to resume.
    """

    __slots__ = ("_deferred", "_handler", "address", "generation", "network", "state")

    def __init__(self, network: SimNetwork, address: str) -> None:
        self.network = network
        self.address = address
        self.state = HostState.UP
        self.generation = 0
        self._handler: MessageHandler | None = None
        self._deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    # Transport -----------------------------------------------------------------------------
    def send_packet(self, to: str, message: Any) -> None:
        """Send best-effort (see :class:`LinkProfile` for what can happen to it)."""
        if self.state == HostState.UP:
            self.network._send(self.address, to, message, False)

    def send_stream(self, to: str, message: Any) -> None:
        """Send reliably and in order; lost only if the peer is unreachable."""
        if self.state == HostState.UP:
            self.network._send(self.address, to, message, True)

    def set_handler(self, handler: MessageHandler) -> None:
        """Install the receiver for every message that arrives at this host."""
        self._handler = handler

    # Timers ---------------------------------------------------------------------------------
    def now(self) -> float:
        """The virtual time (the host's clock)."""
        return self.network.sim.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay`` seconds, if this incarnation is still alive."""
        return self.network.sim.call_later(delay, self._fire, self.generation, callback, args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` at virtual time ``when``, if this incarnation is still alive."""
        return self.network.sim.call_at(when, self._fire, self.generation, callback, args)

    def _fire(self, generation: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if generation != self.generation:
            return
        if self.state == HostState.PAUSED:
            self._deferred.append((callback, args))
            return
        callback(*args)

    def _receive(self, sender: str, message: Any, reliable: bool) -> None:
        if self.state == HostState.DOWN:
            self.network.dropped_down += 1
            return
        if self.state == HostState.PAUSED:
            self._deferred.append((self._receive, (sender, message, reliable)))
            return
        handler = self._handler
        if handler is not None:
            self.network.delivered += 1
            handler(sender, message, reliable)


class SimNetwork:
    """Hosts, links and faults, driven by a :class:`Simulator`."""

    def __init__(
        self,
        sim: Simulator,
        default: LinkProfile | None = None,
        *,
        rng: random.Random | None = None,
        codec: Codec | None = None,
        tracer: Callable[[str], None] | None = None,
    ) -> None:
        self.sim = sim
        self.rng = rng if rng is not None else sim.fork_rng("network")
        self.default = default if default is not None else LinkProfile()
        self.codec = codec
        self.tracer = tracer
        self.hosts: dict[str, SimHost] = {}
        self._links: dict[tuple[str, str], LinkProfile] = {}
        self._cut: set[tuple[str, str]] = set()
        self._group: dict[str, int] = {}
        self._stream_tail: dict[tuple[str, str], float] = {}
        # Counters, for tests and the simulators' reports.
        self.sent = 0
        self.delivered = 0
        self.dropped_loss = 0
        self.dropped_unreachable = 0
        self.dropped_down = 0
        self.duplicated = 0

    # Hosts -----------------------------------------------------------------------------------
    def add_host(self, address: str) -> SimHost:
        """Attach a new host at ``address`` and return it."""
        if address in self.hosts:
            raise ValueError(f"address {address!r} is already attached")
        host = SimHost(self, address)
        self.hosts[address] = host
        return host

    def host(self, address: str) -> SimHost:
        """The host at ``address``."""
        try:
            return self.hosts[address]
        except KeyError:
            raise KeyError(f"no simulated host at {address!r}") from None

    def crash(self, address: str) -> None:
        """Stop a host dead: its timers are void and arriving messages are dropped."""
        host = self.host(address)
        host.state = HostState.DOWN
        host.generation += 1
        host._deferred.clear()
        host._handler = None
        self._trace(f"crash {address}")

    def restart(self, address: str) -> SimHost:
        """Bring a crashed (or running) host back with no handler and no timers.

        The caller builds the host's new incarnation on the returned host.
        """
        host = self.host(address)
        host.state = HostState.UP
        host.generation += 1
        host._deferred.clear()
        host._handler = None
        self._trace(f"restart {address}")
        return host

    def pause(self, address: str) -> None:
        """Freeze a host: it keeps its state; timers and messages wait until :meth:`resume`."""
        host = self.host(address)
        if host.state == HostState.UP:
            host.state = HostState.PAUSED
            self._trace(f"pause {address}")

    def resume(self, address: str) -> None:
        """Unfreeze a paused host; what waited runs now, in the order it arrived."""
        host = self.host(address)
        if host.state != HostState.PAUSED:
            return
        host.state = HostState.UP
        deferred, host._deferred = host._deferred, []
        generation = host.generation
        for callback, args in deferred:
            self.sim.call_later(0.0, host._fire, generation, callback, args)
        self._trace(f"resume {address}")

    # Links and faults ---------------------------------------------------------------------------
    def set_link(self, a: str, b: str, profile: LinkProfile, *, both_ways: bool = True) -> None:
        """Give the link a->b (and b->a unless ``both_ways`` is False) its own behaviour."""
        self._links[(a, b)] = profile
        if both_ways:
            self._links[(b, a)] = profile

    def clear_links(self) -> None:
        """Every link goes back to the default profile."""
        self._links.clear()

    def cut(self, a: str, b: str, *, both_ways: bool = True) -> None:
        """Nothing sent from a to b (and b to a) arrives until :meth:`heal` or :meth:`mend`."""
        self._cut.add((a, b))
        if both_ways:
            self._cut.add((b, a))
        self._trace(f"cut {a} {'<->' if both_ways else '->'} {b}")

    def mend(self, a: str, b: str) -> None:
        """Undo :meth:`cut` for one link, both ways."""
        self._cut.discard((a, b))
        self._cut.discard((b, a))
        self._trace(f"mend {a} <-> {b}")

    def isolate(self, address: str) -> None:
        """Cut a host off from every other host."""
        self._group[address] = -1 - len(self._group) - 1_000_000
        self._trace(f"isolate {address}")

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the hosts into groups that cannot reach each other.

        Hosts named in no group form one more group together.
        """
        self._group.clear()
        named: set[str] = set()
        for index, group in enumerate(groups, start=1):
            for address in group:
                if address in named:
                    raise ValueError(f"{address!r} is in more than one partition group")
                named.add(address)
                self._group[address] = index
        self._trace("partition " + " | ".join(",".join(sorted(g)) for g in map(list, groups)))

    def heal(self) -> None:
        """Undo every cut, isolation and partition (link profiles stay)."""
        self._cut.clear()
        self._group.clear()
        self._trace("heal")

    def reachable(self, src: str, dst: str) -> bool:
        """Whether a message sent now from ``src`` to ``dst`` would cross the network."""
        if self._cut and (src, dst) in self._cut:
            return False
        groups = self._group
        if groups:
            return groups.get(src, 0) == groups.get(dst, 0)
        return True

    # Delivery ------------------------------------------------------------------------------------
    def _send(self, src: str, dst: str, message: Any, reliable: bool) -> None:
        self.sent += 1
        host = self.hosts.get(dst)
        if host is None or not self.reachable(src, dst):
            self.dropped_unreachable += 1
            return
        profile = self._links.get((src, dst), self.default) if self._links else self.default
        rng = self.rng
        if self.codec is not None:
            message = self.codec.decode(self.codec.encode(message))
        delay = profile.latency
        if profile.jitter:
            delay += rng.random() * profile.jitter
        if reliable:
            key = (src, dst)
            when = max(self.sim.now + delay, self._stream_tail.get(key, 0.0))
            self._stream_tail[key] = when
            self.sim.call_at(when, host._receive, src, message, True)
            return
        if profile.loss and rng.random() < profile.loss:
            self.dropped_loss += 1
            return
        if profile.reorder and rng.random() < profile.reorder:
            delay += rng.random() * profile.reorder_delay
        self.sim.call_later(delay, host._receive, src, message, False)
        if profile.duplicate and rng.random() < profile.duplicate:
            self.duplicated += 1
            self.sim.call_later(delay + rng.random() * profile.latency, host._receive, src, message, False)

    def _trace(self, line: str) -> None:
        if self.tracer is not None:
            self.tracer(f"{self.sim.now:.6f} {line}")
