"""Role changes: the pure decisions (demotion refusals, the next Raft change, the role a node is
told to run) and the node side's kept role (``DATA_DIR/role``)."""

from __future__ import annotations

import pathlib

import pytest

from manager.dispatcher.roles import (
    CANNOT_REMOVE_QUORUM_MESSAGE,
    DEMOTE_LAST_MANAGER_MESSAGE,
    NOT_IN_RAFT_MESSAGE,
    MembershipStep,
    active_peers,
    can_remove_member,
    demote_refusal,
    plan_membership,
    remove_refusal,
    session_role,
    transfer_target,
)
from nodeagent.roles import read_role_file, write_role_file

A, B, C, D, E = "a", "b", "c", "d", "e"


@pytest.mark.parametrize(
    ("voters", "member", "active", "ok"),
    [
        ((A, B, C), C, {B}, True),  # 2 left, both reachable (a is the leader itself)
        ((A, B, C), C, set(), False),  # 2 left, only the leader: no majority of 2
        ((A, B, C), A, {B, C}, True),  # the leader itself may go while the other two answer
        ((A, B, C, D), D, {B}, True),  # 3 left, a and b reachable: 2 of 3
        ((A, B, C, D), D, set(), False),
        ((A, B, C, D, E), E, {B}, False),  # 4 left need 3 reachable
        ((A, B, C, D, E), E, {B, C}, True),
        ((A, B), B, set(), True),  # the leader alone is a majority of one
        ((A, B, C), D, set(), True),  # a learner can always go
    ],
)
def test_can_remove_member_is_swarmkits_quorum_safeguard(
    voters: tuple[str, ...], member: str, active: set[str], ok: bool
) -> None:
    assert can_remove_member(voters, member, A, active) is ok


def test_demotion_refusals_come_in_swarmkits_order() -> None:
    def refusal(node: str, managers: tuple[str, ...], voters: tuple[str, ...], learners: tuple[str, ...] = (),
                active: tuple[str, ...] = ()) -> tuple[str, str] | None:
        got = demote_refusal(
            node, managers=managers, voters=voters, learners=learners, self_id=A, active=active
        )
        return None if got is None else (got.code, got.message)

    assert refusal(A, (A,), (A,)) == ("FAILED_PRECONDITION", DEMOTE_LAST_MANAGER_MESSAGE)
    assert refusal(B, (A, B), (A,)) == ("NOT_FOUND", NOT_IN_RAFT_MESSAGE)  # promoted, not in Raft yet
    assert refusal(C, (A, B, C), (A, B, C)) == ("FAILED_PRECONDITION", CANNOT_REMOVE_QUORUM_MESSAGE)
    assert refusal(C, (A, B, C), (A, B, C), active=(B,)) is None
    assert refusal(B, (A, B), (A,), learners=(B,)) is None  # a learner leaves no quorum behind
    assert refusal(A, (A, B, C), (A, B, C), active=(B, C)) is None  # the leader itself


def test_node_rm_refusals_are_swarmkits() -> None:
    x = "x" * 25
    got = remove_refusal(x, role="manager", members=(x,), state="down", force=True)
    assert got is not None and got.code == "FAILED_PRECONDITION"
    assert got.message == (
        f"rpc error: code = FailedPrecondition desc = node {x} is a cluster manager and is a "
        "member of the raft cluster. It must be demoted to worker before removal"
    )
    got = remove_refusal(x, role="worker", members=(), state="ready", force=False)
    assert got is not None
    assert got.message == (
        f"rpc error: code = FailedPrecondition desc = node {x} is not down and can't be removed"
    )
    assert remove_refusal(x, role="worker", members=(), state="ready", force=True) is None
    assert remove_refusal(x, role="worker", members=(), state="down", force=False) is None
    assert remove_refusal(x, role="manager", members=(), state="down", force=False) is None  # not in Raft


@pytest.mark.parametrize(
    ("spec_role", "member", "told"),
    [("manager", False, "manager"), ("manager", True, "manager"), ("worker", True, "manager"),
     ("worker", False, "worker")],
)
def test_a_demoted_manager_keeps_its_role_until_raft_lets_it_go(
    spec_role: str, member: bool, told: str
) -> None:
    assert session_role(spec_role, member) == told


def test_transfer_goes_to_the_reachable_voter_with_the_longest_log() -> None:
    assert transfer_target((A, B, C), A, {B: 9, C: 10}, {B, C}) == C
    assert transfer_target((A, B, C), A, {B: 10, C: 10}, {B, C}) == B  # ties: the smallest id
    assert transfer_target((A, B, C), A, {B: 9, C: 10}, {B}) == B
    assert transfer_target((A, B, C), A, {}, set()) is None


def test_plan_membership_one_change_at_a_time() -> None:
    def plan(roles: dict[str, str], voters: tuple[str, ...], learners: tuple[str, ...] = (),
             addressed: tuple[str, ...] = (), active: tuple[str, ...] = (B, C, D)) -> MembershipStep | None:
        return plan_membership(roles, voters=voters, learners=learners, self_id=A, addressed=addressed,
                               match={B: 5, C: 7, D: 7}, active=active)

    managers = {A: "manager", B: "manager", C: "manager"}
    assert plan(managers, (A, B, C)) is None
    # a promoted worker is added once its address is known, not before
    assert plan({**managers, D: "manager"}, (A, B, C)) is None
    assert plan({**managers, D: "manager"}, (A, B, C), addressed=(D,)) == MembershipStep("add", D)
    # a learner that is a manager: the shell promotes it once caught up
    assert plan({**managers, D: "manager"}, (A, B, C), learners=(D,), addressed=(D,)) is None
    # a demoted voter or learner is removed, removals before additions
    step = plan({**managers, B: "worker", D: "manager"}, (A, B, C), addressed=(D,))
    assert step == MembershipStep("remove", B)
    assert plan({**managers, D: "worker"}, (A, B, C), learners=(D,)) == MembershipStep("remove", D)
    # ... but not while it would leave no reachable majority
    assert plan({**managers, C: "worker"}, (A, B, C), active=()) is None
    # a demoted leader hands over to the best reachable voter first
    assert plan({**managers, A: "worker"}, (A, B, C)) == MembershipStep("transfer", C)
    assert plan({**managers, A: "worker"}, (A, B, C), active=()) is None
    # members without a Node object are left alone; workers that never were managers too
    assert plan({A: "manager", D: "worker"}, (A, B)) is None


def test_active_peers_are_those_heard_within_the_window() -> None:
    assert active_peers({B: 9.5, C: 8.0, D: 9.3}, 10.0, 0.8) == {B, D}


def test_the_kept_role_survives_and_refuses_nonsense(tmp_path: pathlib.Path) -> None:
    assert read_role_file(str(tmp_path)) is None
    write_role_file(str(tmp_path), "manager")
    assert read_role_file(str(tmp_path)) == "manager"
    write_role_file(str(tmp_path), "worker")
    assert read_role_file(str(tmp_path)) == "worker"
    (tmp_path / "role").write_text("admiral\n")
    assert read_role_file(str(tmp_path)) is None
