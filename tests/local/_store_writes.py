"""Writing services and tasks into a running cluster's store, for tests of the task path.

A test makes the tasks the orchestrator and scheduler would make (state ``assigned`` with a
NodeID) to pin them to a node. The leader's orchestrators run, so a service and its tasks go in
one batch (the orchestrator then finds the slots filled and adds none), and a service whose
tasks the test stops or fails on purpose asks for RestartPolicy ``none`` (nothing is replaced).
Writes go through the manager's one write path: the leader's
``/swarmlet.v1.EngineApiWrites/Write`` method on the cluster port, which the Engine API's
followers use to forward writes. Reads use the dispatcher's NodeTasks method.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from manager.engineapi.writes import WRITE_METHOD
from manager.state.store import Create, Op, Update, encode_batch, format_timestamp
from nodeagent import tls

__all__ = ["assigned_task", "node_tasks", "service", "set_desired_state", "write_ops"]


def write_ops(target: str, ops: Sequence[Op], timeout: float = 5.0) -> int:
    """Commit ``ops`` as one batch through the leader at ``target``; the index it was applied at."""
    with tls.channel(target, sync=True) as channel:
        call = channel.unary_unary(WRITE_METHOD, None, None)
        raw = call(encode_batch(list(ops), now=format_timestamp(time.time())), timeout=timeout)
    answer = json.loads(raw)
    if "error" in answer:
        raise RuntimeError(f"{answer['error']['type']}: {answer['error']['message']}")
    return int(answer["index"])


def node_tasks(target: str, node_id: str = "") -> dict[str, dict[str, Any]]:
    """The tasks of ``node_id`` (every task for "") in the store of the manager at ``target``."""
    with tls.channel(target, sync=True) as channel:
        stub = dispatcher_pb2_grpc.AssignmentsStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.NodeTasks(dispatcher_pb2.NodeTasksRequest(node_id=node_id), timeout=3.0)
    tasks = [json.loads(raw) for raw in reply.tasks]
    return {t["ID"]: t for t in tasks}


def service(
    service_id: str, name: str, container: dict[str, Any], replicas: int = 1, restart: str | None = None
) -> Create:
    """A replicated service as the Engine API would store it (defaults filled in).

    ``restart``: the RestartPolicy Condition (none, on-failure, any); None leaves it out (any)."""
    template: dict[str, Any] = {"ContainerSpec": container, "ForceUpdate": 0, "Runtime": "container"}
    if restart is not None:
        template["RestartPolicy"] = {"Condition": restart}
    spec = {
        "Name": name,
        "Labels": {},
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Mode": "vip"},
    }
    return Create("service", service_id, spec, {}, {"Endpoint": {"Spec": {"Mode": "vip"}}})


def assigned_task(task_id: str, svc: Create, slot: int, node_id: str, index: int = 1) -> Create:
    """A task as the scheduler leaves it: state assigned, on ``node_id``."""
    extra = {
        "ServiceID": svc.id,
        "Slot": slot,
        "NodeID": node_id,
        "DesiredState": "running",
        "ServiceAnnotations": {"Name": svc.spec["Name"]},
        "Annotations": {"Name": f"{svc.spec['Name']}.{slot}.{task_id}"},
        "SpecVersion": {"Index": index},
    }
    status = {
        "Timestamp": format_timestamp(time.time()),
        "State": "assigned",
        "Message": "scheduler assigned task to node",
        "PortStatus": {},
    }
    return Create("task", task_id, dict(svc.spec["TaskTemplate"]), status, extra)


def set_desired_state(target: str, task: dict[str, Any], desired: str) -> int:
    """Ask for a task's DesiredState, as the orchestrator does to stop one."""
    meta = ("ID", "Version", "CreatedAt", "UpdatedAt", "Spec", "Status")
    extra = {k: v for k, v in task.items() if k not in meta}
    extra["DesiredState"] = desired
    return write_ops(target, [Update("task", task["ID"], task["Version"]["Index"], extra=extra)])
