"""Node liveness, as a component: heartbeats in memory, Node status decided by a pure reconcile.

The dispatcher's Session servicer only records heartbeats here (:meth:`NodeLiveness.heartbeat`),
in memory on the leader, as swarmkit's dispatcher does; gossip tells which members it found dead
or gone. The reconcile marks a node ``down`` ("heartbeat failure") once ``now`` reaches its last
heartbeat plus the grace, marks it ``ready`` again (at the addresses it reports) when it beats,
and keeps ManagerStatus true (``Leader`` on the leader's own node, ``Reachability`` of the other
managers; added once a promoted node reports its cluster address, dropped on a demotion). The
grace comes from the Cluster object: ``Spec.Dispatcher.HeartbeatPeriod`` (nanoseconds, as Docker
stores it) times :data:`GRACE_MULTIPLIER`, so a store write to the Cluster spec changes it, and
the period agents are told is the same value. A new leader first moves the nodes it has not heard
from to ``unknown`` and gives them twice that grace to find it (:data:`UNKNOWN_GRACE_MULTIPLIER`),
as swarmkit's dispatcher does, so that a leader change never moves the tasks of healthy nodes.

Every input of the decision comes in as an argument or an observation; :func:`decide` is the
pure function, :meth:`NodeLiveness.reconcile` only gathers its inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.state.store.commands import Op, Update
from manager.state.store.objects import StoredObject

__all__ = [
    "DEFAULT_HEARTBEAT_PERIOD",
    "GRACE_MULTIPLIER",
    "UNKNOWN_GRACE_MULTIPLIER",
    "Beat",
    "NodeLiveness",
    "decide",
    "heartbeat_period",
]

DEFAULT_HEARTBEAT_PERIOD = 0.5
"""Seconds between an agent's heartbeats when the Cluster spec says nothing (before the time
scale); the bootstrap manager writes it (scaled) into Spec.Dispatcher.HeartbeatPeriod."""

GRACE_MULTIPLIER = 3
"""A node is down once it has been silent for HeartbeatPeriod * GRACE_MULTIPLIER (swarmkit's
grace period multiplier): at the default period, 1.5 s."""

DOWN_MESSAGE = "heartbeat failure"
"""Status.Message of a node marked down, in swarmkit's words."""

UNKNOWN_GRACE_MULTIPLIER = 2 * GRACE_MULTIPLIER
"""How many heartbeat periods a new leader waits for a node's first heartbeat before marking it
down (swarmkit's gracePeriodMultiplierUnknown, twice the normal one): the agents' sessions were
with the old leader, and each must notice and find the new one first. At the default period, 3 s."""

UNKNOWN_MESSAGE = 'Node moved to "unknown" state due to leadership change in cluster'
"""Status.Message of a node a new leader has not heard from yet, in swarmkit's words."""

UNKNOWN_DOWN_MESSAGE = 'heartbeat failure for node in "unknown" state'
"""Status.Message of a node that never sent the new leader a heartbeat, in swarmkit's words."""


@dataclass(frozen=True)
class Beat:
    """The last heartbeat of one node: when (on the harness's clock) and the addresses it reported."""

    at: float
    addr: str = ""
    cluster_addr: str = ""


def heartbeat_period(cluster: StoredObject | None, default: float) -> float:
    """Spec.Dispatcher.HeartbeatPeriod of the Cluster object in seconds; ``default`` without one."""
    if cluster is None:
        return default
    dispatcher = cluster.spec.get("Dispatcher")
    ns = dispatcher.get("HeartbeatPeriod") if isinstance(dispatcher, dict) else None
    if isinstance(ns, bool) or not isinstance(ns, int) or ns <= 0:
        return default
    return ns / 1e9


def decide(
    nodes: Iterable[StoredObject],
    *,
    now: float,
    self_id: str,
    grace: float,
    leader_since: float,
    beats: Mapping[str, Beat],
    gone: frozenset[str],
    contacts: Mapping[str, float],
    reach_window: float,
) -> Reconciled:
    """The Node updates liveness calls for at ``now``, and when to look again.

    ``beats``: the last heartbeat of each node; ``leader_since``: when this leader started;
    ``gone``: nodes gossip declared dead or left; ``contacts``: when each manager last sent a Raft
    message; ``reach_window``: how long such a message keeps a manager reachable.

    As in swarmkit, a new leader moves every node it has not heard from yet (and that is not
    down) to ``unknown`` (:data:`UNKNOWN_MESSAGE`): the sessions were with the old leader, and
    the agents must find this one. A node that beats is ready again; one that has not beaten
    within :data:`UNKNOWN_GRACE_MULTIPLIER` periods of the leadership's start is down. Tasks stay
    where they are meanwhile: only a down node's are placed elsewhere.
    """
    ops: list[Op] = []
    wakeups: list[float] = []
    unknown_until = leader_since + grace * (UNKNOWN_GRACE_MULTIPLIER / GRACE_MULTIPLIER)
    for node in nodes:
        is_self = node.id == self_id
        state = node.status.get("State")
        status: dict[str, Any] | None = None
        extra: dict[str, Any] | None = None
        beat = beats.get(node.id)
        heard = is_self or (beat is not None and beat.at >= leader_since)
        if is_self:
            until, alive, down_message = now, True, DOWN_MESSAGE
        elif heard and beat is not None:
            until, down_message = beat.at + grace, DOWN_MESSAGE
            alive = now < until and node.id not in gone
        else:  # not heard from since this manager leads: unknown, then down
            until = unknown_until
            alive = state != "down" and now < until and node.id not in gone
            down_message = DOWN_MESSAGE if node.id in gone else UNKNOWN_DOWN_MESSAGE
        if state != "down" and not alive:  # unknown too: one beat, then silence
            status = copy.deepcopy(node.status)
            status.update({"State": "down", "Message": down_message})
        elif alive and heard and beat is not None and _stale(node, beat):
            status = copy.deepcopy(node.status)
            status.update({"State": "ready", "Message": ""})
            if beat.addr:
                status["Addr"] = beat.addr
        elif alive and not heard and (state != "unknown" or node.status.get("Message") != UNKNOWN_MESSAGE):
            status = copy.deepcopy(node.status)
            status.update({"State": "unknown", "Message": UNKNOWN_MESSAGE})
        if alive and not is_self:
            wakeups.append(until)
        ms = node.extra.get("ManagerStatus")
        role = node.spec.get("Role")
        if isinstance(ms, dict) and role == "worker":
            # Demoted: the node is no manager any more (Raft lets it go separately).
            extra = copy.deepcopy(node.extra)
            del extra["ManagerStatus"]
            ms = None
        elif ms is None and role == "manager" and beat is not None and beat.cluster_addr and alive:
            # Promoted: it runs the manager role now and says where (its cluster address).
            ms = {"Leader": False, "Reachability": "unknown", "Addr": beat.cluster_addr}
        if isinstance(ms, dict):
            want = dict(ms)
            if beat is not None and beat.cluster_addr and alive:
                want["Addr"] = beat.cluster_addr
            contact_until = contacts.get(node.id, float("-inf")) + reach_window
            reachable = is_self or now < contact_until or alive
            want["Leader"] = is_self
            want["Reachability"] = "reachable" if reachable else "unreachable"
            if reachable and not is_self and now < contact_until:
                wakeups.append(contact_until)
            if want != ms:
                extra = copy.deepcopy(node.extra)
                extra["ManagerStatus"] = want
        if status is not None or extra is not None:
            ops.append(Update("node", node.id, node.version, status=status, extra=extra))
    later = [w for w in wakeups if w > now]
    return Reconciled(ops, min(later) if later else None)


