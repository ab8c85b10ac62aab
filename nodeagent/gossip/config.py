"""SWIM + Lifeguard configuration: a frozen dataclass with named defaults.

``GossipConfig.lan()`` carries memberlist's ``DefaultLANConfig`` timing; ``GossipConfig.default()``
is the emulator's faster timing, chosen so that a crashed node in a 7-node cluster is known dead
at every live node within 1.5 s (docs/gossip.md shows the arithmetic and the measurement).
An invalid value raises ``ValueError`` naming the field, so a bad configuration stops startup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["GossipConfig"]

# Fields holding durations: scaled() multiplies exactly these.
_TIME_FIELDS = (
    "probe_interval",
    "probe_timeout",
    "gossip_interval",
    "gossip_to_dead_time",
    "push_pull_interval",
    "reconnect_interval",
)


@dataclass(frozen=True)
class GossipConfig:
    """Every SWIM and Lifeguard knob. Times are seconds of the node's (possibly virtual) clock."""

    probe_interval: float = 1.0
    """Time between probes of successive members (scaled by local health)."""
    probe_timeout: float = 0.5
    """How long a direct ping waits for its ack before indirect probes start (scaled by health)."""
    indirect_checks: int = 3
    """How many members are asked to probe a target that missed its direct ping."""
    suspicion_mult: int = 4
    """Suspect a node for at least ``suspicion_mult * max(1, log10(N)) * probe_interval``."""
    suspicion_max_timeout_mult: int = 6
    """A suspicion with no independent confirmation lasts this many times the minimum."""
    gossip_interval: float = 0.2
    """Time between gossip rounds (a round is skipped when nothing is queued)."""
    gossip_nodes: int = 3
    """How many random members each gossip round sends to."""
    gossip_to_dead_time: float = 30.0
    """How long a dead member still receives gossip, so that it can learn it is dead and refute."""
    retransmit_mult: int = 4
    """Each gossiped message is sent ``retransmit_mult * ceil(log10(N + 1))`` times."""
    push_pull_interval: float = 30.0
    """Time between full-state exchanges with one random member (stretched above 32 nodes)."""
    reconnect_interval: float = 30.0
    """Time between attempts to exchange full state with a dead member, so partitions heal."""
    awareness_max_multiplier: int = 8
    """The most local health may stretch the probe interval and timeout (a multiplier)."""
    packet_budget: int = 1400
    """Bytes of piggybacked gossip a packet may carry (a UDP datagram that is not fragmented)."""
    max_user_payload: int = 1024
    """The largest payload a user broadcast may carry, in bytes."""
    probe_schedule: str = "staggered"
    """"staggered": nodes share one probe order, so each member is probed once per interval
    (not in memberlist; docs/gossip.md); "independent": memberlist's own shuffled round robin."""

    def __post_init__(self) -> None:
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"GossipConfig.{name} must be a positive number of seconds, got {value!r}")
        minimums = {
            "indirect_checks": 0,
            "suspicion_mult": 1,
            "suspicion_max_timeout_mult": 1,
            "gossip_nodes": 1,
            "retransmit_mult": 1,
            "awareness_max_multiplier": 1,
            "packet_budget": 64,
            "max_user_payload": 1,
        }
        for name, least in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"GossipConfig.{name} must be an integer >= {least}, got {value!r}")
        if self.probe_schedule not in ("staggered", "independent"):
            raise ValueError(
                "GossipConfig.probe_schedule must be 'staggered' or 'independent', "
                f"got {self.probe_schedule!r}"
            )
        if self.probe_timeout >= self.probe_interval:
            raise ValueError(
                f"GossipConfig.probe_timeout ({self.probe_timeout}) must be shorter than "
                f"probe_interval ({self.probe_interval}): indirect probes need the rest of the interval"
            )

    @classmethod
    def lan(cls) -> GossipConfig:
        """memberlist's DefaultLANConfig timing: probe 1 s, gossip 200 ms to 3 nodes, push-pull 30 s.

        Every memberlist value is kept; the probe schedule (which memberlist does not have) is
        "staggered", which bounds the time until a crashed member is first probed.
        """
        return cls()

    @classmethod
    def default(cls) -> GossipConfig:
        """The emulator's timing: a crash in a 7-node cluster is known everywhere within 1.5 s."""
        return dataclasses.replace(
            cls.lan(),
            probe_interval=0.15,  # with 6 peers probing, a crashed node is probed every 0.15 s or so
            probe_timeout=0.075,  # loopback and container links answer in milliseconds
            suspicion_mult=3,  # 0.45 s minimum suspicion below 10 nodes
            suspicion_max_timeout_mult=2,  # a lone accuser waits 0.9 s; one confirmation brings 0.45 s
            gossip_interval=0.05,  # news reaches 7 nodes in two or three rounds
            gossip_to_dead_time=10.0,
            push_pull_interval=5.0,  # a few nodes: full state is cheap, so views heal quickly
            reconnect_interval=5.0,
        )

    def scaled(self, factor: float) -> GossipConfig:
        """The same configuration with every timer multiplied by ``factor`` (the time scale)."""
        if not isinstance(factor, int | float) or isinstance(factor, bool) or not factor > 0:
            raise ValueError(f"time scale factor must be a positive number, got {factor!r}")
        changes = {name: getattr(self, name) * factor for name in _TIME_FIELDS}
        return dataclasses.replace(self, **changes)
