"""A cluster of SWIM cores on the deterministic simulator, and the measurements of `swarmlet sim gossip`.

:class:`GossipCluster` is the shell every simulated node shares: it drives each :class:`Swim`
exactly as the real shell does (tick at ``next_deadline()``, ``handle()`` every delivery, drain the
outbox into the transport after each call), on :class:`nodeagent.sim.SimNetwork` hosts. Messages
travel as objects, never bytes, unless a codec is given. Everything random comes from the
simulator's seed, so the same seed gives the same trace, event for event.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberEvent, MemberState, Swim, UserMessage
from nodeagent.gossip.members import ConvergedView
from nodeagent.gossip.messages import NodeMeta, PushPullEntry, WireState
from nodeagent.sim import LinkProfile, SimHost, SimNetwork, Simulator
from nodeagent.transport import Codec

__all__ = ["GossipCluster", "RunParams", "measure", "percentiles"]

#: ``observer(now, node_name, event)``: called for every event any node's core emits.
EventObserver = Callable[[float, str, MemberEvent | UserMessage], None]
#: ``observer(now, sender_address, receiver_name, message, reliable)``: every delivered message.
DeliveryObserver = Callable[[float, str, str, Any, bool], None]


class _Node:
    __slots__ = ("address", "host", "incarnation", "lives", "name", "swim", "wake_at")

    def __init__(self, name: str, address: str, host: SimHost) -> None:
        self.name = name
        self.address = address
        self.host = host
        self.swim: Swim | None = None
        self.wake_at = math.inf
        self.incarnation = 0  # the incarnation its core starts with
        self.lives = 0  # restarts so far: each life draws its own random stream


class GossipCluster:
    """``n`` SWIM nodes named ``node-1 .. node-n`` on one simulated network."""

    def __init__(
        self,
        n: int,
        seed: int,
        config: GossipConfig,
        *,
        link: LinkProfile | None = None,
        converged: bool = False,
        codec: Codec | None = None,
        trace: bool = False,
        trace_messages: bool = False,
        wake_delay: float = 0.0,
        clock_offset: float = 0.0,
    ) -> None:
        if n < 1:
            raise ValueError(f"a gossip cluster needs at least 1 node, got {n}")
        if not (math.isfinite(wake_delay) and wake_delay >= 0.0):
            raise ValueError(f"GossipCluster wake_delay must be a finite number >= 0, got {wake_delay}")
        self.config = config
        # How late each node's loop wakes for a deadline (a real asyncio loop always wakes a
        # little after it), and the offset of the shared clock the staggered schedule reads
        # (a real shell's is wall time minus the monotonic clock: about 1.8e9 s).
        self.wake_delay = wake_delay
        self.clock_offset = clock_offset
        self.sim = Simulator(seed)
        self.trace_lines: list[str] | None = [] if trace else None
        self._trace_messages = trace_messages and trace
        self.net = SimNetwork(self.sim, link, codec=codec, tracer=self._trace if trace else None)
        self.observers: list[EventObserver] = []
        self.delivery_observers: list[DeliveryObserver] = []
        self.nodes: dict[str, _Node] = {}
        self._by_address: dict[str, _Node] = {}
        self._rng = self.sim.fork_rng("cluster")
        for i in range(1, n + 1):
            name = f"node-{i}"
            address = f"{name}:7946"  # a simulated name; nothing here touches a real network
            node = _Node(name, address, self.net.add_host(address))
            self.nodes[name] = node
            self._by_address[address] = node
        if converged:
            view = ConvergedView(
                (PushPullEntry(nd.name, nd.address, self._meta(nd), 0, WireState.ALIVE)
                 for nd in self.nodes.values()),
                self.sim.now,
            )
            for node in self.nodes.values():
                self._boot(node, view=view)
        else:
            seed_address = next(iter(self.nodes.values())).address
            for node in self.nodes.values():
                self._boot(node, seeds=[seed_address])

    # Nodes ------------------------------------------------------------------------------------------
    @staticmethod
    def _meta(node: _Node) -> NodeMeta:
        return NodeMeta(node_id=node.name, role="worker", addr=node.address, labels=(), version="sim")

    def _boot(self, node: _Node, *, seeds: Iterable[str] = (), view: ConvergedView | None = None) -> None:
        now = self.sim.now
        rng = self.sim.fork_rng(f"swim/{node.name}/{node.lives}")
        swim = Swim(self.config, node.name, node.address, self._meta(node), rng, now, node.incarnation,
                    clock_offset=self.clock_offset)
        node.swim = swim
        node.wake_at = math.inf
        node.host.set_handler(self._handler_for(node))
        if view is not None:
            swim.assume_converged(view, now)
        else:
            swim.join(now, [s for s in seeds if s != node.address])
        self._flush(node)

    def _handler_for(self, node: _Node) -> Callable[[str, Any, bool], None]:
        def handler(sender: str, message: Any, reliable: bool) -> None:
            self._deliver(node, sender, message, reliable)

        return handler

    def _deliver(self, node: _Node, sender: str, message: Any, reliable: bool) -> None:
        swim = node.swim
        if swim is None:
            return
        if self._trace_messages:
            self._trace(f"{self.sim.now:.6f} {self._name(sender)} -> {node.name} {_describe(message)}")
        for observer in self.delivery_observers:
            observer(self.sim.now, sender, node.name, message, reliable)
        swim.handle(self.sim.now, sender, message, reliable)
        self._flush(node)

    def _wake(self, node: _Node, when: float) -> None:
        if node.wake_at != when or node.swim is None:
            return  # superseded by an earlier wake-up
        node.wake_at = math.inf
        node.swim.tick(self.sim.now)
        self._flush(node)

    def _flush(self, node: _Node) -> None:
        swim = node.swim
        assert swim is not None
        host = node.host
        for out in swim.take_outbox():
            if out.reliable:
                host.send_stream(out.to, out.message)
            else:
                host.send_packet(out.to, out.message)
        events = swim.take_events()
        if events:
            now = self.sim.now
            for event in events:
                if self.trace_lines is not None:
                    self._trace(f"{now:.6f} {node.name} {_describe_event(event)}")
                for observer in self.observers:
                    observer(now, node.name, event)
        deadline = swim.next_deadline()
        if deadline < node.wake_at:
            node.wake_at = deadline
            host.call_at(deadline + self.wake_delay, self._wake, node, deadline)

    def _name(self, address: str) -> str:
        node = self._by_address.get(address)
        return node.name if node is not None else address

    def _trace(self, line: str) -> None:
        if self.trace_lines is not None:
            self.trace_lines.append(line)

    # Faults and actions -------------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        """Crash a node: it stops at once, with no goodbye."""
        node = self.nodes[name]
        self.net.crash(node.address)
        node.swim = None
        node.wake_at = math.inf

    def restart(self, name: str, *, seeds: Iterable[str] | None = None, incarnation: int = 0) -> None:
        """Bring a crashed node back: a fresh core that joins through ``seeds`` (names; default:
        every other node). It starts at ``incarnation``, 0 by default as the real agent does (it
        keeps no gossip state across a restart): the cluster may hold its former self at that
        incarnation or above, and the core must outbid it."""
        node = self.nodes[name]
        self.net.restart(node.address)
        node.lives += 1
        node.incarnation = incarnation
        seed_names = [n for n in self.nodes if n != name] if seeds is None else list(seeds)
        self._boot(node, seeds=[self.nodes[s].address for s in seed_names])

    def leave(self, name: str) -> None:
        """Make a node leave gracefully (it keeps gossiping its departure)."""
        node = self.nodes[name]
        assert node.swim is not None
        node.swim.leave(self.sim.now)
        self._flush(node)

    def broadcast(self, name: str, topic: str, payload: bytes) -> None:
        """Have ``name`` broadcast a user message."""
        node = self.nodes[name]
        assert node.swim is not None
        node.swim.broadcast(self.sim.now, topic, payload)
        self._flush(node)

    def set_meta(self, name: str, meta: NodeMeta) -> None:
        """Change a node's metadata (gossiped with a new incarnation)."""
        node = self.nodes[name]
        assert node.swim is not None
        node.swim.set_meta(self.sim.now, meta)
        self._flush(node)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the nodes (by name) into groups that cannot reach each other."""
        self.net.partition(*([self.nodes[n].address for n in g] for g in groups))

    def heal(self) -> None:
        """Undo every partition and cut."""
        self.net.heal()

    def run_until(self, when: float) -> None:
        """Advance virtual time to ``when``."""
        self.sim.run_until(when)

    def run_for(self, duration: float) -> None:
        """Advance virtual time by ``duration`` seconds."""
        self.sim.run_for(duration)

    # Views -----------------------------------------------------------------------------------------------
    def live(self) -> list[str]:
        """Names of the nodes that are running (not crashed)."""
        return [n for n, nd in self.nodes.items() if nd.swim is not None]

    def swim(self, name: str) -> Swim:
        """The core of a running node."""
        swim = self.nodes[name].swim
        if swim is None:
            raise KeyError(f"{name} is not running")
        return swim

    def view(self, observer: str) -> dict[str, MemberState]:
        """Every member's state as ``observer`` sees it."""
        return {m.name: m.state for m in self.swim(observer).members()}

    def converged(self, crashed: Iterable[str] = ()) -> bool:
        """Whether every running node sees every running node alive and each of ``crashed`` dead."""
        live = self.live()
        gone = list(crashed)
        for observer in live:
            swim = self.swim(observer)
            for name in live:
                m = swim.member(name)
                if m is None or m.state is not MemberState.ALIVE:
                    return False
            for name in gone:
                m = swim.member(name)
                if m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT):
                    return False
        return True


