"""Gossip configuration: memberlist's LAN values, the emulator default, the time scale, bad values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from nodeagent.gossip.config import GossipConfig


def test_lan_is_memberlists_default_lan_config() -> None:
    cfg = GossipConfig.lan()
    assert (cfg.probe_interval, cfg.probe_timeout, cfg.indirect_checks) == (1.0, 0.5, 3)
    assert (cfg.suspicion_mult, cfg.suspicion_max_timeout_mult) == (4, 6)
    assert (cfg.gossip_interval, cfg.gossip_nodes, cfg.retransmit_mult) == (0.2, 3, 4)
    assert cfg.push_pull_interval == 30.0


def test_default_is_faster_than_lan() -> None:
    lan, fast = GossipConfig.lan(), GossipConfig.default()
    assert fast.probe_interval < lan.probe_interval
    assert fast.gossip_interval < lan.gossip_interval


def test_scaled_multiplies_every_timer_and_nothing_else() -> None:
    cfg = GossipConfig.default()
    slow = cfg.scaled(10.0)
    assert slow.probe_interval == pytest.approx(cfg.probe_interval * 10)
    assert slow.probe_timeout == pytest.approx(cfg.probe_timeout * 10)
    assert slow.gossip_interval == pytest.approx(cfg.gossip_interval * 10)
    assert slow.push_pull_interval == pytest.approx(cfg.push_pull_interval * 10)
    assert (slow.gossip_nodes, slow.suspicion_mult, slow.indirect_checks) == (
        cfg.gossip_nodes, cfg.suspicion_mult, cfg.indirect_checks)
    with pytest.raises(ValueError, match="scale"):
        cfg.scaled(0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("probe_interval", 0.0),
        ("probe_timeout", -1.0),
        ("gossip_interval", "fast"),
        ("push_pull_interval", True),
        ("indirect_checks", -1),
        ("suspicion_mult", 0),
        ("gossip_nodes", 1.5),
        ("retransmit_mult", 0),
        ("awareness_max_multiplier", 0),
        ("packet_budget", 10),
        ("probe_schedule", "round-robin"),
    ],
)
def test_invalid_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(GossipConfig.lan(), **{field: value})


def test_probe_timeout_must_leave_room_for_indirect_probes() -> None:
    with pytest.raises(ValueError, match="probe_timeout"):
        GossipConfig(probe_interval=1.0, probe_timeout=1.0)


def test_config_is_frozen() -> None:
    cfg = GossipConfig.lan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.probe_interval = 5.0  # type: ignore[misc]


def test_both_configurations_stagger_probes_and_keep_the_independent_schedule_available() -> None:
    assert GossipConfig.lan().probe_schedule == "staggered"
    assert GossipConfig.default().probe_schedule == "staggered"
    assert GossipConfig.default().scaled(2.0).probe_schedule == "staggered"
    independent = dataclasses.replace(GossipConfig.lan(), probe_schedule="independent")
    assert independent.probe_schedule == "independent"
