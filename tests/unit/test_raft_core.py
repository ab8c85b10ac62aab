"""The Raft core driven message by message, as etcd's raft_test.go drives its `network`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from manager.state.raft.config import RaftConfig
from manager.state.raft.core import NO_LEADER_MESSAGE, NotLeader, RaftNode
from manager.state.raft.messages import ConfChange, ConfChangeType, Message, MessageType, Role
from manager.state.raft.types import Entry, EntryType, HardState, SnapshotMeta

CFG = RaftConfig.default()


class Disk:
    """One node's durable state, kept across restarts."""

    def __init__(self) -> None:
        self.hard = HardState()
        self.entries: list[Entry] = []
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""


class Net:
    """Nodes that exchange messages until none are left; drops are decided by a filter."""

    def __init__(self, ids: Iterable[str], config: RaftConfig = CFG, seed: int = 1) -> None:
        self.ids = list(ids)
        self.config = config
        self.seed = seed
        self.disks = {i: Disk() for i in self.ids}
        self.applied: dict[str, list[Entry]] = {i: [] for i in self.ids}
        self.reads: dict[str, list[bytes]] = {i: [] for i in self.ids}
        self.nodes: dict[str, RaftNode] = {}
        self.down: set[str] = set()
        self.drop: Callable[[Message], bool] = lambda m: False
        self.sent: list[Message] = []
        for i in self.ids:
            self.nodes[i] = RaftNode(config, i, random.Random(f"{seed}/{i}"), voters=self.ids)

    def add(self, node_id: str) -> None:
        """A new manager that joins later: it starts empty."""
        self.ids.append(node_id)
        self.disks[node_id] = Disk()
        self.applied[node_id] = []
        self.reads[node_id] = []
        self.nodes[node_id] = RaftNode(self.config, node_id, random.Random(node_id))

    def restart(self, node_id: str) -> RaftNode:
        disk = self.disks[node_id]
        node = RaftNode(
            self.config,
            node_id,
            random.Random(f"again/{node_id}"),
            voters=self.ids,
            hard_state=disk.hard,
            entries=disk.entries,
            snapshot=disk.snapshot,
            applied=disk.snapshot.index if disk.snapshot else 0,
            snapshot_data=disk.snapshot_data,
        )
        self.nodes[node_id] = node
        return node

    def _collect(self, node_id: str) -> list[Message]:
        node, disk = self.nodes[node_id], self.disks[node_id]
        out: list[Message] = []
        while node.has_ready():
            rd = node.ready()
            if rd.snapshot is not None:
                disk.snapshot, disk.snapshot_data = rd.snapshot
                disk.entries = []
            if rd.entries:
                first = rd.entries[0].index
                disk.entries = [e for e in disk.entries if e.index < first] + list(rd.entries)
            if rd.hard_state is not None:
                disk.hard = rd.hard_state
            out.extend(rd.messages)
            self.applied[node_id].extend(rd.committed)
            self.reads[node_id].extend(s.context for s in rd.read_states)
            node.advance(rd)
        return out

    def stabilize(self, limit: int = 10_000) -> None:
        """Deliver messages until the network is quiet."""
        queue: list[Message] = []
        for i in self.ids:
            if i not in self.down:
                queue.extend(self._collect(i))
        steps = 0
        while queue:
            steps += 1
            assert steps < limit, "the network did not settle"
            m = queue.pop(0)
            self.sent.append(m)
            if m.to in self.down or m.sender in self.down or self.drop(m):
                continue
            self.nodes[m.to].step(m)
            queue.extend(self._collect(m.to))

    def tick(self, times: int = 1, who: Iterable[str] | None = None) -> None:
        for _ in range(times):
            for i in list(who) if who is not None else self.ids:
                if i not in self.down:
                    self.nodes[i].tick()
            self.stabilize()

    def elect(self, node_id: str) -> RaftNode:
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.nodes[node_id].role == Role.LEADER
        return self.nodes[node_id]

    def leaders(self) -> list[str]:
        return [i for i, n in self.nodes.items() if i not in self.down and n.role == Role.LEADER]


