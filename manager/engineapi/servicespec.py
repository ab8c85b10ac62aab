"""A ServiceSpec as the daemon takes it: decoded as Go would, checked in Swarm's order, defaults filled.

``POST /services/create`` and ``/services/{id}/update`` read the body into :data:`SERVICE_SPEC`
(Docker's swarm.ServiceSpec: the parts Swarm acts on are typed, so a wrong type is Go's 400; in
the ContainerSpec only the secret and config references are typed, and it and the other parts
swarmlet keeps without reading are otherwise taken as given). Then
:func:`check_spec` refuses what moby's conversion and swarmkit's controlapi refuse, with their
words and status, and :func:`with_defaults` fills what swarmkit's ``defaults.InterpolateService``
and moby's conversion fill, so the stored Spec is the one ``docker service inspect`` shows (the
shared contract: orchestrators read the defaults from the Spec). All of it is pure.
"""

from __future__ import annotations

import copy
from typing import Any

from manager.engineapi.base import rpc_message
from manager.engineapi.servicerefs import check_conversion, check_references
from manager.scheduler.constraint import ConstraintError, parse_constraints
from manager.state.store.validate import check_create
from nodeagent.engineapi import ApiError
from nodeagent.engineapi.gojson import (
    ANY,
    STRING,
    UINT64,
    GoType,
    map_of,
    open_struct,
    scalar,
    slice_of,
    struct,
)

__all__ = ["DEFAULT_UPDATE_CONFIG", "SERVICE_SPEC", "check_spec", "with_defaults"]

_DURATION = scalar("time.Duration", "int")
_UPDATE_CONFIG = struct(
    "swarm.UpdateConfig",
    Parallelism=UINT64,
    Delay=_DURATION,
    FailureAction=STRING,
    Monitor=_DURATION,
    MaxFailureRatio=scalar("float32", "float"),
    Order=STRING,
)
_PLACEMENT = struct(
    "swarm.Placement",
    Constraints=slice_of(STRING),
    Preferences=ANY,
    MaxReplicas=UINT64,
    Platforms=ANY,
)
_RESTART = struct(
    "swarm.RestartPolicy",
    Condition=scalar("swarm.RestartPolicyCondition", "string"),
    Delay=_DURATION,
    MaxAttempts=UINT64,
    Window=_DURATION,
)
def _file_target(name: str) -> GoType:
    return struct(name, Name=STRING, UID=STRING, GID=STRING, Mode=scalar("fs.FileMode", "uint"))


# The references are typed (Go's errors name them); the rest of a ContainerSpec is kept as given.
_CONTAINER_SPEC = open_struct(
    "swarm.ContainerSpec",
    Secrets=slice_of(struct(
        "*swarm.SecretReference",
        File=_file_target("*swarm.SecretReferenceFileTarget"),
        SecretID=STRING,
        SecretName=STRING,
    )),
    Configs=slice_of(struct(
        "*swarm.ConfigReference",
        File=_file_target("*swarm.ConfigReferenceFileTarget"),
        Runtime=struct("*swarm.ConfigReferenceRuntimeTarget"),
        ConfigID=STRING,
        ConfigName=STRING,
    )),
)
_TASK_SPEC = struct(
    "swarm.TaskSpec",
    ContainerSpec=_CONTAINER_SPEC,
    PluginSpec=ANY,
    NetworkAttachmentSpec=ANY,
    Resources=ANY,
    RestartPolicy=_RESTART,
    Placement=_PLACEMENT,
    Networks=ANY,
    LogDriver=ANY,
    ForceUpdate=UINT64,
    Runtime=scalar("swarm.RuntimeType", "string"),
)
_MODE = struct(
    "swarm.ServiceMode",
    Replicated=struct("swarm.ReplicatedService", Replicas=UINT64),
    Global=struct("swarm.GlobalService"),
    ReplicatedJob=struct("swarm.ReplicatedJob", MaxConcurrent=UINT64, TotalCompletions=UINT64),
    GlobalJob=struct("swarm.GlobalJob"),
)
_PORT = struct(
    "swarm.PortConfig",
    Name=STRING,
    Protocol=STRING,
    TargetPort=scalar("uint32", "uint"),
    PublishedPort=scalar("uint32", "uint"),
    PublishMode=STRING,
)
SERVICE_SPEC = struct(
    "swarm.ServiceSpec",
    Name=STRING,
    Labels=map_of(STRING),
    TaskTemplate=_TASK_SPEC,
    Mode=_MODE,
    UpdateConfig=_UPDATE_CONFIG,
    RollbackConfig=_UPDATE_CONFIG,
    Networks=ANY,
    EndpointSpec=struct("swarm.EndpointSpec", Mode=STRING, Ports=slice_of(_PORT)),
)
"""Docker's swarm.ServiceSpec as the daemon decodes it (unread parts kept as given)."""

