"""The orchestrators: desired state (services) reconciled with actual state (tasks).

Components on the template in :mod:`manager.component`, run on the leader only:

* :class:`ReplicatedOrchestrator` (replicated services), :class:`GlobalOrchestrator` (global),
  :class:`ReplicatedJobOrchestrator` and :class:`GlobalJobOrchestrator` (jobs), all built on
  :class:`ServiceOrchestrator` and the restart supervisor (:mod:`manager.orchestrator.restart`);
* :class:`UpdateSupervisor`: rolling updates and rollbacks (:mod:`manager.orchestrator.update`);
* :class:`TaskReaper`: the task history Swarm does not keep.

See docs/orchestrator.md.
"""

from manager.orchestrator.base import MAX_OPS_PER_PASS, Context, Plan, ServiceOrchestrator
from manager.orchestrator.global_service import GlobalOrchestrator
from manager.orchestrator.jobs import GlobalJobOrchestrator, ReplicatedJobOrchestrator
from manager.orchestrator.replicated import ReplicatedOrchestrator
from manager.orchestrator.restart import DEFAULT_DELAY, OLD_TASK_TIMEOUT, RestartPolicy, restart_policy
from manager.orchestrator.taskreaper import DEFAULT_RETENTION, TaskReaper
from manager.orchestrator.update import UpdateSupervisor

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_RETENTION",
    "MAX_OPS_PER_PASS",
    "OLD_TASK_TIMEOUT",
    "Context",
    "GlobalJobOrchestrator",
    "GlobalOrchestrator",
    "Plan",
    "ReplicatedJobOrchestrator",
    "ReplicatedOrchestrator",
    "RestartPolicy",
    "ServiceOrchestrator",
    "TaskReaper",
    "UpdateSupervisor",
    "restart_policy",
]