def test_a_single_manager_elects_itself_and_commits() -> None:
    net = Net(["a"])
    leader = net.elect("a")
    index = leader.propose(b"x")
    net.stabilize()
    assert leader.commit == index
    assert [e.data for e in net.applied["a"] if e.type == EntryType.NORMAL and e.data] == [b"x"]


def test_three_managers_elect_exactly_one_leader_by_timeout() -> None:
    net = Net(["a", "b", "c"])
    net.tick(2 * CFG.election_ticks + 1)
    assert len(net.leaders()) == 1
    leader = net.nodes[net.leaders()[0]]
    assert all(n.leader == leader.node_id for n in net.nodes.values())
    assert all(n.term == leader.term for n in net.nodes.values())


def test_a_write_commits_on_a_majority_and_is_applied_everywhere() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.down.add("c")
    index = leader.propose(b"one")
    net.stabilize()
    assert leader.commit == index  # a and b are a majority
    net.down.discard("c")
    net.tick(CFG.heartbeat_ticks, who=["a"])
    for node_id in ("a", "b", "c"):
        assert b"one" in [e.data for e in net.applied[node_id]]


def test_a_minority_cannot_commit() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.drop = lambda m: m.sender == "a" or m.to == "a"
    index = leader.propose(b"lonely")
    net.stabilize()
    assert leader.commit < index


def test_follower_refuses_proposals_and_names_the_leader() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    with pytest.raises(NotLeader) as caught:
        net.nodes["b"].propose(b"x")
    assert caught.value.leader == "a"
    fresh = Net(["a", "b", "c"])
    with pytest.raises(NotLeader) as nobody:
        fresh.nodes["b"].propose(b"x")
    assert nobody.value.leader is None
    assert str(nobody.value) == NO_LEADER_MESSAGE


def test_pre_vote_keeps_an_isolated_manager_from_raising_the_term() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    net.drop = lambda m: "c" in (m.sender, m.to)
    net.tick(10 * CFG.election_ticks)
    assert net.nodes["c"].term == term  # pre-votes failed, so the term never moved
    net.drop = lambda m: False
    net.tick(CFG.heartbeat_ticks)
    assert leader.role == Role.LEADER and leader.term == term
    assert net.nodes["c"].leader == "a"


def test_without_pre_vote_a_returning_manager_disrupts_the_leader() -> None:
    # The contrast that shows what pre-vote is for (and that the test above can fail).
    import dataclasses

    cfg = dataclasses.replace(CFG, pre_vote=False, check_quorum=False)
    net = Net(["a", "b", "c"], config=cfg)
    leader = net.elect("a")
    term = leader.term
    net.drop = lambda m: "c" in (m.sender, m.to)
    net.tick(10 * CFG.election_ticks, who=["c"])
    assert net.nodes["c"].term > term
    net.drop = lambda m: False
    net.tick(2 * CFG.election_ticks)
    assert leader.term > term


def test_check_quorum_makes_a_cut_off_leader_step_down() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.drop = lambda m: "a" in (m.sender, m.to)
    net.tick(2 * CFG.election_ticks + 1, who=["a"])
    assert leader.role == Role.FOLLOWER
    with pytest.raises(NotLeader):
        leader.propose(b"x")


def test_followers_in_lease_ignore_a_disruptive_candidate() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    # c asks for votes directly in a later term, skipping pre-vote: b heard from a just now.
    net.nodes["b"].step(
        Message(MessageType.VOTE, "b", "c", term=term + 1, index=99, log_term=term)
    )
    assert net.nodes["b"].term == term
    assert net.nodes["b"].vote == "a" or net.nodes["b"].vote == ""


