"""Link faults on every plane: the rules' stream semantics, the planes' gate, and what
`swarmlet chaos partition|delay|loss|duplicate|heal` asks of each node (deploy/linkfaults.py)."""

from __future__ import annotations

import asyncio
import pathlib
import random

import pytest

from deploy import cli
from deploy.backends.base import ClusterState, write_state
from deploy.backends.local import node_specs
from deploy.linkfaults import FaultInputError, describe, parse_duration, parse_percent, plan
from nodeagent.transport.faults import RETRANSMIT_S, LinkFaultRule, LinkFaults, rules_without
from nodeagent.transport.planes import FaultGate, LinkPartitioned

NODES = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def clean() -> dict[str, list[LinkFaultRule]]:
    return {name: [] for name in NODES}


# Parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"),
                         [("200ms", 0.2), ("1.5s", 1.5), ("1m", 60.0), ("250us", 0.00025), ("0s", 0.0)])
def test_durations_are_written_as_docker_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["200", "fast", "-1s", "1h", "2 s", ""])
def test_a_bad_duration_says_what_is_wanted(text: str) -> None:
    with pytest.raises(FaultInputError, match=f'invalid duration "{text}"'):
        parse_duration(text)


def test_a_duration_beyond_an_hour_is_refused() -> None:
    with pytest.raises(FaultInputError, match="at most 1h"):
        parse_duration("61m")


@pytest.mark.parametrize(("text", "chance"),
                         [("10%", 0.1), ("5", 0.05), ("100%", 1.0), ("0%", 0.0), ("0.5%", 0.005)])
def test_percentages(text: str, chance: float) -> None:
    assert parse_percent(text) == pytest.approx(chance)


@pytest.mark.parametrize(("text", "why"), [("110%", "at most 100%"), ("-5%", "from 0% to 100%"),
                                           ("ten", "from 0% to 100%"), ("10%%", "from 0% to 100%")])
def test_a_bad_percentage_is_refused(text: str, why: str) -> None:
    with pytest.raises(FaultInputError, match=why):
        parse_percent(text)


# What each node is told --------------------------------------------------------------------------
def test_partition_tells_both_ends_one_rule_per_peer() -> None:
    wanted = plan("partition", "manager1", ["manager2", "manager3"], None, clean())
    assert wanted == {
        "manager1": [LinkFaultRule(peers=("manager2",), partition=True),
                     LinkFaultRule(peers=("manager3",), partition=True)],
        "manager2": [LinkFaultRule(peers=("manager1",), partition=True)],
        "manager3": [LinkFaultRule(peers=("manager1",), partition=True)],
    }


def test_partition_twice_does_not_pile_up_rules_even_once_the_agent_added_addresses() -> None:
    current = clean()
    # What an agent answers: the hostname it was given, then the addresses it found for it.
    current["manager1"] = [LinkFaultRule(peers=("manager2", "10.0.0.3:7946", "10.0.0.3"), partition=True)]
    wanted = plan("partition", "manager1", ["manager2"], None, current)
    assert wanted["manager1"] == [LinkFaultRule(peers=("manager2",), partition=True)]


def test_delay_loss_and_duplicate_stack_on_a_node_and_replace_their_own_kind() -> None:
    current = clean()
    current["worker1"] = plan("delay", "worker1", [], "200ms", current)["worker1"]
    current["worker1"] = plan("loss", "worker1", [], "10%", current)["worker1"]
    current["worker1"] = plan("delay", "worker1", [], "50ms", current)["worker1"]
    assert current["worker1"] == [LinkFaultRule(drop=0.1), LinkFaultRule(delay=0.05)]
    assert plan("duplicate", "worker1", ["manager1"], "5%", current)["worker1"][-1] == \
        LinkFaultRule(peers=("manager1",), duplicate=0.05)
    # 0 takes the rule of that kind away and leaves the others.
    assert plan("loss", "worker1", [], "0%", current) == {"worker1": [LinkFaultRule(delay=0.05)]}


def test_heal_a_node_takes_its_links_away_everywhere_and_leaves_the_others_cut() -> None:
    current = clean()
    for node, peers in (("manager1", ["manager2", "manager3"]), ("worker1", ["worker2"])):
        for name, rules in plan("partition", node, peers, None, current).items():
            current[name] = rules
    wanted = plan("heal", "manager2", [], None, current)
    assert wanted == {"manager1": [LinkFaultRule(peers=("manager3",), partition=True)], "manager2": []}
    assert plan("heal", None, [], None, current) == clean()


@pytest.mark.parametrize(("action", "node", "peers", "value", "message"), [
    ("partition", "manager1", [], None, "partition needs the other side"),
    ("partition", "manager1", ["manager1"], None, "a node has no link to itself"),
    ("partition", "manager1", ["manager2"], "10%", "partition takes no value"),
    ("delay", "worker1", [], None, "delay needs a value: swarmlet chaos delay worker1 200ms"),
    ("loss", "worker1", [], "lots", 'invalid percentage "lots"'),
    ("delay", None, [], "1s", "delay needs a NODE"),
    ("heal", "worker1", [], "1s", "heal takes at most a NODE"),
    ("partition", "manager1", ["worker1", "worker1"], None, "names a node twice"),
])
def test_bad_commands_are_refused(action: str, node: str | None, peers: list[str], value: str | None,
                                  message: str) -> None:
    with pytest.raises(FaultInputError, match=message):
        plan(action, node, peers, value, clean())


