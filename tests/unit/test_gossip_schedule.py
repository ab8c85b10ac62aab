"""The staggered probe schedule's order: the same answers as a plain sorted list, and its slot map."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import Swim
from nodeagent.gossip.messages import Ack, Alive, Compound, NodeMeta, Ping
from nodeagent.gossip.schedule import BaseOrder, ProbeOrder, order_key, slot_offset


def _acked_probes(swim: Swim, now: float) -> list[str]:
    """The targets of the probes (unreliable Pings) the node sent, each answered 1 ms later."""
    targets = []
    for out in swim.take_outbox():
        parts = out.message.parts if isinstance(out.message, Compound) else (out.message,)
        for part in parts:
            if isinstance(part, Ping) and not out.reliable:
                targets.append(part.target)
                swim.handle(now + 0.001, out.to, Ack(part.seq), False)
    return targets


def _check(order: ProbeOrder, live: set[str]) -> None:
    expected = sorted(live, key=order_key)
    assert len(order) == len(expected)
    assert [order.select(r) for r in range(len(expected))] == expected
    for position, name in enumerate(expected):
        assert order.rank(order_key(name)) == position


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("with_base", [True, False])
def test_order_matches_a_sorted_list_through_joins_deaths_and_returns(seed: int, with_base: bool) -> None:
    rng = random.Random(seed)
    names = [f"node-{i}" for i in range(1, 41)]
    base_names = names[:30] if with_base else []
    initially_dead = set(rng.sample(base_names, 3)) if with_base else set()
    order = ProbeOrder(BaseOrder(base_names), initially_dead) if with_base else ProbeOrder()
    live = set(base_names) - initially_dead
    _check(order, live)
    for _ in range(150):
        name = rng.choice(names)
        if rng.random() < 0.5:
            order.add(name)
            live.add(name)
        else:
            order.remove(name)
            live.discard(name)
        _check(order, live)


def test_select_out_of_range_is_refused() -> None:
    order = ProbeOrder()
    order.add("a")
    with pytest.raises(IndexError):
        order.select(1)


def test_every_node_computes_the_same_order_from_its_own_view() -> None:
    names = [f"worker-{i}" for i in range(25)]
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    one, other = ProbeOrder(), ProbeOrder(BaseOrder(shuffled[:10]))
    for name in names:
        one.add(name)
    for name in shuffled[10:]:
        other.add(name)
    assert [one.select(r) for r in range(25)] == [other.select(r) for r in range(25)]


@pytest.mark.parametrize("n", [2, 3, 7, 30, 101])
def test_slot_offsets_pair_every_member_with_exactly_one_prober(n: int) -> None:
    seen_offsets: set[int] = set()
    for slot in range(1000, 1000 + n - 1):
        k = slot_offset(slot, n)
        seen_offsets.add(k)
        targets = [(q + k) % n for q in range(n)]
        assert sorted(targets) == list(range(n))  # each member probed once in the slot
        assert all(t != q for q, t in enumerate(targets))  # nobody probes itself
    # Over n - 1 consecutive slots a node visits every other position once.
    assert seen_offsets == set(range(1, n))


@pytest.mark.parametrize("offset", [0.0, 0.37, 1_700_000_000.25])
def test_a_node_ticks_at_its_place_in_the_stagger_on_the_shared_clock(offset: float) -> None:
    cfg = GossipConfig.lan()
    meta = NodeMeta(node_id="a", role="worker", addr="a:2377", labels=(), version="t")
    swim = Swim(cfg, "a", "a:7946", meta, random.Random(1), 0.0, clock_offset=offset)
    peers = ["b", "c", "d", "e"]
    for name in peers:
        swim.handle(0.0, f"{name}:7946", Alive(0, name, f"{name}:7946", meta), False)
    order = ProbeOrder()
    for name in ["a", *peers]:
        order.add(name)
    n, q = len(order), order.rank(order_key("a"))
    targets: list[tuple[float, str]] = []
    while len(targets) < 9:
        when = swim.next_deadline()
        swim.tick(when)
        targets.extend((when, target) for target in _acked_probes(swim, when))
    for when, target in targets[1:]:  # the first tick was placed before the peers were known
        slot = math.floor((when + offset) / cfg.probe_interval + 1e-9)
        phase = (when + offset) - slot * cfg.probe_interval
        assert phase == pytest.approx(cfg.probe_interval * (n - 1 - q) / n, abs=1e-5)
        assert target == order.select((q + slot_offset(slot, n)) % n)


@pytest.mark.parametrize("late", [0.0, 0.0003, 0.004, 0.03])
@pytest.mark.parametrize("offset", [0.0, 1_800_000_000.37])
def test_a_tick_handled_late_keeps_its_slot_grid_and_visits_every_peer(late: float, offset: float) -> None:
    # A real shell runs each tick a little after it was due (an event loop never wakes on the
    # dot). Counting the next tick from that moment cost a slot every tick: the node stepped two
    # slots at a time and, with 5 members (n - 1 = 4 offsets), only ever probed two of its four peers.
    cfg = GossipConfig.default()
    meta = NodeMeta(node_id="a", role="worker", addr="a:2377", labels=(), version="t")
    swim = Swim(cfg, "a", "a:7946", meta, random.Random(3), 0.0, clock_offset=offset)
    peers = ["b", "c", "d", "e"]
    for name in peers:
        swim.handle(0.0, f"{name}:7946", Alive(0, name, f"{name}:7946", meta), False)
    ticks: list[tuple[float, str]] = []
    while len(ticks) < 13:
        due = swim.next_deadline()
        now = due + late
        swim.tick(now)
        ticks.extend((now, target) for target in _acked_probes(swim, now))
        swim.tick(now + 0.001)
    ticks = ticks[1:]  # the first tick was placed before the peers were known
    # One probe per interval (give or take the lateness of a tick behind another timer's): no slot sat out.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ticks)]
    assert gaps == pytest.approx([cfg.probe_interval] * len(gaps), abs=late + 1e-5)
    for i in range(0, len(ticks) - 3, 4):
        assert sorted(t for _, t in ticks[i:i + 4]) == peers, ticks


def test_a_tick_later_than_the_slack_sits_out_one_slot_so_its_probe_keeps_both_phases() -> None:
    cfg = GossipConfig.default()  # slack (0.15 - 0.075) / 2 = 37.5 ms
    meta = NodeMeta(node_id="a", role="worker", addr="a:2377", labels=(), version="t")
    swim = Swim(cfg, "a", "a:7946", meta, random.Random(3), 0.0, clock_offset=1_800_000_000.37)
    for name in ["b", "c", "d", "e"]:
        swim.handle(0.0, f"{name}:7946", Alive(0, name, f"{name}:7946", meta), False)
    probe_ticks: list[float] = []
    late_at = 6  # the 7th probe tick runs 50 ms late; every other one on the dot
    while len(probe_ticks) < 10:
        due = swim.next_deadline()
        now = due + (0.05 if len(probe_ticks) == late_at else 0.0)
        swim.tick(now)
        probe_ticks.extend(now for _ in _acked_probes(swim, now))
    # The first tick was placed before the peers were known; then one per slot, 0.05 s late once,
    # after which the node sits out one slot (0.25 s to its next tick) and is back on its grid.
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(probe_ticks[1:])]
    i = late_at - 2
    assert gaps == [*[0.15] * i, 0.2, 0.25, *[0.15] * (len(gaps) - i - 2)]
