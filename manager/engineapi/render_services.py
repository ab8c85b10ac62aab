"""Services and tasks in the Engine API's JSON: one function per kind, used by every route.

Field order and ``omitempty`` follow Docker's Go types (api/types/swarm: Service, Task), so
``docker service inspect`` and ``docker inspect TASK`` print what they print against Docker.
:func:`service_status` counts tasks exactly as swarmkit's ``ListServiceStatuses`` does (what
``docker service ls`` shows as REPLICAS). Pure: no store, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from manager.state.store import StoredObject
from manager.state.store.objects import thaw

__all__ = ["endpoint_for", "service_status", "service_to_api", "task_to_api", "task_up_to_date"]


def _dict(value: Any) -> dict[str, Any]:
    return thaw(value) if isinstance(value, dict) else {}


def endpoint_for(spec: dict[str, Any]) -> dict[str, Any]:
    """A service's Endpoint before networks are allocated: its spec and published ports.

    Swarm's allocator fills Endpoint; with no network (swarmlet allocates none yet) a service
    with no published port shows ``{"Spec": {}}`` and one with ports shows the EndpointSpec and
    the ports, as the recordings have it.
    """
    endpoint = _dict(spec.get("EndpointSpec"))
    ports = endpoint.get("Ports") or []
    if not ports:
        return {"Spec": {}}
    return {"Spec": endpoint, "Ports": [dict(p) for p in ports]}


def service_status(service: StoredObject, tasks: Iterable[StoredObject]) -> dict[str, int]:
    """ServiceStatus {RunningTasks, DesiredTasks, CompletedTasks}, as swarmkit counts them.

    Running: tasks whose last reported state is running, wherever they are (a down node's tasks
    keep theirs, hence Swarm's 6/4 while a node is down). Desired: the replicas (MaxConcurrent
    for a replicated job); for global services, the tasks whose desired state is running (or
    complete and not yet completed, for jobs). Completed: a job's tasks of the current
    iteration that completed. Job tasks of other iterations are not counted at all.
    """
    mode = _dict(service.spec.get("Mode"))
    desired = 0
    is_global = False
    if "Replicated" in mode:
        desired = int(_dict(mode["Replicated"]).get("Replicas", 0) or 0)
    elif "ReplicatedJob" in mode:
        desired = int(_dict(mode["ReplicatedJob"]).get("MaxConcurrent", 0) or 0)
    else:
        is_global = True
    job_status = service.extra.get("JobStatus")
    iteration = _dict(job_status).get("JobIteration") if isinstance(job_status, dict) else None
    running = completed = 0
    for task in tasks:
        state = task.status.get("State")
        if iteration is not None:
            # Iteration 0 is stored (and shown) as an empty JobIteration, as swarmkit's omitempty.
            task_iteration = task.extra.get("JobIteration")
            if not isinstance(task_iteration, dict):
                continue
            if int(task_iteration.get("Index", 0) or 0) != int(_dict(iteration).get("Index", 0) or 0):
                continue
            if state == "complete":
                completed += 1
        if state == "running":
            running += 1
        wants = task.extra.get("DesiredState")
        if is_global and (wants == "running" or (wants == "complete" and state != "complete")):
            desired += 1
    return {"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": completed}


def service_to_api(service: StoredObject, status: dict[str, int] | None = None) -> dict[str, Any]:
    """A Service as ``GET /services/{id}`` returns it (``status``: ServiceStatus, when asked)."""
    spec = _dict(service.spec)
    out: dict[str, Any] = {
        "ID": service.id,
        "Version": {"Index": service.version},
        "CreatedAt": service.created_at,
        "UpdatedAt": service.updated_at,
        "Spec": spec,
    }
    previous = service.extra.get("PreviousSpec")
    if isinstance(previous, dict):
        out["PreviousSpec"] = thaw(previous)
    endpoint = service.extra.get("Endpoint")
    out["Endpoint"] = thaw(endpoint) if isinstance(endpoint, dict) else endpoint_for(spec)
    update = service.extra.get("UpdateStatus")
    if isinstance(update, dict) and update:
        api_update = {k: update[k] for k in ("State", "StartedAt", "CompletedAt", "Message") if update.get(k)}
        out["UpdateStatus"] = api_update
    if status is not None:
        out["ServiceStatus"] = dict(status)
    job = service.extra.get("JobStatus")
    if isinstance(job, dict) and job:
        out["JobStatus"] = thaw(job)
    return out


def task_to_api(task: StoredObject) -> dict[str, Any]:
    """A Task as ``GET /tasks/{id}`` returns it (task-running.json's shape)."""
    annotations = _dict(task.extra.get("Annotations"))
    out: dict[str, Any] = {
        "ID": task.id,
        "Version": {"Index": task.version},
        "CreatedAt": task.created_at,
        "UpdatedAt": task.updated_at,
        # Swarm's tasks carry no name in the API (the CLI makes "web.1" itself); labels, yes.
        "Labels": annotations.get("Labels") or {},
        "Spec": _dict(task.spec),
        "ServiceID": str(task.extra.get("ServiceID") or ""),
    }
    slot = task.extra.get("Slot")
    if isinstance(slot, int) and slot:
        out["Slot"] = slot
    if task.extra.get("NodeID"):
        out["NodeID"] = str(task.extra["NodeID"])
    status = _dict(task.status)
    api_status: dict[str, Any] = {
        "Timestamp": status.get("Timestamp") or task.updated_at,
        "State": status.get("State") or "new",
        "Message": status.get("Message") or "",
    }
    if status.get("Err"):
        api_status["Err"] = status["Err"]
    if isinstance(status.get("ContainerStatus"), dict):
        api_status["ContainerStatus"] = status["ContainerStatus"]
    api_status["PortStatus"] = status.get("PortStatus") or {}
    out["Status"] = api_status
    out["DesiredState"] = str(task.extra.get("DesiredState") or "running")
    for key in ("NetworksAttachments", "GenericResources", "AssignedGenericResources", "JobIteration"):
        value = task.extra.get(key)
        if value:
            out[key] = thaw(value)
    return out


def task_up_to_date(task: StoredObject, service: StoredObject) -> bool:
    """Whether ``task`` runs its service's current spec (the CLI's ``_up-to-date`` filter).

    Docker compares the task's SpecVersion with the service's; swarmlet compares the task's Spec
    with the service's TaskTemplate, which says the same and does not depend on which write
    last bumped the service's version (the update supervisor writes UpdateStatus, too).
    """
    return _dict(task.spec) == _dict(service.spec.get("TaskTemplate"))
