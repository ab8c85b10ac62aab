"""What the web view shows, computed from the store and what the manager observes: no I/O.

The page draws one column per node and one card per task, as the swarm visualizer does, and
colours nodes by what a user acts on: ``ready``, ``down``, ``drain`` (or paused) and ``unknown``.
:func:`cluster_state` builds that picture as JSON from store objects and the facts the shell
gathered (the Raft leader and term, this manager's gossip view, the other nodes' views);
:class:`ChangeDescriber` turns committed store changes into the timeline's sentences. Both are
pure, so the shell (:mod:`manager.web.server`) only reads, calls and sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from manager.scheduler.explain import explain
from manager.state.store.objects import StoredObject
from manager.state.store.watch import Change

__all__ = [
    "ACTIVE_TASK_STATES",
    "ChangeDescriber",
    "Facts",
    "TimelineEvent",
    "cluster_state",
    "node_colour",
    "task_name",
]

# A task is drawn on its node while it is in one of these states (later ones are history: the
# timeline tells them).
ACTIVE_TASK_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)
# The task states the timeline tells (the steps in between, accepted to starting, take
# milliseconds and would drown the rest).
_TOLD_TASK_STATES = frozenset(
    {"pending", "assigned", "running", "complete", "shutdown", "failed", "rejected", "orphaned"}
)
# At most this many pending tasks are explained per state (explain walks every node).
_EXPLAINED = 20


@dataclass(frozen=True)
class TimelineEvent:
    """One line of the timeline: what happened, about which node, of which kind.

    ``kind`` is one of node, task, service, raft, gossip, fault; ``level`` is info, warn or bad
    (the page colours them).
    """

    kind: str
    text: str
    node: str = ""
    level: str = "info"


@dataclass(frozen=True)
class Facts:
    """What the shell observed outside the store, at one moment."""

    self_id: str
    self_hostname: str
    raft_role: str
    leader_id: str
    term: int
    time_scale: float = 1.0
    gossip: Mapping[str, str] = field(default_factory=dict)
    """This manager's gossip view: node id -> alive, suspect, dead or left."""
    views: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Other nodes' views, by node id: ``{"ok": bool, "members": {id: state}, "health": int,
    "faults": [rule...], "error": str}`` as the shell last fetched them."""


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _hostname(node: StoredObject) -> str:
    desc = _dict(node.extra.get("Description"))
    return str(desc.get("Hostname") or node.spec.get("Name") or node.id[:12])


def node_colour(state: str, availability: str) -> str:
    """The colour class of a node: down (red) beats drain (amber) beats ready (green)."""
    if state in ("down", "disconnected"):
        return "down"
    if state != "ready":
        return "unknown"
    if availability in ("drain", "pause"):
        return "drain"
    return "ready"


def task_name(task: StoredObject, services: Mapping[str, StoredObject]) -> str:
    """``service.slot`` as ``docker service ps`` prints it (``service.nodeid`` for a global task)."""
    if isinstance(task.extra.get("Name"), str) and task.extra["Name"]:
        return str(task.extra["Name"])
    service = services.get(str(task.extra.get("ServiceID") or ""))
    base = service.name if service is not None else str(task.extra.get("ServiceID") or "task")[:12]
    slot = task.extra.get("Slot")
    return f"{base}.{slot}" if slot else f"{base}.{task.extra.get('NodeID') or task.id[:12]}"


def _task_card(task: StoredObject, services: Mapping[str, StoredObject]) -> dict[str, Any]:
    status = _dict(task.status)
    spec = _dict(task.spec)
    container = _dict(spec.get("ContainerSpec"))
    return {
        "id": task.id,
        "name": task_name(task, services),
        "service": str(task.extra.get("ServiceID") or ""),
        "image": str(container.get("Image") or "").split("@")[0],
        "state": str(status.get("State") or "new"),
        "desired": str(task.extra.get("DesiredState") or ""),
        "message": str(status.get("Message") or ""),
        "err": str(status.get("Err") or ""),
    }


def cluster_state(
    nodes: Sequence[StoredObject],
    tasks: Sequence[StoredObject],
    services: Mapping[str, StoredObject],
    facts: Facts,
) -> dict[str, Any]:
    """The whole picture the page draws, as JSON (``GET /api/state`` and the SSE ``state`` event)."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    pending: list[StoredObject] = []
    for task in tasks:
        state = str(_dict(task.status).get("State") or "new")
        if state not in ACTIVE_TASK_STATES:
            continue
        node_id = str(task.extra.get("NodeID") or "")
        if node_id:
            by_node.setdefault(node_id, []).append(_task_card(task, services))
        elif state in ("new", "pending"):
            pending.append(task)
    names = {n.id: _hostname(n) for n in nodes}
    columns = []
    for node in nodes:
        status = _dict(node.status)
        state = str(status.get("State") or "unknown")
        availability = str(node.spec.get("Availability") or "active")
        manager = node.extra.get("ManagerStatus")
        view = facts.views.get(node.id)
        if node.id == facts.self_id:
            view = {"ok": True, "members": dict(facts.gossip), "source": "self"}
        columns.append({
            "id": node.id,
            "hostname": names[node.id],
            "role": str(node.spec.get("Role") or "worker"),
            "state": state,
            "availability": availability,
            "colour": node_colour(state, availability),
            "message": str(status.get("Message") or ""),
            "addr": str(status.get("Addr") or ""),
            "manager": isinstance(manager, Mapping),
            "reachability": str(_dict(manager).get("Reachability") or ""),
            "leader": node.id == facts.leader_id,
            "self": node.id == facts.self_id,
            "gossip": facts.gossip.get(node.id, "unknown"),
            "view": _view_json(view, names),
            "tasks": sorted(by_node.get(node.id, []), key=lambda t: (t["name"], t["id"])),
        })  # fmt: skip
    columns.sort(key=lambda c: (not c["manager"], c["hostname"]))
    return {
        "self": {"id": facts.self_id, "hostname": facts.self_hostname, "raft_role": facts.raft_role},
        "leader": {"id": facts.leader_id, "hostname": names.get(facts.leader_id, facts.leader_id[:12])}
        if facts.leader_id else None,
        "term": facts.term,
        "time_scale": facts.time_scale,
        "nodes": columns,
        "pending": _pending(pending, nodes, tasks, services),
    }


