"""What each node is told to run, and what it reports back: the pure half of the task path.

Two decisions live here, with no I/O, clock or randomness, so the tests can drive them with
plain objects:

* :class:`NodeAssignments`: what one agent's Assignments stream has been sent. The first message
  is the complete set (every task whose NodeID is the node and whose state is at least
  ``assigned``, as swarmkit's dispatcher sends); after that only changes, computed from the store
  watch's committed changes, never from a rescan. A task leaves the set when it is deleted, moves
  to another node, or (only in theory) falls back below ``assigned``.
* Dependencies: the secrets and configs those tasks reference (ContainerSpec.Secrets and
  Configs) go with them, to that node only: each one before the first task that needs it, and
  withdrawn once no task of the node that is at most ``running`` references it (a task past
  running never mounts anything again: swarmkit releases its dependencies then too).
* :func:`status_ops`: turn a batch of reported task statuses into one batch of store updates,
  ignoring what must not be written: a state older than the stored one (reports cross on the
  wire, and a status only moves forward), a report identical to what is stored, a task deleted
  meanwhile (the reaper or a service removal won), and a task that is not this node's.

The gRPC shell around these is :mod:`manager.dispatcher.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from manager.state.store.commands import Update
from manager.state.store.objects import TASK_STATES, StoredObject
from manager.state.store.watch import Change

__all__ = [
    "ASSIGNED",
    "DEPENDENCY_KINDS",
    "RUNNING",
    "AssignmentChange",
    "NodeAssignments",
    "Report",
    "StatusDecision",
    "is_assigned_to",
    "merge_reports",
    "payload_api",
    "state_position",
    "status_ops",
    "task_dependencies",
]

ASSIGNED = TASK_STATES.index("assigned")
"""A task is given to its node from this state on (the scheduler's decision is committed)."""

DEPENDENCY_KINDS: tuple[str, ...] = ("secret", "config")
"""Kinds other than tasks that a node is sent because its tasks use them: each only to the
nodes whose assigned tasks name it."""

RUNNING = TASK_STATES.index("running")
"""A task holds its dependencies until it is past this state (it will never start again)."""

_REFERENCES = {"secret": ("Secrets", "SecretID"), "config": ("Configs", "ConfigID")}

Lookup = Callable[[str, str], StoredObject | None]
"""lookup(kind, id): the committed secret or config, or None when there is none."""


def task_dependencies(task: StoredObject) -> list[tuple[str, str]]:
    """The (kind, id) of every secret and config ``task``'s ContainerSpec references, in order.

    A config reference with a Runtime target (a credential spec) is a dependency too: the
    runtime reads it, even if nothing mounts it as a file.
    """
    container = task.spec.get("ContainerSpec")
    if not isinstance(container, Mapping):
        return []
    out: list[tuple[str, str]] = []
    for kind, (list_key, id_key) in _REFERENCES.items():
        refs = container.get(list_key)
        for ref in refs if isinstance(refs, (list, tuple)) else ():
            ref_id = ref.get(id_key) if isinstance(ref, Mapping) else None
            if isinstance(ref_id, str) and ref_id and (kind, ref_id) not in out:
                out.append((kind, ref_id))
    return out


def payload_api(obj: StoredObject) -> dict[str, Any]:
    """What a node is sent of a secret or config: ``{ID, Spec: {Name, Data, Templating}}``, Data
    as base64 as in the Engine API, Templating only when set. Labels, versions and times are not
    the node's business."""
    spec: dict[str, Any] = {"Name": obj.spec.get("Name", ""), "Data": obj.spec.get("Data", "")}
    if obj.spec.get("Templating"):
        spec["Templating"] = dict(obj.spec["Templating"])
    return {"ID": obj.id, "Spec": spec}


def state_position(state: Any) -> int:
    """Where a task state stands in TASK_STATES; -1 for something that is not a state."""
    return TASK_STATES.index(state) if isinstance(state, str) and state in TASK_STATES else -1


def is_assigned_to(task: StoredObject, node_id: str) -> bool:
    """Whether ``task`` belongs in ``node_id``'s assignments: its node, and assigned or later."""
    return task.extra.get("NodeID") == node_id and state_position(task.status.get("State")) >= ASSIGNED


@dataclass(frozen=True)
class AssignmentChange:
    """One line of an assignments message: an object to (re)send whole, or one to forget."""

    action: str  # "update" | "remove"
    kind: str  # "task", "secret" or "config"
    id: str
    object: StoredObject | None = None  # the object for "update"

    __hash__ = None  # type: ignore[assignment]  # holds a StoredObject, which holds dicts


@dataclass
class NodeAssignments:
    """What one node's stream has been sent, as (kind, id) -> the version sent.

    ``complete`` starts (or restarts) the set; ``incremental`` takes committed store changes in
    commit order and returns only what the node must hear. Changes of tasks that were never
    sent and are not this node's are ignored, so the caller may hand over more than it routed.
    ``lookup(kind, id)`` reads a secret or config when a task first needs it on this node (the
    store's committed object; None when it is gone, and then nothing is sent for it).
    """

    node_id: str
    lookup: Lookup | None = None
    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    _objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict, repr=False)

    def complete(self, tasks: Iterable[StoredObject]) -> list[AssignmentChange]:
        """The whole set from the node's tasks (as ``Store.find("task", node_id=...)`` gives):
        the dependencies first, so every task arrives after what it mounts."""
        self.sent.clear()
        self._objects.clear()
        out: list[AssignmentChange] = []
        for task in tasks:
            if is_assigned_to(task, self.node_id):
                self.sent[("task", task.id)] = task.version
                self._objects[("task", task.id)] = task
                out.append(AssignmentChange("update", "task", task.id, task))
        added, removed = self._dependencies()
        return [*added, *out, *removed]

    def incremental(self, changes: Iterable[Change]) -> list[AssignmentChange]:
        """What changed for this node in ``changes``; each object at most once, in first-seen
        order, with new dependencies before the tasks and withdrawn ones after them."""
        latest: dict[tuple[str, str], Change] = {}
        for change in changes:
            if change.kind == "task":
                latest[("task", change.object.id)] = change  # dicts keep first insertion order
        out: list[AssignmentChange] = []
        for key, change in latest.items():
            task = change.object
            was_sent = key in self.sent
            if change.action != "remove" and is_assigned_to(task, self.node_id):
                if self.sent.get(key) != task.version:
                    before = self._objects.get(key)
                    self.sent[key] = task.version
                    self._objects[key] = task
                    if not _only_status_moved(before, task):
                        out.append(AssignmentChange("update", "task", task.id, task))
            elif was_sent:
                del self.sent[key]
                self._objects.pop(key, None)
                out.append(AssignmentChange("remove", "task", task.id))
        added, removed = self._dependencies()
        return [*added, *out, *removed]

    def needed(self) -> list[tuple[str, str]]:
        """The dependencies of the sent tasks that may still start or run here (state at most
        running), in task order."""
        out: dict[tuple[str, str], None] = {}
        for (kind, _id), task in self._objects.items():
            if kind == "task" and state_position(task.status.get("State")) <= RUNNING:
                out.update(dict.fromkeys(task_dependencies(task)))
        return list(out)

    def _dependencies(self) -> tuple[list[AssignmentChange], list[AssignmentChange]]:
        """Secrets and configs to send (new to this node) and to withdraw (no task here uses
        them any more). A dependency is read once, when it is first needed: its data never
        changes (only labels may, which the node does not need)."""
        needed = self.needed()
        added: list[AssignmentChange] = []
        for key in needed:
            if key in self.sent:
                continue
            obj = self.lookup(*key) if self.lookup is not None else None
            if obj is None:
                continue  # gone (or no store to read): the task fails to start, as in swarmkit
            self.sent[key] = obj.version
            self._objects[key] = obj
            added.append(AssignmentChange("update", key[0], obj.id, obj))
        keep = set(needed)
        removed: list[AssignmentChange] = []
        for key in [k for k in self.sent if k[0] in DEPENDENCY_KINDS and k not in keep]:
            del self.sent[key]
            self._objects.pop(key, None)
            removed.append(AssignmentChange("remove", key[0], key[1]))
        return added, removed