def _describe(message: Any) -> str:
    return repr(message).replace("NodeMeta(", "Meta(")


def _describe_event(event: MemberEvent | UserMessage) -> str:
    if isinstance(event, MemberEvent):
        return f"sees {event.name} {event.state.value} inc={event.incarnation}"
    return f"delivers {event.topic} {event.payload!r} from {event.origin}"


# Measurements ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunParams:
    """One `swarmlet sim gossip` campaign."""

    nodes: int = 7  # cluster size
    seeds: int = 1  # independent runs, seeds 1 .. seeds
    loss: float = 0.0  # packet loss on every link, 0..1
    latency_ms: float = 0.5  # one-way latency of every link
    jitter_ms: float = 0.0  # extra one-way delay, uniform in [0, jitter_ms)
    kill: int = 0  # nodes crashed at random times after convergence
    duration: float = 30.0  # virtual seconds measured after convergence
    config: str = "default"  # "default" or "lan"
    broadcasts: int = 3  # user broadcasts timed per seed
    start: str = "converged"  # "converged" (as after a long run) or "join" (through one seed)
    first_seed: int = 1
    probe_schedule: str = "staggered"  # GossipConfig.probe_schedule: "staggered" or "independent"

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError(f"--nodes must be at least 2, got {self.nodes}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {self.seeds}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"--loss must be in [0, 1), got {self.loss}")
        if self.latency_ms < 0:
            raise ValueError(f"--latency-ms must be >= 0, got {self.latency_ms}")
        if self.jitter_ms < 0:
            raise ValueError(f"--jitter-ms must be >= 0, got {self.jitter_ms}")
        if not 0 <= self.kill < self.nodes - 1:
            raise ValueError(f"--kill must be between 0 and nodes - 2 ({self.nodes - 2}), got {self.kill}")
        if self.duration <= 0:
            raise ValueError(f"--duration must be positive, got {self.duration}")
        if self.config not in ("default", "lan"):
            raise ValueError(f"--config must be 'default' or 'lan', got {self.config!r}")
        if self.broadcasts < 0:
            raise ValueError(f"--broadcasts must be >= 0, got {self.broadcasts}")
        if self.start not in ("converged", "join"):
            raise ValueError(f"--start must be 'converged' or 'join', got {self.start!r}")
        if self.probe_schedule not in ("staggered", "independent"):
            raise ValueError(
                f"--probe-schedule must be 'staggered' or 'independent', got {self.probe_schedule!r}"
            )

    def gossip_config(self) -> GossipConfig:
        """The configuration the campaign runs."""
        base = GossipConfig.lan() if self.config == "lan" else GossipConfig.default()
        return dataclasses.replace(base, probe_schedule=self.probe_schedule)


@dataclass
class _Tracker:
    """Turns the cluster's event stream into the campaign's figures."""

    live: set[str]
    crashed_at: dict[str, float] = field(default_factory=dict)
    first_suspect: dict[str, float] = field(default_factory=dict)
    all_dead: dict[str, float] = field(default_factory=dict)
    dead_seen: dict[str, set[str]] = field(default_factory=dict)  # target -> live observers with it dead
    false_positives: set[str] = field(default_factory=set)
    bcast_at: dict[bytes, float] = field(default_factory=dict)
    bcast_need: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # (99.9 %, all)
    bcast_have: dict[bytes, int] = field(default_factory=dict)
    bcast_999: dict[bytes, float] = field(default_factory=dict)
    bcast_all: dict[bytes, float] = field(default_factory=dict)

    def on_event(self, now: float, observer: str, event: MemberEvent | UserMessage) -> None:
        if isinstance(event, UserMessage):
            key = event.payload
            if key in self.bcast_at and observer in self.live:
                self.bcast_have[key] += 1
                self._check_bcast(key, now)
            return
        target = event.name
        if event.state is MemberState.DEAD and target not in self.crashed_at:
            self.false_positives.add(target)
        if target not in self.crashed_at:
            return
        if event.state in (MemberState.SUSPECT, MemberState.DEAD):
            self.first_suspect.setdefault(target, now - self.crashed_at[target])
        seen = self.dead_seen.setdefault(target, set())
        if event.state is MemberState.DEAD:
            if observer in self.live:
                seen.add(observer)
        else:
            seen.discard(observer)
        self._check_dead(target, now)

    def crash(self, name: str, now: float) -> None:
        self.live.discard(name)
        self.crashed_at[name] = now
        for target, seen in self.dead_seen.items():
            seen.discard(name)
            self._check_dead(target, now)

    def _check_dead(self, target: str, now: float) -> None:
        if target not in self.all_dead and len(self.dead_seen.get(target, ())) >= len(self.live):
            self.all_dead[target] = now - self.crashed_at[target]

    def start_broadcast(self, key: bytes, now: float) -> None:
        n = len(self.live)
        self.bcast_at[key] = now
        self.bcast_need[key] = (math.ceil(0.999 * n), n)
        self.bcast_have[key] = 1  # the origin has it

    def _check_bcast(self, key: bytes, now: float) -> None:
        have = self.bcast_have[key]
        need_999, need_all = self.bcast_need[key]
        if have >= need_999 and key not in self.bcast_999:
            self.bcast_999[key] = now - self.bcast_at[key]
        if have >= need_all and key not in self.bcast_all:
            self.bcast_all[key] = now - self.bcast_at[key]


def percentiles(
    samples: list[float], which: Iterable[str] = ("p50", "p99", "max")
) -> dict[str, float | None]:
    """Nearest-rank percentiles (``None`` when there are no samples), rounded to the millisecond."""
    out: dict[str, float | None] = {}
    ordered = sorted(samples)
    for name in which:
        if not ordered:
            out[name] = None
            continue
        q = 1.0 if name == "max" else float(name[1:]) / 100.0
        rank = max(1, math.ceil(q * len(ordered)))
        out[name] = round(ordered[rank - 1], 3)
    return out


def _join_until_converged(cluster: GossipCluster, limit: float) -> float:
    step = cluster.config.probe_interval
    while cluster.sim.now < limit:
        cluster.run_for(step)
        if cluster.converged():
            return cluster.sim.now
    raise RuntimeError(f"the cluster did not converge within {limit} virtual seconds of its join")


def measure(
    params: RunParams, *, on_seed: Callable[[int, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run every seed of a campaign and return the figures `swarmlet sim gossip --json` prints.

    ``wall_s`` is left to the caller (this module reads no clock).
    """
    config = params.gossip_config()
    link = LinkProfile(latency=params.latency_ms / 1000.0, jitter=params.jitter_ms / 1000.0, loss=params.loss)
    fps = 0
    suspect: list[float] = []
    dead: list[float] = []
    d999: list[float] = []
    dall: list[float] = []
    undetected = 0
    sent = 0
    node_seconds = 0.0
    virtual = 0.0
    for seed in range(params.first_seed, params.first_seed + params.seeds):
        cluster = GossipCluster(params.nodes, seed, config, link=link, converged=params.start == "converged")
        rng = cluster.sim.fork_rng("campaign")
        if params.start == "join":
            limit = 120.0 + 10.0 * config.probe_interval * math.log2(params.nodes)
            t0 = _join_until_converged(cluster, limit)
        else:
            t0 = cluster.sim.now + 2.0 * config.probe_interval  # let the staggered timers start
            cluster.run_until(t0)
        tracker = _Tracker(live=set(cluster.live()))
        cluster.observers.append(tracker.on_event)
        sent_before = cluster.net.sent
        end = t0 + params.duration
        # Crashes and broadcasts fall in the first half, so each has the second half to play out.
        actions: list[tuple[float, str, Any]] = []
        victims = rng.sample(sorted(cluster.nodes), params.kill)
        for name in victims:
            actions.append((t0 + rng.random() * params.duration / 2, "kill", name))
        for i in range(params.broadcasts):
            actions.append((t0 + rng.random() * params.duration / 2, "bcast", i))
        actions.sort(key=lambda a: (a[0], a[1], str(a[2])))
        for when, kind, arg in actions:
            cluster.run_until(when)
            if kind == "kill":
                cluster.crash(arg)
                tracker.crash(arg, cluster.sim.now)
            else:
                origin = rng.choice(sorted(tracker.live))
                key = f"seed{seed}/b{arg}".encode()
                tracker.start_broadcast(key, cluster.sim.now)
                cluster.broadcast(origin, "bench", key)
        cluster.run_until(end)
        fps += len(tracker.false_positives)
        suspect.extend(tracker.first_suspect.values())
        dead.extend(tracker.all_dead.values())
        undetected += len(victims) - len(tracker.all_dead)
        d999.extend(tracker.bcast_999.values())
        dall.extend(tracker.bcast_all.values())
        sent += cluster.net.sent - sent_before
        node_seconds += params.nodes * params.duration
        virtual += cluster.sim.now
        if on_seed is not None:
            on_seed(seed, {
                "false_positives": len(tracker.false_positives),
                "all_dead_s": sorted(tracker.all_dead.values()),
                "dissemination_999_s": sorted(tracker.bcast_999.values()),
            })
    return {
        "nodes": params.nodes,
        "seeds": params.seeds,
        "loss": params.loss,
        "config": params.config,
        "virtual_s": round(virtual, 3),
        "wall_s": None,
        "false_positives": fps,
        "first_suspect_s": percentiles(suspect),
        "all_dead_s": percentiles(dead),
        "undetected": undetected,
        "dissemination_999_s": percentiles(d999, ("p50", "p99")),
        "dissemination_all_s": percentiles(dall, ("p50", "p99")),
        "msgs_per_node_per_s": round(sent / node_seconds, 2) if node_seconds else 0.0,
    }