def _view_json(view: Mapping[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any]:
    """A node's membership view with hostnames: who it believes alive, suspect, dead or left."""
    if view is None:
        return {"ok": False, "error": "not asked yet", "members": []}
    members = _dict(view.get("members"))
    out = {
        "ok": bool(view.get("ok")),
        "error": str(view.get("error") or ""),
        "members": sorted(
            ({"id": k, "hostname": names.get(k, k[:12]), "state": str(v)} for k, v in members.items()),
            key=lambda m: m["hostname"],
        ),
        "faults": list(view.get("faults") or []),
    }
    if "health" in view:
        out["health"] = view["health"]
    return out


def fault_text(rule: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """One link fault rule (as :func:`manager.web.peers.rule_json` gives it) in a few words, its
    peers by hostname: ``cut from manager2``, ``delay 200ms, loss 10% to every peer``.

    ``names`` maps node ids and addresses (bare or ``host:port``) to hostnames; a rule names a
    node by hostname, and the agent adds its addresses beside it.
    """
    peers: list[str] = []
    for peer in rule.get("peers") or []:
        peer = str(peer)
        name = names.get(peer) or names.get(peer.rpartition(":")[0]) or peer
        if name not in peers:
            peers.append(name)
    who = ", ".join(peers) if peers else "every peer"
    if rule.get("partition"):
        return f"cut from {who}"
    parts = []
    if rule.get("delay"):
        parts.append(f"delay {float(rule['delay']) * 1000:g}ms")
    if rule.get("drop"):
        parts.append(f"loss {float(rule['drop']) * 100:g}%")
    if rule.get("duplicate"):
        parts.append(f"duplicate {float(rule['duplicate']) * 100:g}%")
    return f"{', '.join(parts) or 'no fault'} to {who}"


def fault_changes(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]],
                  names: Mapping[str, str]) -> list[TimelineEvent]:
    """Timeline events for the link faults that changed between two fetches of the nodes' views
    (by node id), wherever they were set from (the page, ``swarmlet chaos``, a test)."""
    events = []
    for node_id, view in after.items():
        old = before.get(node_id)
        if not view.get("ok") or old is None or not old.get("ok"):
            continue
        was, now = list(old.get("faults") or []), list(view.get("faults") or [])
        if was == now:
            continue
        hostname = names.get(node_id, node_id[:12])
        if now:
            text = f"{hostname}: " + "; ".join(fault_text(r, names) for r in now)
            events.append(TimelineEvent("fault", text, node_id, "warn"))
        else:
            events.append(TimelineEvent("fault", f"{hostname}: links healed", node_id, "info"))
    return events