def test_a_node_votes_once_per_term_even_after_restart() -> None:
    net = Net(["a", "b", "c"])
    b = net.nodes["b"]
    b.step(Message(MessageType.VOTE, "b", "a", term=5, index=1, log_term=1))
    net.stabilize()
    assert b.vote == "a"
    b = net.restart("b")
    b.step(Message(MessageType.VOTE, "b", "c", term=5, index=1, log_term=1))
    replies = [m for m in b.ready().messages if m.type == MessageType.VOTE_RESP]
    assert replies and replies[0].reject


def test_a_candidate_with_a_shorter_log_loses() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.down.add("c")
    leader.propose(b"x")
    net.stabilize()
    net.down.clear()
    net.down.add("a")  # the leader dies; only b holds the latest entry
    net.nodes["c"].campaign()
    net.stabilize()
    assert net.nodes["c"].role != Role.LEADER  # b refused: c's log is behind
    net.nodes["b"].campaign()
    net.stabilize()
    assert net.leaders() == ["b"]


def test_entries_of_an_earlier_term_commit_only_with_one_of_the_current_term() -> None:
    # Raft's Figure 8: a leader must not commit an earlier term's entry by counting its replicas.
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    old_term = a.term
    net.drop = lambda m: not (m.sender == "a" and m.to == "b" and m.type == MessageType.APPEND)
    index = a.propose(b"old")
    net.stabilize()
    assert a.commit < index and net.nodes["b"].log.last_index() == index
    a = net.restart("a")  # a crashes and comes back: it keeps its log, not its leadership
    net.drop = lambda m: True
    net.tick(CFG.election_ticks, who=["b", "c"])  # b and c stop trusting the old leader
    net.drop = lambda m: m.type == MessageType.APPEND  # elections get through, replication not
    a.campaign()
    net.stabilize()
    assert a.role == Role.LEADER and a.term > old_term
    # An acknowledgement of the old entry (and not of the new term's no-op) arrives from b.
    a.step(Message(MessageType.APPEND_RESP, "a", "b", term=a.term, index=index))
    assert a.log.term(index) == old_term
    assert a.commit < index, "an earlier term's entry was committed by counting replicas"
    net.drop = lambda m: False
    net.tick(CFG.heartbeat_ticks, who=["a"])
    assert a.commit == index + 1  # committed together with the new term's no-op


def _boot() -> Entry:
    data = ConfChange(ConfChangeType.BOOTSTRAP, "", ("a", "b", "c")).encode()
    return Entry(1, 1, EntryType.CONF_CHANGE, data)


def test_fast_backtracking_skips_a_conflicting_term_at_once() -> None:
    # b once led term 3 alone and appended 50 entries nobody else has; a and c went on in term 2.
    common = [_boot(), Entry(2, 2)]
    ours = common + [Entry(i, 2, data=b"kept") for i in range(3, 41)]
    stray = common + [Entry(i, 3, data=b"stray") for i in range(3, 53)]
    net = Net(["a", "b", "c"])
    for node_id, log, term in (("a", ours, 4), ("b", stray, 3), ("c", ours, 4)):
        net.disks[node_id].entries = list(log)
        net.disks[node_id].hard = HardState(term=term, commit=2)
        net.restart(node_id)
    a = net.elect("a")
    net.tick(CFG.heartbeat_ticks, who=["a"])
    b = net.nodes["b"]
    rejections = [m for m in net.sent if m.type == MessageType.APPEND_RESP and m.reject and m.sender == "b"]
    assert 1 <= len(rejections) <= 2  # probing one index at a time would take 38
    assert b.log.last_index() == a.log.last_index()
    assert all(e.data != b"stray" for e in b.log.entries)
    assert b.commit == a.commit


def test_a_lagging_follower_receives_a_snapshot() -> None:
    net = Net(["a", "b", "c"], config=RaftConfig.test())
    leader = net.elect("a")
    net.down.add("c")
    for i in range(30):
        leader.propose(f"w{i}".encode())
    net.stabilize()
    leader.compact(leader.applied, b"state-at-applied")
    assert leader.log.first_index() > 2
    net.down.discard("c")
    net.tick(CFG.heartbeat_ticks, who=["a"])
    net.tick(CFG.heartbeat_ticks, who=["a"])
    assert net.disks["c"].snapshot is not None
    assert net.disks["c"].snapshot_data == b"state-at-applied"
    assert net.nodes["c"].commit == leader.commit
    assert net.nodes["c"].bytes_snapshotted == len(b"state-at-applied")


