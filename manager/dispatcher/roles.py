"""Role changes (``docker node promote`` / ``demote``): the decisions, as pure functions.

A node's role is its Node object's ``Spec.Role``; a manager's Raft membership follows it. Three
parties act on a change, each through one of these functions:

* the control API decides whether a demotion may be written at all (:func:`demote_refusal`,
  swarmkit's checks in ``controlapi/node.go`` with its words);
* the leader's membership pass moves Raft one change at a time towards the roles in the store
  (:func:`plan_membership`): a manager missing from Raft is added as a learner (and promoted by
  the shell once caught up), a demoted member is removed, and a demoted leader first hands its
  leadership over;
* the leader tells each agent, with every heartbeat answer, which role to run
  (:func:`session_role`): a demoted manager keeps running its manager role until Raft has let
  it go, so that it never leaves a quorum it still counts in.

Nothing here reads a clock, the store or the network: callers pass what they observed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

__all__ = [
    "CANNOT_REMOVE_QUORUM_MESSAGE",
    "DEMOTE_LAST_MANAGER_MESSAGE",
    "NOT_IN_RAFT_MESSAGE",
    "REMOVE_MANAGER_MESSAGE",
    "REMOVE_NOT_DOWN_MESSAGE",
    "MembershipStep",
    "Refusal",
    "active_peers",
    "can_remove_member",
    "demote_refusal",
    "plan_membership",
    "remove_refusal",
    "session_role",
    "transfer_target",
]

DEMOTE_LAST_MANAGER_MESSAGE = (
    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"
)
"""What Docker prints after "Error response from daemon: " for demoting the only manager."""

NOT_IN_RAFT_MESSAGE = "rpc error: code = NotFound desc = can't find manager in raft memberlist"
"""Demoting a manager that has not joined Raft yet (a promotion still under way), Swarm's words."""

CANNOT_REMOVE_QUORUM_MESSAGE = (
    "rpc error: code = FailedPrecondition desc = can't remove member from the raft: "
    "this would result in a loss of quorum"
)
"""Demoting a manager when the managers left reachable would be no majority (swarmkit's
``CanRemoveMember`` safeguard)."""

REMOVE_MANAGER_MESSAGE = (
    "rpc error: code = FailedPrecondition desc = node {node_id} is a cluster manager and is a member "
    "of the raft cluster. It must be demoted to worker before removal"
)
"""``docker node rm`` of a manager, Swarm's words (``{node_id}`` is the full node id)."""

REMOVE_NOT_DOWN_MESSAGE = (
    "rpc error: code = FailedPrecondition desc = node {node_id} is not down and can't be removed"
)
"""``docker node rm`` without ``--force`` of a node that is up, swarmkit's words."""


@dataclass(frozen=True)
class Refusal:
    """A role change that may not be made: the gRPC status code's name and Docker's message."""

    code: str
    """``FAILED_PRECONDITION`` or ``NOT_FOUND`` (grpc.StatusCode member names)."""
    message: str
    """What Docker prints after "Error response from daemon: "."""


def active_peers(last_contact: Mapping[str, float], now: float, window: float) -> set[str]:
    """The peers heard from within ``window`` seconds before ``now`` (all on one clock)."""
    return {peer for peer, at in last_contact.items() if now - at < window}


def can_remove_member(voters: Collection[str], member: str, self_id: str, active: Collection[str]) -> bool:
    """Whether Raft keeps a reachable majority once ``member`` is gone (swarmkit's CanRemoveMember).

    ``active`` are the voters this manager (the leader, ``self_id``) heard from recently. After
    the removal there are ``len(voters) - 1`` voters, whose majority must still be reachable,
    counting this manager itself. A non-voter (a learner) can always go.
    """
    if member not in voters:
        return True
    remaining = [v for v in voters if v != member]
    reachable = sum(1 for v in remaining if v == self_id or v in active)
    return reachable >= len(remaining) // 2 + 1


