"""Raft clusters on the simulated network under faults: safe, live after healing, and replayable."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest

from manager.state.raft import core, simmanager
from manager.state.raft.campaign import run_campaign
from manager.state.raft.config import RaftConfig
from manager.state.raft.simcluster import FAULTS, RaftSimCluster, SimOptions
from manager.state.raft.simmanager import KEY_KIND, SimRequest, key_ops, key_value
from manager.state.store import ApplyResult, Store, Update, UpdateOutOfSequence, encode_batch
from tests.golden import Golden

GOLDEN = pathlib.Path(__file__).parent / "golden" / "raft"
ALL_FAULTS = tuple(FAULTS)


@pytest.mark.parametrize(
    ("managers", "seeds", "reads"), [(3, 12, "mixed"), (5, 6, "mixed"), (7, 2, "index")]
)
def test_no_violation_under_every_fault(managers: int, seeds: int, reads: str) -> None:
    options = SimOptions(managers=managers, faults=ALL_FAULTS, read_mode=reads)
    summary = run_campaign(options, seeds, first_seed=1)
    assert summary["violations"] == []
    assert summary["ops"] > 100 * seeds
    assert summary["totals"]["faults"] > 5 * seeds
    assert summary["runs_by_read_path"]["index"] > 0  # ReadIndex reads were checked too


def test_membership_changes_under_faults() -> None:
    # Seed 13 once left a manager whose joining was never committed counted as a member.
    faults = ("membership", "crash", "partition", "loss")
    summary = run_campaign(SimOptions(managers=3, faults=faults), 4, first_seed=11)
    assert summary["violations"] == []
    result = RaftSimCluster(13, SimOptions(managers=3, faults=faults, trace=True)).run(_check)
    assert result.violations == []
    assert any("PROMOTE" in line for line in result.trace)
    assert any("retired" in line for line in result.trace)  # a REMOVE committed and the manager left


def test_a_stale_leader_of_an_older_term_is_not_a_completeness_violation() -> None:
    # Seed 3581: m3 won term 5 late, while a leader of term 6 had already committed entry 28.
    # Leader completeness covers entries committed in earlier terms only, so this is legal Raft.
    options = SimOptions(managers=5, faults=ALL_FAULTS, trace=True)
    result = RaftSimCluster(3581, options).run(_check)
    assert result.violations == []
    assert any("m3 leader term=5" in line for line in result.trace)


def test_messages_survive_the_protobuf_codec_in_a_faulty_run() -> None:
    result = RaftSimCluster(3, SimOptions(faults=ALL_FAULTS, codec=True, fault_s=5.0)).run(_check)
    assert result.violations == []
    assert result.ops > 50


def test_a_seed_replays_exactly() -> None:
    options = SimOptions(managers=5, faults=ALL_FAULTS, fault_s=4.0, trace=True)
    first = RaftSimCluster(11, options).run()
    again = RaftSimCluster(11, options).run()
    other = RaftSimCluster(12, options).run()
    assert first.history == again.history and first.trace == again.trace
    assert first.failovers == again.failovers
    assert first.history != other.history


def test_failover_after_a_leader_crash_is_within_a_second() -> None:
    summary = run_campaign(SimOptions(managers=3, faults=("crash",), fault_s=8.0), 6, first_seed=1)
    assert summary["violations"] == []
    assert summary["failover_s"]["count"] >= 6
    assert summary["failover_s"]["max"] <= 1.0


def test_a_refusing_crash_is_repaired_in_milliseconds_a_silent_one_by_the_election_timeout() -> None:
    def failovers(crashes: str) -> dict[str, float]:
        options = SimOptions(managers=3, faults=("crash",), fault_s=6.0, crashes=crashes)
        summary = run_campaign(options, 4, first_seed=1)
        assert summary["violations"] == []
        assert summary["failover_s_by_crash"]["refusing" if crashes == "refusing" else "silent"]["count"] >= 4
        figures: dict[str, float] = summary["failover_s"]
        return figures

    refusing, silent = failovers("refusing"), failovers("silent")
    # Found out within a round trip, then pre-vote, vote and the first commit: a few milliseconds.
    assert refusing["p50"] < 0.05
    # Nobody is told: the first follower's timer (0.4 to 0.8 s after the last heartbeat) decides.
    assert silent["p50"] > 0.25 and silent["max"] <= 1.0


def test_the_checks_catch_a_read_path_that_skips_the_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    # A leader that answers ReadIndex from its own commit index without asking a majority serves
    # stale reads once a partition has elected another leader. Without check-quorum it never
    # steps down, so the campaign must find the stale read in the history.
    def answer_at_once(self: core.RaftNode, ctx: bytes, requester: str) -> None:
        self._answer_read(ctx, requester, self.commit)

    monkeypatch.setattr(core.RaftNode, "_start_read", answer_at_once)
    raft = dataclasses.replace(RaftConfig.default(), check_quorum=False)
    options = SimOptions(faults=("partition",), read_mode="index", raft=raft)
    result = RaftSimCluster(4, options).run(_check)
    assert any(v.startswith("linearizability") for v in result.violations)


def test_the_checks_catch_a_voter_that_ignores_log_freshness(monkeypatch: pytest.MonkeyPatch) -> None:
    from manager.state.raft.log import RaftLog

    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    faults = ("crash", "restart", "pause", "partition", "loss", "duplicate", "reorder")
    summary = run_campaign(SimOptions(faults=faults), 7, first_seed=1)
    assert summary["violations"], "electing a leader with a stale log went unnoticed"


def test_the_managers_apply_the_clients_operations_to_the_store() -> None:
    cluster = RaftSimCluster(2, SimOptions(faults=ALL_FAULTS, fault_s=4.0))
    result = cluster.run(_check)
    assert result.violations == []
    live = [m for m in cluster.managers.values() if m is not None]
    assert len({m.machine.snapshot() for m in live}) == 1  # the same bytes everywhere
    store = live[0].store
    keys = [obj.id for obj in store.find(KEY_KIND)]
    assert keys == ["k1", "k2", "k3"]
    for key in keys:
        value, version = key_value(store, key)
        assert isinstance(value, int) and version is not None and version <= store.applied_index
    # What the managers keep on disk as snapshots is the store's snapshot format.
    snapshots = [st for st in cluster.storages.values() if st.snapshot is not None]
    assert snapshots
    for st in snapshots:
        assert st.snapshot is not None
        Store().restore(st.snapshot_data, st.snapshot.index)


def test_key_ops_round_trip_through_the_store() -> None:
    store = Store()
    assert key_value(store, "k1") == (None, None)
    assert store.apply(5, encode_batch(key_ops("k1", 7, None), now="2026-01-01T00:00:00Z")).ok
    assert key_value(store, "k1") == (7, 5)
    stale = store.apply(6, encode_batch(key_ops("k1", 8, 4), now="2026-01-01T00:00:01Z"))
    assert isinstance(stale.error, UpdateOutOfSequence)
    assert store.apply(7, encode_batch(key_ops("k1", [1, "x"], 5), now="2026-01-01T00:00:02Z")).ok
    assert key_value(store, "k1") == ([1, "x"], 7)


# Six clients on one key, a few milliseconds apart: writes and cas meet "update out of sequence".
CONTENTION = SimOptions(faults=(), clients=6, keys=1, think_s=0.005, fault_s=3.0, heal_s=1.0)


def test_contended_writes_retry_on_out_of_sequence_and_stay_linearizable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused: list[str] = []
    written = simmanager.SimManager._written

    def counting(self: simmanager.SimManager, req: SimRequest, result: ApplyResult, *args: Any) -> None:
        if not result.ok:
            refused.append(type(result.error).__name__)
        written(self, req, result, *args)

    monkeypatch.setattr(simmanager.SimManager, "_written", counting)
    summary = run_campaign(CONTENTION, 2, first_seed=1)
    assert summary["violations"] == []
    assert refused.count("UpdateOutOfSequence") > 20


def test_the_checks_catch_a_store_that_ignores_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    # A store that applies an Update whatever version it carries turns cas into read-then-write:
    # two clients can both succeed from the same value, which the history shows.
    from manager.state.store import store as store_module

    update = store_module._Txn._update

    def blind(self: Any, op: Update) -> None:
        current = self.get(op.kind, op.id)
        update(self, op if current is None else dataclasses.replace(op, version=current.version))

    monkeypatch.setattr(store_module._Txn, "_update", blind)
    summary = run_campaign(CONTENTION, 2, first_seed=1)
    assert any(v["violation"].startswith("linearizability") for v in summary["violations"])


def test_golden_trace_of_a_leader_crash(golden: Golden) -> None:
    """The event trace of one small seeded run; `pytest --update-golden` rewrites the file after a change."""
    options = SimOptions(managers=3, faults=("crash",), fault_s=3.0, heal_s=1.5, clients=1, trace=True)
    result = RaftSimCluster(4, options).run(_check)
    assert result.violations == []
    text = "\n".join(line for line in result.trace if "fault" in line or " term=" in line or "crash" in line
                     or "refuse" in line or "restart" in line or "failover" in line or "heal" in line) + "\n"
    golden.check(GOLDEN / "leader_crash_seed4.txt", text)


def _check(history: list[dict[str, object]]) -> tuple[bool, str]:
    from manager.check.linearizable import check_history

    result = check_history(history)
    return result.ok, result.explanation