def test_read_index_waits_for_a_heartbeat_quorum() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    leader.propose(b"x")
    net.stabilize()
    leader.read_index(b"r1")
    rd = leader.ready()
    leader.advance(rd)
    assert rd.read_states == []  # not before a majority confirmed the leadership
    heartbeats = [m for m in rd.messages if m.type == MessageType.HEARTBEAT]
    assert {m.to for m in heartbeats} == {"b", "c"}
    net.nodes["b"].step(heartbeats[0] if heartbeats[0].to == "b" else heartbeats[1])
    answer = [m for m in net.nodes["b"].ready().messages if m.type == MessageType.HEARTBEAT_RESP]
    leader.step(answer[0])
    rd = leader.ready()
    leader.advance(rd)
    assert [(s.context, s.index) for s in rd.read_states] == [(b"r1", leader.commit)]


def test_a_read_on_a_new_leader_waits_for_its_first_commit() -> None:
    net = Net(["a", "b", "c"])
    net.drop = lambda m: m.type == MessageType.APPEND_RESP
    leader = net.elect("a")
    leader.read_index(b"early")
    net.stabilize()
    assert net.reads["a"] == []
    net.drop = lambda m: False
    net.tick(CFG.heartbeat_ticks, who=["a"])
    assert leader.commit == leader.last_index
    assert net.reads["a"] == [b"early"]


def test_a_follower_read_is_confirmed_by_the_leader() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.nodes["b"].read_index(b"follower-read")
    net.stabilize()
    assert net.reads["b"] == [b"follower-read"]
    assert net.reads["a"] == []


def test_membership_learner_catches_up_then_is_promoted_then_removed() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.stabilize()
    leader.propose(b"before-d")
    net.stabilize()
    net.add("d")
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "d"))
    with pytest.raises(ValueError, match="in progress"):
        leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "e"))
    net.stabilize()
    net.tick(CFG.heartbeat_ticks, who=["a"])
    d = net.nodes["d"]
    assert "d" in leader.conf.learners
    assert d.commit == leader.commit
    assert b"before-d" in [e.data for e in net.applied["d"]]
    d.tick()
    for _ in range(3 * CFG.election_ticks):
        d.tick()
    assert d.role == Role.FOLLOWER  # a learner never campaigns
    leader.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, "d"))
    net.stabilize()
    net.tick(CFG.heartbeat_ticks, who=["a"])
    assert leader.conf.voters == ("a", "b", "c", "d")
    assert d.promotable()
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "b"))
    net.stabilize()
    assert list(leader.conf.voters) == ["a", "c", "d"]
    assert "b" not in leader.progress
    with pytest.raises(ValueError, match="not a member"):
        leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "b"))


def test_promoting_a_learner_that_lags_is_refused() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.add("d")
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "d"))
    net.stabilize()
    net.down.add("d")
    leader.propose(b"more")
    net.stabilize()
    with pytest.raises(ValueError, match="caught up"):
        leader.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, "d"))


def test_leadership_transfer_hands_over_in_one_round() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    net.stabilize()
    leader.transfer_leadership("c")
    net.stabilize()
    assert net.nodes["c"].role == Role.LEADER
    assert net.nodes["c"].term == term + 1
    assert leader.role == Role.FOLLOWER and leader.leader == "c"
    with pytest.raises(ValueError):
        net.nodes["c"].transfer_leadership("nobody")


def test_a_removed_leader_steps_down() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.stabilize()
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "a"))
    net.stabilize()
    assert leader.role == Role.FOLLOWER
    net.tick(3 * CFG.election_ticks, who=["b", "c"])
    assert sorted(net.leaders()) in (["b"], ["c"])