def _only_status_moved(before: StoredObject | None, after: StoredObject) -> bool:
    """Whether only Status changed, past assigned: the agent's own report coming back (swarmkit
    skips those too; the agent already knows what it reported)."""
    return (
        before is not None
        and before.spec == after.spec
        and before.extra == after.extra
        and state_position(after.status.get("State")) > ASSIGNED
    )


@dataclass(frozen=True)
class Report:
    """One status report: the node that sent it, the task, and the Status as the agent saw it."""

    node_id: str
    task_id: str
    status: Mapping[str, Any]


def merge_reports(pending: dict[str, Report], report: Report) -> None:
    """Keep, per task, the report that is furthest along (the newer one when equally far)."""
    held = pending.get(report.task_id)
    if held is None or state_position(report.status.get("State")) >= state_position(held.status.get("State")):
        pending[report.task_id] = report


@dataclass
class StatusDecision:
    """What a batch of reports comes to: the updates to write and what was left out, and why."""

    ops: list[Update] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # task IDs, in the order of ``ops``
    ignored: dict[str, str] = field(default_factory=dict)  # task ID -> reason


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "Timestamp"}


def status_ops(get_task: Callable[[str], StoredObject | None], reports: Iterable[Report]) -> StatusDecision:
    """One store batch for ``reports``: an Update of Status per task that moves forward.

    Ignored, with the reason recorded: "deleted" (no such task any more), "foreign" (its NodeID
    is another node's), "invalid" (not a task state), "stale" (behind the stored state), and
    "unchanged" (the stored status already says the same, its timestamp aside).
    """
    decision = StatusDecision()
    for report in reports:
        task = get_task(report.task_id)
        new_pos = state_position(report.status.get("State"))
        if task is None:
            decision.ignored[report.task_id] = "deleted"
        elif task.extra.get("NodeID") != report.node_id:
            decision.ignored[report.task_id] = "foreign"
        elif new_pos < 0:
            decision.ignored[report.task_id] = "invalid"
        elif new_pos < state_position(task.status.get("State")):
            decision.ignored[report.task_id] = "stale"
        elif _comparable(report.status) == _comparable(task.status):
            decision.ignored[report.task_id] = "unchanged"
        else:
            decision.ops.append(Update("task", task.id, task.version, status=dict(report.status)))
            decision.written.append(task.id)
    return decision
