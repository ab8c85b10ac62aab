"""Why a task runs where it runs, or why it runs nowhere: every filter on every node.

Swarm only ever says "no suitable node (scheduling constraints not satisfied on 3 nodes)": which
constraint, on which node, and what to change is left to the user (moby#33807, moby#31555).
:func:`explain` answers that for the future ``swarmlet explain SERVICE|TASK`` command: for each
node, each filter the task asks, whether it passes, why, and what would make it pass (a label to
add, the capacity missing, the availability to change).

The task is judged as if it were being placed now: it is left out of its own node's accounting,
so a running task that fits where it is shows that node as fitting. The Err it reports is the one
the scheduler would write now for a task of that service placed alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from manager.scheduler.filters import (
    Filter,
    enabled_filters,
    explanation,
    first_failure,
    no_suitable_node,
)
from manager.scheduler.nodeinfo import build_nodes, task_needs
from manager.state.store.objects import StoredObject, freeze

__all__ = ["Check", "Explanation", "NodeReport", "explain", "explain_service"]


@dataclass(frozen=True, slots=True)
class Check:
    """One filter on one node: passed or not, the reason, and (when failed) a fix."""

    filter: str  # the filter's name: ready, resources, constraints, platform, host-ports, max-replicas
    passed: bool
    reason: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class NodeReport:
    """Every filter the task asks, on one node, in pipeline order."""

    node_id: str
    hostname: str
    checks: tuple[Check, ...]
    charged_to: str  # the first failing filter (the one Swarm counts the node under); "" if it fits

    @property
    def fits(self) -> bool:
        """Would the task be placed on this node if it were the only one?"""
        return not self.charged_to


@dataclass(frozen=True, slots=True)
class Explanation:
    """The report for one task: per node, and Swarm's own one-line summary."""

    task_id: str
    service_id: str
    nodes: tuple[NodeReport, ...]
    err: str  # "" when some node fits; else what Swarm would put in Status.Err
    notes: tuple[str, ...] = ()

    @property
    def fitting(self) -> tuple[str, ...]:
        """IDs of the nodes the task fits on."""
        return tuple(r.node_id for r in self.nodes if r.fits)

    def render(self) -> str:
        """Plain text for a terminal: a line per node and an indented line per failed filter."""
        lines = [f"task {self.task_id} (service {self.service_id})"]
        lines += [f"note: {note}" for note in self.notes]
        if self.err:
            lines.append(f"Swarm says: {self.err}")
        else:
            lines.append(f"fits on {len(self.fitting)} of {len(self.nodes)} nodes")
        for report in self.nodes:
            name = report.hostname or report.node_id
            verdict = "fits" if report.fits else f"no ({report.charged_to})"
            lines.append(f"  {name} [{report.node_id}]: {verdict}")
            for check in report.checks:
                if check.passed:
                    continue
                lines.append(f"    {check.filter}: {check.reason}")
                if check.fix:
                    lines.append(f"      to fit: {check.fix}")
        return "\n".join(lines)


def explain(
    task: StoredObject,
    nodes: Iterable[StoredObject],
    tasks: Iterable[StoredObject],
    services: Mapping[str, StoredObject] | None = None,
) -> Explanation:
    """For each node (in ID order): which filters the task passes or fails there, why, and the fix."""
    services = services or {}
    service_id = str(task.extra.get("ServiceID") or "")
    needs = task_needs(task, services.get(service_id))
    filters = enabled_filters(needs)
    infos = build_nodes(nodes, tasks, services, exclude=frozenset({task.id}))
    reports: list[NodeReport] = []
    failures: Counter[Filter] = Counter()
    for info in infos.values():
        checks = []
        for f in filters:
            reason, fix = f.diagnose(needs, info)
            passed = f.check(needs, info)
            checks.append(Check(f.name, passed, reason, "" if passed else fix))
        failed = first_failure(filters, needs, info)
        if failed is not None:
            failures[failed] += 1
        reports.append(NodeReport(info.id, info.hostname, tuple(checks), failed.name if failed else ""))
    notes = []
    if needs.constraints_invalid:
        notes.append(f"constraints do not parse ({needs.constraints_invalid}); the scheduler ignores them")
    fits_somewhere = any(r.fits for r in reports)
    err = "" if fits_somewhere else no_suitable_node(explanation(failures))
    return Explanation(task.id, service_id, tuple(reports), err, tuple(notes))


def explain_service(
    service: StoredObject,
    nodes: Iterable[StoredObject],
    tasks: Iterable[StoredObject],
    services: Mapping[str, StoredObject] | None = None,
) -> Explanation:
    """:func:`explain` for one more task of ``service``: where could a new replica go, and why not.

    For ``swarmlet explain SERVICE``: a service whose tasks all run still has an answer (where a
    replica added by ``docker service scale`` would land), and the nodes it counts already hold
    every existing task of the service.
    """
    probe = StoredObject(
        "task", f"{service.id}.explain", 0, service.created_at, service.updated_at,
        freeze(service.spec.get("TaskTemplate") or {}), freeze({"State": "pending"}),
        freeze({"ServiceID": service.id, "Slot": 0, "NodeID": "", "DesiredState": "running"}),
    )  # fmt: skip
    known = dict(services or {})
    known.setdefault(service.id, service)
    return explain(probe, nodes, tasks, known)