def test_restart_recovers_term_vote_and_log() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    for i in range(5):
        leader.propose(f"w{i}".encode())
    net.stabilize()
    before = net.nodes["b"]
    again = net.restart("b")
    assert (again.term, again.vote, again.commit) == (before.term, before.vote, before.commit)
    assert again.log.last_index() == before.log.last_index()
    assert again.role == Role.FOLLOWER


def test_status_exposes_what_metrics_need() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    leader.propose(b"12345")
    net.stabilize()
    status = leader.status()
    for key in ("term", "role", "leader", "commit", "applied", "leader_changes", "bytes_appended",
                "bytes_snapshotted", "progress"):
        assert key in status
    assert status["role"] == "leader" and status["bytes_appended"] == 5
    assert status["leader_changes"] == 1
    progress = status["progress"]
    assert isinstance(progress, dict) and progress["b"]["match"] == leader.commit


def test_compact_refuses_unapplied_indexes() -> None:
    net = Net(["a"])
    leader = net.elect("a")
    with pytest.raises(ValueError, match="applied"):
        leader.compact(leader.last_index + 5, b"")


@pytest.mark.parametrize(
    "bad", [ConfChange(ConfChangeType.PROMOTE, "b"), ConfChange(ConfChangeType.DEMOTE, "z")]
)
def test_nonsense_membership_changes_are_refused(bad: ConfChange) -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.stabilize()
    with pytest.raises(ValueError):
        leader.propose_conf_change(bad)
    assert leader.conf.voters == ("a", "b", "c")


# The leader's port refuses connections (report_leader_unreachable) ----------------------------
def test_a_refused_leader_is_replaced_at_once_without_waiting_for_a_timeout() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    net.down.add("a")
    # Both survivors hear the refusal; neither tick passes.
    assert net.nodes["c"].report_leader_unreachable("a", term)
    assert net.nodes["b"].report_leader_unreachable("a", term)
    net.stabilize()
    assert net.leaders() == ["b"]  # b ranks first among the survivors
    assert net.nodes["b"].term == term + 1
    assert net.nodes["c"].leader == "b"


def test_the_second_survivor_stands_by_then_campaigns_if_the_first_does_not() -> None:
    net = Net(["a", "b", "c", "d", "e"])
    leader = net.elect("a")
    term = leader.term
    net.down.update({"a", "b"})  # b, first in rank, is gone too and cannot campaign
    for survivor in ("c", "d", "e"):
        assert net.nodes[survivor].report_leader_unreachable("a", term)
    net.stabilize()
    assert net.leaders() == []
    assert net.nodes["d"].role == Role.FOLLOWER and net.nodes["e"].role == Role.FOLLOWER
    net.tick(CFG.standby_ticks - 1, who=["c", "d", "e"])
    assert net.leaders() == []
    net.tick(1, who=["c", "d", "e"])
    assert net.leaders() == ["c"]  # c ranks first among those standing by; d and e voted for it
    assert net.nodes["c"].term == term + 1


def test_a_report_ends_the_lease_so_another_survivors_pre_vote_is_answered() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    net.down.add("a")
    # Without a report c is in its lease and ignores b's campaign.
    assert net.nodes["b"].report_leader_unreachable("a", term)
    net.stabilize()
    assert net.leaders() == [] and net.nodes["c"].leader == "a"
    assert net.nodes["b"].term == term  # a pre-vote that failed leaves no trace
    # Once c hears the refusal too, it stands by and answers; here its own campaign wins.
    assert net.nodes["c"].report_leader_unreachable("a", term)
    assert net.nodes["c"].leader is None
    net.tick(CFG.standby_ticks, who=["c"])
    assert net.leaders() == ["c"]


