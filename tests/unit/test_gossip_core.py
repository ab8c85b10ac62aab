"""The SWIM core driven by hand: one node, messages in, messages and events out."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberEvent, MemberState, Outgoing, Swim, UserMessage
from nodeagent.gossip.members import BroadcastQueue
from nodeagent.gossip.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
    UserMsg,
    WireState,
)


def _meta(name: str) -> NodeMeta:
    return NodeMeta(node_id=name, role="worker", addr=f"{name}:2377", labels=(("zone", "a"),), version="t")


def _node(config: GossipConfig | None = None, seed: int = 1, name: str = "a") -> Swim:
    swim = Swim(config or GossipConfig.lan(), name, f"{name}:7946", _meta(name), random.Random(seed), 0.0)
    swim.take_outbox()
    return swim


def _add(swim: Swim, *names: str, now: float = 0.0) -> None:
    for n in names:
        swim.handle(now, f"{n}:7946", Alive(0, n, f"{n}:7946", _meta(n)), False)
    swim.take_events()


def _parts(out: list[Outgoing]) -> list[tuple[str, Message, bool]]:
    flat: list[tuple[str, Message, bool]] = []
    for o in out:
        msgs = o.message.parts if isinstance(o.message, Compound) else (o.message,)
        flat.extend((o.to, m, o.reliable) for m in msgs)
    return flat


def _run(swim: Swim, until: float) -> list[Outgoing]:
    out: list[Outgoing] = []
    while swim.next_deadline() <= until:
        swim.tick(swim.next_deadline())
        out.extend(swim.take_outbox())
    return out


def test_ping_for_us_is_acked_to_the_sender() -> None:
    swim = _node()
    swim.handle(1.0, "b:7946", Ping(7, "a", "b"), False)
    acks = [(to, m, rel) for to, m, rel in _parts(swim.take_outbox()) if isinstance(m, Ack)]
    assert acks == [("b:7946", Ack(7), False)]


def test_ping_over_the_reliable_half_is_acked_reliably() -> None:
    swim = _node()
    swim.handle(1.0, "b:7946", Ping(8, "a", "b"), True)
    assert swim.take_outbox() == [Outgoing("b:7946", Ack(8), True)]


def test_ping_for_another_name_is_not_acked() -> None:
    swim = _node()
    swim.handle(1.0, "b:7946", Ping(7, "someone-else", "b"), False)
    assert swim.take_outbox() == []
    assert swim.stats.dropped_misdirected == 1


@pytest.mark.parametrize(
    "garbage",
    [
        "not a message",
        b"\x00\x01",
        None,
        Compound(("junk", 42)),  # type: ignore[arg-type]
        Compound(None),  # type: ignore[arg-type]
        Compound((Compound((Ack(1),)),)),
        Alive(-5, "x", "x:1", NodeMeta("x", "worker", "x")),
        Alive("one", "x", "x:1", NodeMeta("x", "worker", "x")),  # type: ignore[arg-type]
    ],
)
def test_invalid_messages_are_counted_and_change_nothing(garbage: object) -> None:
    swim = _node()
    _add(swim, "b")
    before = [dataclasses.astuple(m) for m in swim.members()]
    swim.handle(1.0, "b:7946", garbage, False)
    assert swim.stats.dropped_invalid >= 1
    assert [dataclasses.astuple(m) for m in swim.members()] == before
    assert swim.take_events() == []


def test_suspicion_about_us_is_refuted_with_a_higher_incarnation() -> None:
    swim = _node()
    _add(swim, "b")
    swim.handle(1.0, "b:7946", Suspect(3, "a", "b"), False)
    assert swim.incarnation == 4
    assert swim.stats.suspicions_refuted == 1
    assert swim.health == 1  # being accused counts against our own health
    swim.tick(swim.next_deadline())
    alive = [m for _, m, _ in _parts(swim.take_outbox()) if isinstance(m, Alive) and m.node == "a"]
    assert alive and alive[0].incarnation == 4


def test_a_stale_suspicion_is_ignored() -> None:
    swim = _node()
    swim.handle(0.0, "b:7946", Alive(5, "b", "b:7946", _meta("b")), False)
    swim.handle(1.0, "c:7946", Suspect(4, "b", "c"), False)
    member = swim.member("b")
    assert member is not None and member.state is MemberState.ALIVE


def test_unanswered_probe_goes_indirect_then_suspects_then_declares_dead() -> None:
    cfg = GossipConfig.lan()
    swim = _node(cfg)
    _add(swim, "b", "c", "d", "e")
    start = swim.next_deadline()
    out = _run(swim, start)  # the first probe goes out
    pings = [(to, m) for to, m, rel in _parts(out) if isinstance(m, Ping) and not rel]
    assert len(pings) == 1
    target_addr, ping = pings[0]
    out = _run(swim, start + cfg.probe_timeout + 1e-9)
    indirect = [(to, m) for to, m, _ in _parts(out) if isinstance(m, IndirectPing)]
    assert len(indirect) == 3 and all(m.target == ping.target for _, m in indirect)
    assert target_addr not in {to for to, _ in indirect}
    assert any(isinstance(m, Ping) and rel and to == target_addr for to, m, rel in _parts(out))
    _run(swim, start + cfg.probe_interval - 1e-9)
    member = swim.member(ping.target)
    assert member is not None and member.state is MemberState.ALIVE
    _run(swim, start + cfg.probe_interval)
    after = swim.member(ping.target)
    assert after is not None and after.state is MemberState.SUSPECT
    assert swim.health == 3  # none of the three relays sent a nack
    events = [e for e in swim.take_events() if isinstance(e, MemberEvent)]
    assert [(e.name, e.state) for e in events] == [(ping.target, MemberState.SUSPECT)]


def test_a_relayed_ack_ends_the_probe_without_suspicion() -> None:
    cfg = GossipConfig.lan()
    swim = _node(cfg)
    _add(swim, "b", "c", "d", "e")
    start = swim.next_deadline()
    out = _run(swim, start)
    ping = next(m for _, m, _ in _parts(out) if isinstance(m, Ping))
    _run(swim, start + cfg.probe_timeout + 1e-9)
    swim.handle(start + 0.7, "c:7946", Ack(ping.seq), False)
    _run(swim, start + cfg.probe_interval + 1e-9)
    member = swim.member(ping.target)
    assert member is not None and member.state is MemberState.ALIVE
    assert swim.stats.probes_failed == 0


def test_nacks_from_relays_keep_our_health() -> None:
    cfg = GossipConfig.lan()
    swim = _node(cfg)
    _add(swim, "b", "c", "d", "e")
    start = swim.next_deadline()
    _run(swim, start)
    out = _run(swim, start + cfg.probe_timeout + 1e-9)
    for to, m, _ in _parts(out):
        if isinstance(m, IndirectPing):
            swim.handle(start + 0.6, to, Nack(m.seq), False)
    _run(swim, start + cfg.probe_interval)
    assert swim.stats.probes_failed == 1
    assert swim.health == 0  # the relays could not reach it either: the target is the problem


@pytest.mark.parametrize("schedule", ["staggered", "independent"])
def test_poor_health_stretches_the_probe_interval(schedule: str) -> None:
    cfg = dataclasses.replace(GossipConfig.lan(), probe_schedule=schedule)
    swim = _node(cfg)
    _add(swim, "b", "c", "d", "e")
    swim.handle(0.0, "b:7946", Suspect(0, "a", "b"), False)
    swim.handle(0.0, "b:7946", Suspect(1, "a", "b"), False)
    assert swim.health == 2
    probe_times: list[float] = []
    while len(probe_times) < 4:
        when = swim.next_deadline()
        swim.tick(when)
        for to, m, rel in _parts(swim.take_outbox()):
            if isinstance(m, Ping) and not rel:
                probe_times.append(when)
                swim.handle(when + 0.001, to, Ack(m.seq), False)  # every probe answered at once
    # Health 2 stretches the interval to 3x; each success earns one point back.
    gaps = [later - earlier for earlier, later in itertools.pairwise(probe_times)]
    if schedule == "independent":
        assert gaps[0] == pytest.approx(cfg.probe_interval * 3)
    else:
        # The first tick was placed before the node knew its peers; it then moves to its place in
        # the stagger (a phase shift under one interval) while sitting out two slots.
        assert 2 * cfg.probe_interval < gaps[0] < 4 * cfg.probe_interval
    assert gaps[1] == pytest.approx(cfg.probe_interval * 2)
    assert gaps[2] == pytest.approx(cfg.probe_interval)
    assert swim.health == 0


def test_probe_of_a_suspect_tells_it_it_is_suspected() -> None:
    swim = _node()
    _add(swim, "b")
    swim.handle(0.0, "c:7946", Suspect(0, "b", "c"), False)
    out = _run(swim, swim.next_deadline())
    told = [m for to, m, _ in _parts(out) if to == "b:7946" and isinstance(m, Suspect)]
    assert told and told[0].node == "b"


def _suspicion_ends(confirmations: int) -> float:
    cfg = dataclasses.replace(GossipConfig.lan(), probe_interval=1.0, probe_timeout=0.5)
    swim = _node(cfg, seed=3)
    names = [f"n{i}" for i in range(9)]
    _add(swim, *names)  # 10 members: k = 4 - 2 = 2 confirmations, min 4 s, max 24 s
    swim.handle(0.0, "n1:7946", Suspect(0, "n0", "n1"), False)
    for i in range(confirmations):
        swim.handle(0.1, f"n{i + 2}:7946", Suspect(0, "n0", f"n{i + 2}"), False)
    now = 0.0
    member = swim.member("n0")
    assert member is not None
    while member.state is MemberState.SUSPECT and now < 60:
        now = swim.next_deadline()
        swim.tick(now)
        swim.take_outbox()
        # Our own probes are answered, so only the suspicion about n0 can change anything.
        member = swim.member("n0")
        assert member is not None
    return member.state_change


@pytest.mark.parametrize(
    ("confirmations", "dead_at"), [(0, 24.0), (1, 24.0 - 20 * 0.6309297535714574), (2, 4.0)]
)
def test_independent_confirmations_shorten_the_suspicion(confirmations: int, dead_at: float) -> None:
    assert _suspicion_ends(confirmations) == pytest.approx(dead_at, abs=1e-6)


def test_a_repeated_accuser_is_not_a_confirmation() -> None:
    cfg = GossipConfig.lan()
    swim = _node(cfg)
    _add(swim, *[f"n{i}" for i in range(9)])
    swim.handle(0.0, "n1:7946", Suspect(0, "n0", "n1"), False)
    swim.take_outbox()
    before = swim.pending_broadcasts()
    swim.handle(0.1, "n1:7946", Suspect(0, "n0", "n1"), False)
    assert swim.pending_broadcasts() == before


def test_dead_from_the_node_itself_means_left() -> None:
    swim = _node()
    _add(swim, "b")
    swim.handle(1.0, "b:7946", Dead(0, "b", "b"), False)
    member = swim.member("b")
    assert member is not None and member.state is MemberState.LEFT


def test_leave_gossips_our_departure_and_stops_probing() -> None:
    swim = _node()
    _add(swim, "b", "c")
    swim.leave(0.5)
    out = _run(swim, 10.0)
    assert any(isinstance(m, Dead) and m.node == "a" and m.source == "a" for _, m, _ in _parts(out))
    assert not any(isinstance(m, Ping) for _, m, _ in _parts(out))
    # A leaving node does not refute: it is on its way out.
    swim.handle(11.0, "b:7946", Suspect(0, "a", "b"), False)
    assert swim.incarnation == 0


def test_join_sends_full_state_to_each_seed_reliably() -> None:
    swim = _node()
    swim.join(0.0, ["s1:7946", "s2:7946", "a:7946"])
    out = swim.take_outbox()
    assert [(o.to, o.reliable) for o in out] == [("s1:7946", True), ("s2:7946", True)]
    assert all(isinstance(o.message, PushPull) and o.message.join for o in out)


def test_push_pull_is_answered_and_merged() -> None:
    swim = _node()
    entries = (
        _pp("b", 2, "alive"), _pp("c", 0, "dead"), _pp("a", 5, "dead"),
    )
    swim.handle(1.0, "b:7946", PushPull("b", entries, join=True, reply=False), True)
    out = swim.take_outbox()
    assert out[0].to == "b:7946" and out[0].reliable and isinstance(out[0].message, PushPull)
    assert out[0].message.reply
    view = {m.name: m.state for m in swim.members()}
    assert view["b"] is MemberState.ALIVE
    assert "c" not in view  # a dead stranger is not added
    assert swim.incarnation == 6  # told it was dead, it refutes


def _pp(name: str, inc: int, state: str) -> PushPullEntry:
    return PushPullEntry(name, f"{name}:7946", _meta(name), inc, WireState[state.upper()])


def test_user_broadcast_is_delivered_once_and_regossiped() -> None:
    swim = _node()
    _add(swim, "b")
    msg = UserMsg("b", 1, "netdb", b"endpoint")
    swim.handle(1.0, "b:7946", msg, False)
    swim.handle(1.1, "b:7946", msg, False)
    assert swim.take_events() == [UserMessage("netdb", b"endpoint", "b")]
    assert swim.pending_broadcasts() >= 1


def test_oversized_broadcast_is_refused_and_nothing_is_queued() -> None:
    cfg = GossipConfig.lan()
    swim = _node(cfg)
    _add(swim, "b")
    _run(swim, 5.0)
    queued = swim.pending_broadcasts()
    with pytest.raises(ValueError, match="limit"):
        swim.broadcast(6.0, "netdb", b"x" * (cfg.max_user_payload + 1))
    with pytest.raises(ValueError, match="topic"):
        swim.broadcast(6.0, "", b"x")
    assert swim.pending_broadcasts() == queued


def test_broadcast_queue_sends_least_sent_first_up_to_the_limit() -> None:
    q = BroadcastQueue()
    q.push(("n", "x"), Suspect(0, "x", "a"))
    assert q.take(1400, 3) == [Suspect(0, "x", "a")]
    y = Suspect(0, "y" * 20, "a")
    q.push(("n", "y"), y)
    # y was never sent, x once: with room for one message only, y goes first.
    assert q.take(y.size() + 5, 3) == [y]
    sent = [q.take(1400, 3) for _ in range(4)]
    assert sorted(map(repr, sent[0])) == sorted(map(repr, [Suspect(0, "x", "a"), y]))
    assert sent[1] == [Suspect(0, "x", "a")] or sent[1] == [y] or len(sent[1]) == 2
    assert sent[3] == [] and len(q) == 0  # each went exactly 3 times, then was dropped
    assert sum(len(batch) for batch in sent) == (3 - 1) + (3 - 1)


def test_broadcast_queue_newer_news_replaces_older() -> None:
    q = BroadcastQueue()
    q.push(("n", "x"), Suspect(0, "x", "a"))
    q.push(("n", "x"), Dead(0, "x", "a"))
    assert q.take(1400, 5) == [Dead(0, "x", "a")]


def test_same_seed_same_behaviour() -> None:
    def trace(seed: int) -> list[str]:
        swim = _node(seed=seed)
        _add(swim, "b", "c", "d")
        return [repr(o) for o in _run(swim, 10.0)]

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_constructor_rejects_bad_identity() -> None:
    with pytest.raises(ValueError, match="name"):
        Swim(GossipConfig.lan(), "", "a:1", _meta("a"), random.Random(1), 0.0)
    with pytest.raises(ValueError, match="incarnation"):
        Swim(GossipConfig.lan(), "a", "a:1", _meta("a"), random.Random(1), 0.0, incarnation=-1)
    with pytest.raises(ValueError, match="clock_offset"):
        Swim(GossipConfig.lan(), "a", "a:1", _meta("a"), random.Random(1), 0.0, clock_offset=math.nan)


def test_a_join_answer_holding_our_former_self_is_outbid() -> None:
    # Restarted with incarnation 0; the seed still holds the former self alive at 0 (its leave is
    # still on the way): that record is not ours, so we go above it, without counting it as an
    # accusation (no refutation counted, health unchanged).
    swim = _node()
    swim.join(0.0, ["b:7946"])
    swim.take_outbox()
    answer = PushPull("b", (_pp("b", 0, "alive"), _pp("a", 0, "alive")), join=True, reply=True)
    swim.handle(0.01, "b:7946", answer, True)
    assert swim.incarnation == 1
    assert swim.stats.suspicions_refuted == 0 and swim.health == 0
    out = _run(swim, 1.0)
    assert any(isinstance(m, Alive) and m.node == "a" and m.incarnation == 1 for _, m, _ in _parts(out))
    # The former self's leave, arriving late, no longer takes us down anywhere: it is below us.
    swim.handle(1.1, "b:7946", Dead(0, "a", "a"), False)
    assert swim.incarnation == 1 and swim.member("a").state is MemberState.ALIVE  # type: ignore[union-attr]


def test_a_join_answer_left_at_a_higher_incarnation_is_outbid_once() -> None:
    swim = _node()
    swim.join(0.0, ["b:7946"])
    answer = PushPull("b", (_pp("b", 0, "alive"), _pp("a", 4, "left")), join=True, reply=True)
    swim.handle(0.01, "b:7946", answer, True)
    assert swim.incarnation == 5


def test_a_periodic_push_pull_with_our_own_record_changes_nothing() -> None:
    # Only the answer to a join holds a former self: a push-pull later carries our own record.
    swim = _node()
    _add(swim, "b")
    swim.handle(1.0, "b:7946", PushPull("b", (_pp("b", 0, "alive"), _pp("a", 0, "alive")), False, True), True)
    assert swim.incarnation == 0


def test_the_answer_to_a_push_pull_carries_the_join_flag_back() -> None:
    swim = _node()
    for join in (True, False):
        swim.handle(1.0, "b:7946", PushPull("b", (_pp("b", 0, "alive"),), join=join, reply=False), True)
        (out,) = swim.take_outbox()
        assert isinstance(out.message, PushPull) and out.message.reply and out.message.join is join


def test_a_stale_claim_about_us_is_answered_with_our_alive() -> None:
    # We refuted at 1; a member that missed it gossips our death at 0: it gets our alive back.
    swim = _node()
    _add(swim, "b", "c")
    swim.handle(1.0, "b:7946", Suspect(0, "a", "b"), False)
    assert swim.incarnation == 1
    _run(swim, 5.0)  # the refutation is sent its retransmit count, then dropped
    assert swim.pending_broadcasts() == 0
    swim.handle(5.5, "c:7946", Dead(0, "a", "c"), False)
    out = _parts(swim.take_outbox())
    assert ("c:7946", Alive(1, "a", "a:7946", _meta("a")), False) in out
    assert swim.incarnation == 1 and swim.pending_broadcasts() == 1  # and queued for gossip again


def test_a_probe_from_a_member_held_left_is_acked_with_that_claim() -> None:
    swim = _node()
    _add(swim, "b")
    swim.handle(1.0, "b:7946", Dead(0, "b", "b"), False)
    swim.take_outbox()
    swim.handle(2.0, "b:7946", Ping(7, "a", "b"), False)
    (out,) = swim.take_outbox()
    assert isinstance(out.message, Compound) and out.message.parts[:2] == (Ack(7), Dead(0, "b", "b"))
    # A member held alive gets the plain ack.
    _add(swim, "c")
    swim.handle(2.1, "c:7946", Ping(8, "a", "c"), False)
    (out,) = swim.take_outbox()
    assert _parts([out])[0][1] == Ack(8)


def test_joining_through_several_seeds_outbids_the_former_self_only_once() -> None:
    # The first answer holds the former self: we go to 1. A second seed, slower, has meanwhile
    # heard our alive at 1 from the first: that record is ours, not to be outbid again.
    swim = _node()
    swim.join(0.0, ["b:7946", "c:7946"])
    first = PushPull("b", (_pp("b", 0, "alive"), _pp("a", 0, "left")), join=True, reply=True)
    swim.handle(0.01, "b:7946", first, True)
    assert swim.incarnation == 1
    second = PushPull("c", (_pp("c", 0, "alive"), _pp("a", 1, "alive")), join=True, reply=True)
    swim.handle(0.02, "c:7946", second, True)
    assert swim.incarnation == 1