DEFAULT_UPDATE_CONFIG: dict[str, Any] = {
    "Parallelism": 1,
    "FailureAction": "pause",
    "Monitor": 5_000_000_000,
    "MaxFailureRatio": 0,
    "Order": "stop-first",
}
"""swarmkit's defaults.Service.Update (and .Rollback), as ``docker service inspect`` shows them."""

_STOP_GRACE_PERIOD = 10_000_000_000  # swarmkit: ContainerSpec.StopGracePeriod 10 s
_RESTART_DELAY = 5_000_000_000  # swarmkit: RestartPolicy.Delay 5 s
_FAILURE_ACTIONS = ("pause", "continue", "rollback")
_ORDERS = ("stop-first", "start-first")
_CONDITIONS = ("none", "on-failure", "any")


def _modes(spec: dict[str, Any]) -> list[str]:
    mode = spec.get("Mode") or {}
    return [m for m in ("Replicated", "Global", "ReplicatedJob", "GlobalJob") if m in mode]


def _invalid(message: str) -> ApiError:
    return ApiError.bad_request(rpc_message("InvalidArgument", message))


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse a spec as moby's daemon and swarmkit's controlapi do (first failure wins).

    The daemon's conversion comes first (400, plain words: ``mismatched Runtime and *Spec
    fields``), then swarmkit's validation (``rpc error: code = InvalidArgument desc = ...``) and
    the constraint parser (500 ``rpc error: code = Unknown desc = ...``, as recorded), in
    swarmkit's order: name, restart policy, update configs, placement, secret and config
    references (servicerefs.py; moby's conversion of config targets comes first), image. The name's rules
    are the store's (InvalidObject, which the routes' error mapping answers); its uniqueness is
    checked when the write applies.
    """
    task = spec.get("TaskTemplate") or {}
    runtime = task.get("Runtime") or "container"
    if runtime == "container" and not isinstance(task.get("ContainerSpec"), dict):
        raise ApiError.bad_request("mismatched Runtime and *Spec fields")
    if runtime not in ("container", "plugin", "attachment"):
        raise ApiError.bad_request(f"unsupported runtime type: {runtime!r}".replace("'", '"'))
    if runtime != "container":
        raise ApiError.not_implemented(f"swarmlet runs container tasks only, not {runtime!r} tasks")
    check_conversion(task["ContainerSpec"])
    if len(_modes(spec)) > 1:
        raise ApiError.bad_request("must specify only one service mode")
    # The name's rules are the store's (swarmkit's validateAnnotations): InvalidArgument.
    check_create("service", {"Name": spec.get("Name", ""), "Labels": spec.get("Labels") or {}}, {}, {})
    restart = task.get("RestartPolicy") or {}
    if restart.get("Condition", "") not in ("", *_CONDITIONS):
        raise ApiError.bad_request(f"unknown restart policy condition: {restart['Condition']}")
    for key in ("UpdateConfig", "RollbackConfig"):
        config = spec.get(key) or {}
        if config.get("FailureAction", "") not in ("", *_FAILURE_ACTIONS):
            raise ApiError.bad_request(f"unrecognized failure action {config['FailureAction']}")
        if config.get("Order", "") not in ("", *_ORDERS):
            raise ApiError.bad_request(f"unrecognized order {config['Order']}")
        ratio = config.get("MaxFailureRatio", 0)
        if not 0 <= ratio <= 1:
            raise _invalid("TaskSpec: MaxFailureRatio must be between 0 and 1")
    try:
        parse_constraints((task.get("Placement") or {}).get("Constraints") or [])
    except ConstraintError as exc:
        raise ApiError(exc.status, exc.api_message) from None
    container = task["ContainerSpec"]
    check_references(container)
    image = container.get("Image")
    if not isinstance(image, str) or not image:
        raise _invalid("ContainerSpec: image reference must be provided")


def _fill(target: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if key not in target:
            target[key] = copy.deepcopy(value)


def _update_config(given: dict[str, Any] | None) -> dict[str, Any]:
    if given is None:
        return dict(DEFAULT_UPDATE_CONFIG)
    out = dict(given)
    # The enums' zero values are pause and stop-first; an empty string is the zero value.
    out["FailureAction"] = out.get("FailureAction") or "pause"
    out.setdefault("Parallelism", 0)
    if not out.get("Monitor"):
        out["Monitor"] = DEFAULT_UPDATE_CONFIG["Monitor"]
    out.setdefault("MaxFailureRatio", 0)
    out["Order"] = out.get("Order") or "stop-first"
    keys = ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order")
    return {k: out[k] for k in keys if k in out and not (k == "Delay" and not out[k])}


def with_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """The spec to store: ``given`` (checked) with Swarm's defaults where it says nothing.

    As ``docker service inspect`` shows a service created by ``docker service create``: Labels
    {}, ContainerSpec StopGracePeriod 10 s, DNSConfig {}, Isolation default; Resources,
    Placement {}; RestartPolicy any / 5 s / 0; ForceUpdate 0; Runtime container; one replica
    when no mode is given; Update- and RollbackConfig 1 / pause / 5 s / 0 / stop-first;
    EndpointSpec Mode vip.
    """
    spec = copy.deepcopy(given)
    out: dict[str, Any] = {"Name": spec.get("Name", ""), "Labels": spec.get("Labels") or {}}

    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    _fill(container, {"StopGracePeriod": _STOP_GRACE_PERIOD, "DNSConfig": {}})
    if not container.get("Isolation"):
        container["Isolation"] = "default"
    task["ContainerSpec"] = container
    _fill(task, {"Resources": {"Limits": {}, "Reservations": {}}, "Placement": {}})
    restart = task.get("RestartPolicy")
    if restart is None:
        restart = {"Condition": "any", "Delay": _RESTART_DELAY, "MaxAttempts": 0}
    else:
        restart["Condition"] = restart.get("Condition") or "any"
        restart.setdefault("Delay", _RESTART_DELAY)
        restart.setdefault("MaxAttempts", 0)
    task["RestartPolicy"] = restart
    task.setdefault("ForceUpdate", 0)
    task["Runtime"] = task.get("Runtime") or "container"
    ordered = ("ContainerSpec", "PluginSpec", "NetworkAttachmentSpec", "Resources", "RestartPolicy",
               "Placement", "Networks", "LogDriver", "ForceUpdate", "Runtime")
    out["TaskTemplate"] = {k: task[k] for k in ordered if k in task}

    mode = spec.get("Mode") or {}
    if not mode:
        mode = {"Replicated": {"Replicas": 1}}
    elif "Replicated" in mode:
        mode["Replicated"].setdefault("Replicas", 1)
    elif "ReplicatedJob" in mode:
        job = mode["ReplicatedJob"]
        job.setdefault("TotalCompletions", job.get("MaxConcurrent") or 1)
        job.setdefault("MaxConcurrent", 1)
    out["Mode"] = mode
    out["UpdateConfig"] = _update_config(spec.get("UpdateConfig"))
    out["RollbackConfig"] = _update_config(spec.get("RollbackConfig"))
    if "Networks" in spec:
        out["Networks"] = spec["Networks"]
    endpoint = spec.get("EndpointSpec") or {}
    endpoint["Mode"] = endpoint.get("Mode") or "vip"
    for port in endpoint.get("Ports") or []:
        port["Protocol"] = port.get("Protocol") or "tcp"
        port["PublishMode"] = port.get("PublishMode") or "ingress"
    out["EndpointSpec"] = {"Mode": endpoint["Mode"], **{k: v for k, v in endpoint.items() if k != "Mode"}}
    return out
