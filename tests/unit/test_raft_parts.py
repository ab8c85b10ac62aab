"""The small pure parts of Raft: quorum arithmetic, the log, progress, config and membership changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from manager.state.raft.config import RaftConfig
from manager.state.raft.log import LogError, RaftLog
from manager.state.raft.messages import ConfChange, ConfChangeType
from manager.state.raft.quorum import VoteResult, committed_index, majority, vote_result
from manager.state.raft.tracker import Progress, ProgressState
from manager.state.raft.types import ConfState, Entry, SnapshotMeta


@pytest.mark.parametrize(("voters", "need"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(voters: int, need: int) -> None:
    assert majority(voters) == need


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"a": 5, "b": 5, "c": 5}, 5),
        ({"a": 9, "b": 4, "c": 2}, 4),
        ({"a": 9, "b": 0, "c": 0}, 0),
        ({"a": 9}, 0),  # b and c unknown: nothing beyond 0 is on a majority
        ({"a": 3, "b": 7, "c": 5, "x": 100}, 5),  # x is not a voter and does not count
    ],
)
def test_committed_index_is_what_a_majority_holds(match: dict[str, int], expected: int) -> None:
    assert committed_index(("a", "b", "c"), match) == expected


@pytest.mark.parametrize(
    ("votes", "result"),
    [
        ({"a": True}, VoteResult.PENDING),
        ({"a": True, "b": True}, VoteResult.WON),
        ({"a": True, "b": False}, VoteResult.PENDING),
        ({"a": True, "b": False, "c": False}, VoteResult.LOST),
        ({"x": True, "y": True, "a": True}, VoteResult.PENDING),  # learners' votes do not count
    ],
)
def test_vote_result(votes: dict[str, bool], result: VoteResult) -> None:
    assert vote_result(("a", "b", "c"), votes) == result


def _log(*terms: int) -> RaftLog:
    return RaftLog(entries=[Entry(i + 1, t) for i, t in enumerate(terms)])


def test_log_appends_only_after_a_matching_entry() -> None:
    log = _log(1, 1, 2)
    assert log.maybe_append(3, 1, 0, [Entry(4, 2)]) is None  # (3, 1) is not in the log
    assert log.maybe_append(3, 2, 2, [Entry(4, 3)]) == 4
    assert log.last_index() == 4 and log.committed == 2


def test_a_duplicate_or_late_append_never_truncates() -> None:
    log = _log(1, 1, 2, 2, 2)
    assert log.maybe_append(1, 1, 0, [Entry(2, 1)]) == 2
    assert log.last_index() == 5  # the later entries stay: the message vouched only for index 2


def test_a_conflicting_append_replaces_the_tail_and_needs_persisting_again() -> None:
    log = _log(1, 1, 2, 2)
    assert log.unstable_entries() == []
    log.maybe_append(2, 1, 0, [Entry(3, 3)])
    assert [e.term for e in log.entries] == [1, 1, 3]
    assert log.unstable_entries() == [Entry(3, 3)]


def test_committed_entries_are_never_overwritten() -> None:
    log = _log(1, 1, 2)
    log.commit_to(3)
    with pytest.raises(LogError):
        log.append([Entry(3, 5)])


def test_find_conflict_by_term_skips_a_whole_term() -> None:
    log = _log(1, 1, 2, 4, 4, 4, 4)
    assert log.find_conflict_by_term(7, 3) == 3
    assert log.find_conflict_by_term(7, 1) == 2
    assert log.find_conflict_by_term(2, 9) == 2


def test_slice_respects_the_byte_budget_but_sends_at_least_one_entry() -> None:
    log = RaftLog(entries=[Entry(i, 1, data=b"x" * 100) for i in range(1, 6)])
    assert len(log.slice(1, 5, 250)) == 2
    assert len(log.slice(1, 5, 10)) == 1


def test_compaction_keeps_the_term_at_the_compaction_point() -> None:
    log = _log(1, 2, 3, 4)
    log.commit_to(4)
    log.applied = 4
    log.compact(3)
    assert log.first_index() == 4 and log.term(3) == 3 and log.term(2) is None
    assert log.match_term(3, 3)


def test_log_after_a_snapshot_starts_right_after_it() -> None:
    snap = SnapshotMeta(10, 3, ConfState(("a",)))
    log = RaftLog(snap, [Entry(9, 3), Entry(10, 3), Entry(11, 4)], committed=0)
    assert log.first_index() == 11 and log.committed == 10 and log.last_term() == 4
    with pytest.raises(ValueError, match="contiguous"):
        RaftLog(snap, [Entry(12, 4)])


def test_progress_probe_waits_for_an_answer_and_backs_off_to_the_hint() -> None:
    pr = Progress(next_index=11, max_inflight=4)
    pr.sent_entries(11)
    assert pr.is_paused()
    assert not pr.maybe_decrease_to(rejected=3, hint=2)  # stale: not about the last probe
    assert pr.maybe_decrease_to(rejected=10, hint=4)
    assert pr.next == 5 and not pr.is_paused()


def test_progress_replicate_window_fills_and_drains() -> None:
    pr = Progress(next_index=1, max_inflight=2)
    pr.maybe_update(0)
    pr.become_replicate()
    pr.sent_entries(3)
    pr.sent_entries(6)
    assert pr.is_paused() and pr.next == 7
    pr.maybe_update(3)
    pr.inflights.free_to(3)
    assert not pr.is_paused()
    pr.become_snapshot(50)
    assert pr.state == ProgressState.SNAPSHOT and pr.is_paused()


def test_config_default_and_scale() -> None:
    cfg = RaftConfig.default()
    assert cfg.heartbeat_ticks < cfg.election_ticks
    # The slowest election timeout plus one heartbeat stays under the 1 s failover target.
    assert (2 * cfg.election_ticks + cfg.heartbeat_ticks) * cfg.tick_s <= 1.0
    slow = cfg.scaled(4)
    assert slow.tick_s == pytest.approx(4 * cfg.tick_s) and slow.election_ticks == cfg.election_ticks


@pytest.mark.parametrize(
    ("field", "value"),
    [("tick_s", 0.0), ("heartbeat_ticks", 0), ("election_ticks", 2), ("max_inflight", 0),
     ("max_batch_bytes", 0), ("snapshot_every", -1), ("keep_after_snapshot", -1)],
)
def test_config_names_the_bad_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(RaftConfig.default(), **{field: value})


def test_conf_change_round_trips_and_applies() -> None:
    conf = ConfState(("a", "b", "c"))
    for change, voters, learners in [
        (ConfChange(ConfChangeType.ADD_LEARNER, "d"), ("a", "b", "c"), ("d",)),
        (ConfChange(ConfChangeType.REMOVE, "b"), ("a", "c"), ()),
        (ConfChange(ConfChangeType.DEMOTE, "c"), ("a", "b"), ("c",)),
    ]:
        assert ConfChange.decode(change.encode()) == change
        after = change.apply(conf)
        assert (after.voters, after.learners) == (voters, learners)
    promoted = ConfChange(ConfChangeType.PROMOTE, "d").apply(ConfState(("a",), ("d",)))
    assert promoted == ConfState(("a", "d"), ())
    with pytest.raises(ValueError, match="membership"):
        ConfChange.decode(b"{not json")
