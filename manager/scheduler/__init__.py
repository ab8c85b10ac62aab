"""The scheduler's pure core: constraints, the filter pipeline, placement, explanations.

No I/O, no clock, no randomness: functions over the store's objects that return decisions.
See docs/scheduler.md. The component that watches the store and writes the decisions wraps
:func:`schedule` and :func:`manager.scheduler.ops.decision_ops` in a reconcile.
"""

from manager.scheduler.constraint import Constraint, ConstraintError, node_matches, parse_constraints
from manager.scheduler.explain import Check, Explanation, NodeReport, explain, explain_service
from manager.scheduler.filters import FILTERS, Filter, no_suitable_node
from manager.scheduler.nodeinfo import NodeInfo, TaskNeeds, build_nodes, task_needs
from manager.scheduler.ops import decision_ops
from manager.scheduler.scheduler import (
    ASSIGNED_MESSAGE,
    PENDING_MESSAGE,
    PREASSIGNED_MESSAGE,
    Cluster,
    DecisionHook,
    Decisions,
    Pending,
    ReadView,
    schedulable,
    schedule,
)

__all__ = [
    "ASSIGNED_MESSAGE",
    "FILTERS",
    "PENDING_MESSAGE",
    "PREASSIGNED_MESSAGE",
    "Check",
    "Cluster",
    "Constraint",
    "ConstraintError",
    "DecisionHook",
    "Decisions",
    "Explanation",
    "Filter",
    "NodeInfo",
    "NodeReport",
    "Pending",
    "ReadView",
    "TaskNeeds",
    "build_nodes",
    "decision_ops",
    "explain",
    "explain_service",
    "no_suitable_node",
    "node_matches",
    "parse_constraints",
    "schedulable",
    "schedule",
    "task_needs",
]