def demote_refusal(
    node_id: str,
    *,
    managers: Collection[str],
    voters: Collection[str],
    learners: Collection[str],
    self_id: str,
    active: Collection[str],
) -> Refusal | None:
    """Why manager ``node_id`` may not be demoted now, or None: swarmkit's three checks, in order.

    ``managers``: the nodes whose Spec.Role is manager; ``voters`` / ``learners``: Raft's
    configuration as the leader (``self_id``) has it; ``active``: voters it heard from recently.
    """
    if set(managers) <= {node_id}:
        return Refusal("FAILED_PRECONDITION", DEMOTE_LAST_MANAGER_MESSAGE)
    if node_id not in voters and node_id not in learners:
        return Refusal("NOT_FOUND", NOT_IN_RAFT_MESSAGE)
    if not can_remove_member(voters, node_id, self_id, active):
        return Refusal("FAILED_PRECONDITION", CANNOT_REMOVE_QUORUM_MESSAGE)
    return None


def remove_refusal(
    node_id: str, *, role: str, members: Collection[str], state: str, force: bool
) -> Refusal | None:
    """Why ``docker node rm`` may not remove the node, or None: a manager still in Raft must be
    demoted first (force or not); a node that is not down goes only with force."""
    if role == "manager" and node_id in members:
        return Refusal("FAILED_PRECONDITION", REMOVE_MANAGER_MESSAGE.format(node_id=node_id))
    if not force and state == "ready":
        return Refusal("FAILED_PRECONDITION", REMOVE_NOT_DOWN_MESSAGE.format(node_id=node_id))
    return None


def session_role(spec_role: str, member: bool) -> str:
    """The role the leader tells a node to run: its Spec.Role, except that a demoted manager
    keeps its manager role while it is still a Raft member (voter or learner)."""
    if spec_role == "manager" or member:
        return "manager"
    return "worker"


def transfer_target(
    voters: Collection[str], self_id: str, match: Mapping[str, int], active: Collection[str]
) -> str | None:
    """The voter a leader being demoted should hand leadership to: a reachable one with the
    longest log (ties: the smallest id, so every pass picks the same one); None if none is reachable."""
    candidates = [v for v in voters if v != self_id and v in active]
    if not candidates:
        return None
    return min(candidates, key=lambda v: (-match.get(v, 0), v))


@dataclass(frozen=True)
class MembershipStep:
    """The next Raft change the leader should make (at most one change is in flight at a time)."""

    action: str
    """``remove``, ``transfer`` (leadership, to ``node_id``) or ``add`` (as a learner)."""
    node_id: str


def plan_membership(
    roles: Mapping[str, str],
    *,
    voters: Collection[str],
    learners: Collection[str],
    self_id: str,
    addressed: Collection[str],
    match: Mapping[str, int],
    active: Collection[str],
) -> MembershipStep | None:
    """The one membership change that moves Raft towards the roles in the store, or None.

    ``roles``: Spec.Role of every Node object by id (members without a Node object are left
    alone); ``addressed``: nodes whose cluster address the leader knows (a manager is added only
    once it can be reached); ``match``: each member's replicated log index; ``active``: voters
    heard from recently. Removals come first, each only while a reachable majority remains; a
    demoted leader hands its leadership to the best voter instead of removing itself. Learners
    that are managers are promoted by the shell as they catch up (not a step here).
    """
    for member in sorted(set(voters) | set(learners)):
        if roles.get(member, "manager") != "worker":
            continue
        if member == self_id:
            target = transfer_target(voters, self_id, match, active)
            if target is not None:
                return MembershipStep("transfer", target)
            continue
        if can_remove_member(voters, member, self_id, active):
            return MembershipStep("remove", member)
    for node_id in sorted(roles):
        joined = node_id in voters or node_id in learners
        if roles[node_id] == "manager" and not joined and node_id in addressed:
            return MembershipStep("add", node_id)
    return None