def _pending(
    pending: Sequence[StoredObject],
    nodes: Sequence[StoredObject],
    tasks: Sequence[StoredObject],
    services: Mapping[str, StoredObject],
) -> list[dict[str, Any]]:
    out = []
    for i, task in enumerate(sorted(pending, key=lambda t: task_name(t, services))):
        card = _task_card(task, services)
        if i < _EXPLAINED:
            why = explain(task, nodes, tasks, services)
            card["explain"] = [
                {"hostname": r.hostname or r.node_id[:12], "fits": r.fits,
                 "reasons": [c.reason for c in r.checks if not c.passed],
                 "fixes": [c.fix for c in r.checks if not c.passed and c.fix]}
                for r in why.nodes
            ]  # fmt: skip
            if not card["err"]:
                card["err"] = why.err
        out.append(card)
    return out


class ChangeDescriber:
    """Turns committed store changes into timeline events, remembering what each object was.

    Only transitions are told: a node's state, availability or role changing, a task's state
    changing (with its Err when it failed), a service created, updated or removed. A write that
    changes nothing a user sees (a heartbeat's timestamp, a version bump) says nothing.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[str, ...]] = {}
        self._services: dict[str, StoredObject] = {}
        self._hostnames: dict[str, str] = {}

    def prime(self, objects: Iterable[StoredObject]) -> None:
        """Remember ``objects`` as they are now, so that only later changes are told."""
        for obj in objects:
            self._remember(obj)

    def _remember(self, obj: StoredObject) -> tuple[str, ...]:
        key = (obj.kind, obj.id)
        if obj.kind == "node":
            self._hostnames[obj.id] = _hostname(obj)
            summary: tuple[str, ...] = (
                str(_dict(obj.status).get("State") or "unknown"),
                str(obj.spec.get("Availability") or "active"),
                str(obj.spec.get("Role") or "worker"),
            )
        elif obj.kind == "task":
            status = _dict(obj.status)
            summary = (str(status.get("State") or "new"), str(obj.extra.get("NodeID") or ""))
        elif obj.kind == "service":
            self._services[obj.id] = obj
            summary = (str(obj.version),)
        else:
            summary = ()
        before = self._seen.get(key, ())
        self._seen[key] = summary
        return before

    def describe(self, change: Change) -> list[TimelineEvent]:
        """The events one committed change makes (often none)."""
        obj = change.object
        if change.action == "remove":
            self._seen.pop((obj.kind, obj.id), None)
            if obj.kind == "node":
                return [TimelineEvent("node", f"{_hostname(obj)} removed from the swarm", obj.id, "warn")]
            if obj.kind == "service":
                self._services.pop(obj.id, None)
                return [TimelineEvent("service", f"service {obj.name} removed")]
            return []
        before = self._remember(obj)
        if obj.kind == "node":
            return self._node(obj, before, change.action)
        if obj.kind == "task":
            return self._task(obj, before)
        if obj.kind == "service":
            verb = "created" if change.action == "create" else "updated"
            return [TimelineEvent("service", f"service {obj.name} {verb}")]
        return []

    def _node(self, node: StoredObject, before: tuple[str, ...], action: str) -> list[TimelineEvent]:
        name = _hostname(node)
        state, availability, role = self._seen[("node", node.id)]
        if action == "create" or not before:
            return [TimelineEvent("node", f"{name} joined as a {role}", node.id)]
        events = []
        if before[0] != state:
            message = str(_dict(node.status).get("Message") or "")
            level = "bad" if state in ("down", "disconnected") else "info"
            text = f"{name} is {state}" + (f" ({message})" if message and level == "bad" else "")
            events.append(TimelineEvent("node", text, node.id, level))
        if before[1] != availability:
            events.append(TimelineEvent("node", f"{name} availability {availability}", node.id,
                                        "warn" if availability != "active" else "info"))
        if before[2] != role:
            verb = "promoted to manager" if role == "manager" else "demoted to worker"
            events.append(TimelineEvent("node", f"{name} {verb}", node.id))
        return events

    def _task(self, task: StoredObject, before: tuple[str, ...]) -> list[TimelineEvent]:
        state, node_id = self._seen[("task", task.id)]
        if (before and before[0] == state and before[1] == node_id) or state not in _TOLD_TASK_STATES:
            return []
        name = task_name(task, self._services)
        where = f" on {self._hostnames.get(node_id, node_id[:12])}" if node_id else ""
        err = str(_dict(task.status).get("Err") or "")
        level = "bad" if state in ("failed", "rejected", "orphaned") else "info"
        if state == "pending" and err:
            level = "warn"
        text = f"task {name} {state}{where}" + (f": {err}" if err else "")
        return [TimelineEvent("task", text, node_id, level)]