@pytest.mark.parametrize(
    ("who", "about", "term_delta", "why"),
    [
        ("b", "a", -1, "a report from an older term is stale"),
        ("b", "a", +1, "a report of a term the node never saw is ignored"),
        ("b", "c", 0, "c is not the leader b follows"),
        ("a", "a", 0, "the leader does not act on a report about itself"),
    ],
)
def test_reports_that_are_stale_or_about_someone_else_are_ignored(
    who: str, about: str, term_delta: int, why: str
) -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    node = net.nodes[who]
    before = (node.role, node.term, node.leader, node.election_elapsed, node.randomized_timeout)
    assert not node.report_leader_unreachable(about, term + term_delta), why
    assert (node.role, node.term, node.leader, node.election_elapsed, node.randomized_timeout) == before
    assert not node.has_ready() or not node.ready().messages


def test_a_report_from_before_a_change_of_leader_is_ignored() -> None:
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    old_term = a.term
    a.transfer_leadership("c")  # c takes over in a later term; b now follows c
    net.stabilize()
    net.tick(CFG.heartbeat_ticks, who=["c"])
    b = net.nodes["b"]
    assert b.leader == "c" and b.term > old_term
    assert not b.report_leader_unreachable("a", old_term)
    assert not b.report_leader_unreachable("a", b.term)  # a does not lead this term
    assert b.leader == "c" and b.role == Role.FOLLOWER


def test_a_candidate_already_campaigning_ignores_a_report() -> None:
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    b = net.nodes["b"]
    net.down.add("a")
    net.drop = lambda m: True
    b.campaign()
    assert b.role == Role.PRE_CANDIDATE
    assert not b.report_leader_unreachable("a", a.term)
    assert b.role == Role.PRE_CANDIDATE


def test_a_learner_ignores_a_report() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    net.add("d")
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "d"))
    net.stabilize()
    net.tick(CFG.heartbeat_ticks, who=["a"])
    d = net.nodes["d"]
    assert "d" in leader.conf.learners and d.leader == "a"
    assert not d.report_leader_unreachable("a", d.term)
    assert d.leader == "a" and d.role == Role.FOLLOWER


def test_a_wrong_report_about_a_live_leader_costs_nothing() -> None:
    net = Net(["a", "b", "c"])
    leader = net.elect("a")
    term = leader.term
    # b's connection was refused by mistake (a restarted listener, say): a still leads.
    assert net.nodes["b"].report_leader_unreachable("a", term)
    net.stabilize()
    assert leader.role == Role.LEADER and leader.term == term  # a and c, in lease, ignored b
    net.tick(CFG.heartbeat_ticks, who=["a"])
    assert net.nodes["b"].leader == "a" and net.nodes["b"].term == term
    assert net.nodes["b"].role == Role.FOLLOWER


def test_after_a_stall_the_leader_steps_the_answers_that_waited_before_its_tick() -> None:
    """A leader whose loop stalled finds its peer's answers queued and a tick due at once. The
    loop's turn steps the answers first, so check-quorum sees the peer and the leader stays; a
    tick taken first would count the waiting answers as silence and step down (seen in a real
    bring-up of five nodes on two cores)."""
    from manager.state.raft.shell import take_turn

    def stalled_leader() -> tuple[RaftNode, list[Message]]:
        net = Net(["a", "b"])
        leader = net.elect("a")  # b acknowledged the leader's first entry: heard in this round
        waiting: list[Message] = []

        def hold(m: Message) -> bool:
            if m.sender == "b":
                waiting.append(m)  # b answered, but a's loop has not read it yet
                return True
            return False

        net.drop = hold
        # The first check-quorum round passes on the election's answers; the next tick is the
        # second round's check, with b's answers since then all waiting.
        net.tick(2 * CFG.election_ticks - 1, who=["a"])
        assert leader.role == Role.LEADER and waiting
        return leader, waiting

    leader, waiting = stalled_leader()
    due = take_turn(leader, waiting, now=10.0, next_tick=9.0, tick=0.05)
    assert leader.role == Role.LEADER
    assert due == 10.0  # one tick after a long stall, not a burst

    ticked_first, waiting = stalled_leader()
    ticked_first.tick()
    assert ticked_first.role == Role.FOLLOWER  # the order is what keeps the leader
