"""Turn a batch's decisions into store updates, for a reconcile to return as its ops.

The scheduler decides; this writes nothing, it only shapes ``Update`` ops the component shell
proposes in one batch. An assigned task gets ``NodeID`` and Status ``assigned`` with swarmkit's
message; a task left pending gets its Message and Err, and no op at all when it already shows
exactly those (a task that stays unschedulable must not cost a Raft entry per reconcile).
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.scheduler.scheduler import ASSIGNED_MESSAGE, PREASSIGNED_MESSAGE, Decisions
from manager.state.store.commands import Update
from manager.state.store.objects import StoredObject

__all__ = ["decision_ops"]


def decision_ops(tasks: Iterable[StoredObject], decisions: Decisions, timestamp: str) -> list[Update]:
    """Updates for the ``tasks`` the decisions name, stamped ``timestamp`` (RFC 3339, from ``now``)."""
    ops: list[Update] = []
    for task in sorted(tasks, key=lambda t: t.id):
        node_id = decisions.assignments.get(task.id)
        if node_id is not None:
            message = PREASSIGNED_MESSAGE if task.extra.get("NodeID") else ASSIGNED_MESSAGE
            status = {"State": "assigned", "Timestamp": timestamp, "Message": message}
            extra = {**task.extra, "NodeID": node_id}  # shallow: nested values stay frozen JSON
            ops.append(Update("task", task.id, task.version, status=status, extra=extra))
            continue
        pending = decisions.still_pending.get(task.id)
        if pending is None:
            continue
        if task.status.get("Message") == pending.message and (task.status.get("Err") or "") == pending.err:
            continue
        status = {**task.status, "State": "pending", "Timestamp": timestamp, "Message": pending.message}
        status["Err"] = pending.err
        ops.append(Update("task", task.id, task.version, status=status))
    return ops