def test_rules_are_described_by_hostname() -> None:
    rule = LinkFaultRule(peers=("manager2", "10.0.0.3:7946", "10.0.0.3"), partition=True)
    assert describe(rule, NODES) == "partition from manager2"
    assert describe(LinkFaultRule(delay=0.2), NODES) == "delay 200ms"
    assert describe(LinkFaultRule(peers=("worker2",), drop=0.1), NODES) == "loss 10% to worker2"
    assert rules_without([rule, LinkFaultRule(delay=0.2)], ["manager2"]) == [LinkFaultRule(delay=0.2)]


# The rules on a stream --------------------------------------------------------------------------
def test_a_stream_loses_nothing_on_a_lossy_link_but_waits_for_retransmissions() -> None:
    faults = LinkFaults(rules=(LinkFaultRule(drop=0.5),))
    rng = random.Random(7)
    delays = [faults.on_stream("10.0.0.2:2377", rng, "raft") for _ in range(2000)]
    assert all(d.copies == 1 for d in delays)
    waited = [d.delay for d in delays if d.delay]
    # Half are "lost" at least once; each loss costs a retransmission timeout, doubling.
    assert 0.4 < len(waited) / len(delays) < 0.6
    assert min(waited) == pytest.approx(RETRANSMIT_S)
    assert pytest.approx(RETRANSMIT_S * 3) in waited  # lost twice: 0.2 + 0.4
    # Without a random source (the gossip stream's old callers) loss does not act on streams.
    assert faults.on_stream("10.0.0.2:2377").delay == 0.0


def test_a_rule_for_a_node_covers_every_port_of_its_address_and_counts_by_plane() -> None:
    seen: list[tuple[str, str]] = []
    rule = LinkFaultRule(peers=("manager2", "10.0.0.3:7946", "10.0.0.3"), partition=True)
    faults = LinkFaults(rules=(rule,), on_fault=lambda kind, plane: seen.append((kind, plane)))
    assert faults.on_stream("10.0.0.3:2377", plane="raft").copies == 0
    assert faults.on_packet("10.0.0.3:4789", random.Random(1), plane="overlay").copies == 0
    assert faults.blocked("manager2:2377", "dispatcher")
    assert not faults.blocked("10.0.0.4:2377", "raft")
    assert seen == [("partition", "raft"), ("partition", "overlay"), ("partition", "dispatcher")]


# The planes' gate --------------------------------------------------------------------------------
def test_the_gate_keeps_a_peers_messages_in_order_through_changing_delays() -> None:
    async def run() -> list[int]:
        faults = LinkFaults()
        gate = FaultGate(faults, "raft", random.Random(1))
        got: list[int] = []
        faults.set_rules([LinkFaultRule(delay=0.05)])
        gate.send_later("m2", gate.stream("10.0.0.2:2377") or 0.0, lambda: got.append(1))
        faults.set_rules([LinkFaultRule(delay=0.01)])
        gate.send_later("m2", gate.stream("10.0.0.2:2377") or 0.0, lambda: got.append(2))
        gate.send_later("m2", 0.0, lambda: got.append(3))
        await asyncio.sleep(0.15)
        return got

    assert asyncio.run(run()) == [1, 2, 3]


def test_a_call_into_a_partitioned_link_waits_its_timeout_and_fails() -> None:
    async def run() -> float:
        gate = FaultGate(LinkFaults(rules=(LinkFaultRule(peers=("10.0.0.1",), partition=True),)), "control")
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(LinkPartitioned, match="partitioned"):
            await gate.call("10.0.0.1:2377", 0.1)
        await gate.call("10.0.0.2:2377", 5.0)  # another peer: at once
        return loop.time() - began

    assert 0.1 <= asyncio.run(run()) < 1.0


def test_datagrams_through_the_gate_are_dropped_or_doubled() -> None:
    async def run() -> tuple[int, int]:
        faults = LinkFaults(rules=(LinkFaultRule(duplicate=1.0),))
        gate = FaultGate(faults, "overlay", random.Random(3))
        sent: list[int] = []
        gate.datagram("10.0.0.2:4789", lambda: sent.append(1))
        doubled = len(sent)
        faults.set_rules([LinkFaultRule(drop=1.0)])
        gate.datagram("10.0.0.2:4789", lambda: sent.append(1))
        return doubled, len(sent)

    assert asyncio.run(run()) == (2, 2)


def test_a_gate_without_faults_never_acts() -> None:
    gate = FaultGate(None, "raft")
    assert not gate.active and not gate.blocked("10.0.0.1:2377") and gate.stream("10.0.0.1:2377") == 0.0


# The command line ---------------------------------------------------------------------------------
@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("SWARMLET_STATE", str(folder))
    specs = node_specs(3, 2, folder, folder / "local")
    write_state(ClusterState("local", 3, 2, {"nodes": specs}))
    return folder


@pytest.mark.parametrize(("argv", "message"), [
    (["chaos", "partition", "manager1", "--from", "manager9"],
     "No such node: manager9. The nodes are: manager1"),
    (["chaos", "delay", "manager7", "200ms"], "No such node: manager7"),
    (["chaos", "loss", "worker1", "150%"], 'invalid percentage "150%": at most 100%'),
    (["chaos", "delay", "worker1", "soon"], 'invalid duration "soon"'),
    (["chaos", "partition", "manager1"], "partition needs the other side"),
    (["chaos", "stop", "worker1", "10%"], "stop takes only a NODE"),
    (["chaos", "stop"], "stop needs a NODE"),
])
def test_bad_chaos_input_is_refused_before_any_node_is_asked(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = (state / "state.json").read_text()
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert (state / "state.json").read_text() == before


def test_a_node_that_is_not_running_cannot_be_told(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["chaos", "delay", "worker1", "200ms"]) == 1
    assert "worker1 is not running" in capsys.readouterr().err
