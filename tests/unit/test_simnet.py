"""The simulated network: faults do what they say, and a seed replays the same run."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.sim import LinkProfile, SimNetwork, Simulator


def _net(seed: int = 1, **profile: Any) -> tuple[Simulator, SimNetwork, dict[str, list[Any]]]:
    sim = Simulator(seed)
    net = SimNetwork(sim, LinkProfile(**profile))
    inbox: dict[str, list[Any]] = {}
    for name in ("a", "b", "c"):
        host = net.add_host(name)
        inbox[name] = []
        host.set_handler(lambda src, msg, rel, box=inbox[name]: box.append((src, msg, rel)))
    return sim, net, inbox


def test_packets_arrive_after_latency() -> None:
    sim, net, inbox = _net(latency=0.01)
    net.host("a").send_packet("b", "hello")
    sim.run_until(0.009)
    assert inbox["b"] == []
    sim.run_until(0.011)
    assert inbox["b"] == [("a", "hello", False)]


def test_streams_stay_in_order_despite_jitter() -> None:
    sim, net, inbox = _net(latency=0.001, jitter=0.05)
    for i in range(50):
        net.host("a").send_stream("b", i)
    sim.run_for(1.0)
    assert [m for _, m, _ in inbox["b"]] == list(range(50))


def test_loss_drops_packets_not_streams() -> None:
    sim, net, inbox = _net(loss=1.0)
    net.host("a").send_packet("b", "p")
    net.host("a").send_stream("b", "s")
    sim.run_for(1.0)
    assert [m for _, m, _ in inbox["b"]] == ["s"]


def test_partition_cut_isolate_and_heal() -> None:
    _, net, _ = _net()
    net.partition(["a"], ["b", "c"])
    assert not net.reachable("a", "b") and net.reachable("b", "c")
    net.heal()
    net.cut("a", "b", both_ways=False)
    assert not net.reachable("a", "b") and net.reachable("b", "a")
    net.heal()
    net.isolate("c")
    assert not net.reachable("a", "c") and not net.reachable("c", "b") and net.reachable("a", "b")
    net.heal()
    assert net.reachable("a", "c")


def test_crash_voids_timers_and_pause_defers_them() -> None:
    sim, net, inbox = _net()
    fired: list[str] = []
    net.host("a").call_later(1.0, fired.append, "a")
    net.host("b").call_later(1.0, fired.append, "b")
    net.crash("a")
    net.pause("b")
    sim.run_until(2.0)
    assert fired == []
    net.host("c").send_packet("b", "while paused")
    sim.run_until(3.0)
    assert inbox["b"] == []
    net.resume("b")
    sim.run_until(3.0)
    assert fired == ["b"] and [m for _, m, _ in inbox["b"]] == ["while paused"]
    net.restart("a")
    net.host("c").send_packet("a", "after restart")
    sim.run_for(1.0)
    assert inbox["a"] == []  # the new incarnation has no handler until the harness installs one


def test_same_seed_same_run() -> None:
    def run(seed: int) -> list[tuple[float, Any]]:
        sim, net, _ = _net(seed, latency=0.001, jitter=0.01, loss=0.3, duplicate=0.2, reorder=0.3)
        seen: list[tuple[float, Any]] = []
        net.host("b").set_handler(lambda s, m, r: seen.append((sim.now, m)))
        for i in range(200):
            sim.call_at(i * 0.001, net.host("a").send_packet, "b", i)
        sim.run_for(2.0)
        return seen

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_bad_profile_names_the_field() -> None:
    with pytest.raises(ValueError, match="loss"):
        LinkProfile(loss=1.5)