def _stale(node: StoredObject, beat: Beat) -> bool:
    """Whether the Node object disagrees with a heartbeat: not ready, or at other addresses."""
    if node.status.get("State") != "ready":
        return True
    if beat.addr and node.status.get("Addr") != beat.addr:
        return True
    ms = node.extra.get("ManagerStatus")
    return bool(beat.cluster_addr) and isinstance(ms, dict) and ms.get("Addr") != beat.cluster_addr


class NodeLiveness(Component):
    """The leader's view of which nodes live, kept in the Node objects."""

    name = "dispatcher-liveness"
    kinds = frozenset({"node", "cluster"})

    def __init__(
        self,
        self_id: str,
        *,
        default_period: float = DEFAULT_HEARTBEAT_PERIOD,
        contacts: Callable[[], Mapping[str, float]] | None = None,
        reach_window: float = 0.8,
    ) -> None:
        """``self_id``: the leader's own node (alive by definition); ``default_period``: the
        heartbeat period (seconds) while no Cluster object says otherwise; ``contacts``: when each
        manager last sent this one a Raft message (the Raft shell's ``last_contact``), on the
        harness's clock; ``reach_window``: how long such a message keeps a manager reachable."""
        super().__init__()
        self.self_id = self_id
        self.default_period = default_period
        self.contacts = contacts
        self.reach_window = reach_window
        self.beats: dict[str, Beat] = {}
        self.gone: set[str] = set()
        self.leader_since = 0.0

    # ---- observations (from the servicer and gossip) -------------------------------------------

    def heartbeat(
        self, node_id: str, now: float, addr: str = "", cluster_addr: str = "", *, period: float | None = None
    ) -> None:
        """Record a heartbeat (or a join) of ``node_id`` at ``now``.

        ``period`` is the heartbeat period in force (the servicer has just read it from the
        spec). A beat asks for a pass only when it may change the Node object: the first one,
        new addresses, after gossip called the node gone, or after a gap longer than a period
        (the node may have been marked down meanwhile); steady beats cost nothing more.
        """
        old = self.beats.get(node_id)
        self.beats[node_id] = Beat(now, addr, cluster_addr)
        was_gone = node_id in self.gone
        self.gone.discard(node_id)
        gap = self.default_period if period is None else period
        if (
            old is None
            or was_gone
            or old.addr != addr
            or old.cluster_addr != cluster_addr
            or now - old.at > gap
        ):
            self.poke(("node", node_id))

    def gossip_state(self, node_id: str, *, dead: bool) -> None:
        """Gossip says ``node_id`` is dead or gone (``dead``), or alive again."""
        if dead and node_id not in self.gone:
            self.gone.add(node_id)
            self.poke(("node", node_id))
        elif not dead:
            self.gone.discard(node_id)

    # ---- the component ---------------------------------------------------------------------------

    def period(self, view: StoreView) -> float:
        """The heartbeat period in force (seconds): the Cluster spec's."""
        return heartbeat_period(view.cluster(), self.default_period)

    def grace(self, view: StoreView) -> float:
        """How long a node may stay silent before it is marked down (seconds)."""
        return self.period(view) * GRACE_MULTIPLIER

    def start(self, view: StoreView, now: float) -> None:
        """A new leader: every node gets a fresh grace from now."""
        self.leader_since = now

    def reconcile(self, view: StoreView, dirty: frozenset[DirtyKey], now: float) -> Reconciled:
        """Decide over every node (deadlines are per node; the pass is O(nodes) and cheap)."""
        return decide(
            view.find("node"),
            now=now,
            self_id=self.self_id,
            grace=self.grace(view),
            leader_since=self.leader_since,
            beats=self.beats,
            gone=frozenset(self.gone),
            contacts=self.contacts() if self.contacts is not None else {},
            reach_window=self.reach_window,
        )
