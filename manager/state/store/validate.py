"""Per-kind rules an object must keep, checked when a batch is applied (and by ``Store.check``).

These run inside ``apply`` on every manager, so they may look only at the command and the
committed state: no clock, no randomness, no configuration that could differ between managers.
Messages are Swarm's (swarmkit's controlapi and moby's daemon) where Swarm has one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any

from manager.state.store.errors import InvalidObject
from manager.state.store.objects import TASK_STATES, StoredObject

__all__ = [
    "DESIRED_TASK_STATES",
    "MAX_CONFIG_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SECRET_BYTES",
    "check_create",
    "check_update",
    "labels_only_update",
    "name_conflict_message",
    "payload_size",
]

# Data must be smaller than these (swarmkit's MaxSecretSize and MaxConfigSize, as Docker 20.10's
# Swarm answers: a secret of 511999 bytes is taken, one of 512000 refused; configs 1023999/1024000).
MAX_SECRET_BYTES = 500 * 1024
MAX_CONFIG_BYTES = 1000 * 1024
MAX_PAYLOAD_BYTES = MAX_SECRET_BYTES  # the smaller limit; kept for callers of the old name
_MAX_BYTES = {"secret": MAX_SECRET_BYTES, "config": MAX_CONFIG_BYTES}

NODE_ROLES = ("worker", "manager")
NODE_AVAILABILITIES = ("active", "pause", "drain")
NODE_STATES = ("unknown", "down", "ready", "disconnected")
REACHABILITIES = ("unknown", "unreachable", "reachable")
SERVICE_MODES = ("Replicated", "Global", "ReplicatedJob", "GlobalJob")
# What an orchestrator may ask of a task (swarmkit's desired states): ready holds a restarted task
# until its restart delay is over, complete is a job's, shutdown and remove end it.
DESIRED_TASK_STATES = ("ready", "running", "complete", "shutdown", "remove")
_TASK_ORDER = {state: i for i, state in enumerate(TASK_STATES)}

# swarmkit controlapi: service and network names are DNS name components...
_DNS_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
# ...while configs and secrets allow dots and must start and end alphanumerically.
_PAYLOAD_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")


def _labels(spec: Mapping[str, Any], where: str = "Labels") -> None:
    labels = spec.get("Labels")
    if labels is None:
        return
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidObject(f"{where} must map strings to strings")


def _one_of(value: Any, allowed: tuple[str, ...], message: Callable[[], str]) -> None:
    # The message is built only when it is needed: these checks run for every object of a batch.
    if value not in allowed:
        raise InvalidObject(message())


def _dns_name(spec: Mapping[str, Any]) -> None:
    name = spec.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("meta: name must be provided")
    if not _DNS_NAME.match(name):
        raise InvalidObject("name must be valid as a DNS name component")
    if len(name) > 63:
        raise InvalidObject("name must be 63 characters or fewer")


def payload_size(spec: Mapping[str, Any]) -> int:
    """Length in bytes of a secret's or config's Data (base64 in the spec); InvalidObject if not base64."""
    data = spec.get("Data", "")
    if not isinstance(data, str):
        raise InvalidObject("Data must be a base64 string")
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidObject("Data must be a base64 string") from None


def _driver(spec: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    driver = spec.get(key)
    if driver is None:
        return None
    if not isinstance(driver, Mapping) or not isinstance(driver.get("Name", ""), str):
        raise InvalidObject(f"{key} must be an object with a Name")
    return driver


def _payload(kind: str, spec: Mapping[str, Any]) -> None:
    # swarmkit's order: the name, then the driver (secrets), then the data's size.
    name = spec.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("name must be provided")
    if len(name) > 64 or not _PAYLOAD_NAME.match(name):
        raise InvalidObject(
            "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, "
            "and the start and end character must be [a-zA-Z0-9]"
        )
    _labels(spec)
    _driver(spec, "Templating")  # any name is taken at create; the agent refuses unknown ones
    driver = _driver(spec, "Driver") if kind == "secret" else None
    if driver is not None:
        if not driver.get("Name"):
            raise InvalidObject("secret driver must have a name")
        return  # an external secret: its data comes from the driver, not the store
    size = payload_size(spec)
    limit = _MAX_BYTES[kind]
    if size < 1 or size >= limit:
        raise InvalidObject(f"{kind} data must be larger than 0 and less than {limit} bytes")


def _node(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    # moby's daemon words (convert.NodeSpecToGRPC), since that is where the CLI's values land.
    _one_of(spec.get("Role"), NODE_ROLES, lambda: f"invalid Role: {_quote(spec.get('Role'))}")
    _one_of(
        spec.get("Availability"),
        NODE_AVAILABILITIES,
        lambda: f"invalid Availability: {_quote(spec.get('Availability'))}",
    )
    _labels(spec)
    if "State" in status:
        _one_of(status["State"], NODE_STATES, lambda: f"invalid node state {_quote(status['State'])}")
    manager = extra.get("ManagerStatus")
    if manager is not None:
        if not isinstance(manager, Mapping):
            raise InvalidObject("ManagerStatus must be a JSON object")
        if "Reachability" in manager:
            reach = manager["Reachability"]
            _one_of(reach, REACHABILITIES, lambda: f"invalid Reachability: {_quote(reach)}")


def _service(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    _dns_name(spec)
    _labels(spec)
    mode = spec.get("Mode")
    if mode is None:
        return
    if not isinstance(mode, Mapping) or len(mode) != 1 or next(iter(mode)) not in SERVICE_MODES:
        raise InvalidObject("Mode must be exactly one of Replicated, Global, ReplicatedJob, GlobalJob")
    replicated = mode.get("Replicated")
    if isinstance(replicated, Mapping) and "Replicas" in replicated:
        replicas = replicated["Replicas"]
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise InvalidObject("Replicas must be an integer")
        if replicas < 0:
            raise InvalidObject("Number of replicas must be non-negative")


def _task(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    if "State" in status:
        _one_of(status["State"], TASK_STATES, lambda: f"invalid task state {_quote(status['State'])}")
    if "DesiredState" in extra:
        _one_of(
            extra["DesiredState"],
            DESIRED_TASK_STATES,
            lambda: f"invalid desired state {_quote(extra['DesiredState'])}: want one of "
            + ", ".join(DESIRED_TASK_STATES),
        )
    slot = extra.get("Slot")
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int) or slot < 0):
        raise InvalidObject("Slot must be a non-negative integer")


def _network(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    _dns_name(spec)
    _labels(spec)


def _secret(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    _payload("secret", spec)


def _config(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    _payload("config", spec)


def _cluster(spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    _labels(spec)


_RULES: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], None]] = {
    "cluster": _cluster,
    "node": _node,
    "service": _service,
    "task": _task,
    "network": _network,
    "secret": _secret,
    "config": _config,
}


def _quote(value: Any) -> str:
    # Go's %q of a string; other JSON values as JSON would show them.
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return '""' if value is None else repr(value)


def check_create(
    kind: str, spec: Mapping[str, Any], status: Mapping[str, Any], extra: Mapping[str, Any]
) -> None:
    """Raise InvalidObject if a new object of ``kind`` breaks its kind's rules."""
    _RULES[kind](spec, status, extra)


def check_update(
    current: StoredObject,
    spec: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
) -> Mapping[str, Any] | None:
    """Check an update of ``current``; returns the Spec to store (None: keep the current one).

    Secrets and configs are immutable except their labels, so for them the stored Spec is the
    current one with the new Labels, as swarmkit does; renaming services and networks is refused.
    """
    kind = current.kind
    new_spec = spec
    if spec is not None:
        if kind in ("secret", "config"):
            if not labels_only_update(current.spec, spec):
                raise InvalidObject("only updates to Labels are allowed")
            _labels(spec)
            new_spec = dict(current.spec)
            new_spec["Labels"] = spec.get("Labels") or {}
        elif kind in ("service", "network") and spec.get("Name") != current.spec.get("Name"):
            raise InvalidObject(f"renaming {kind}s is not supported")
    if kind == "task":
        _task_moves_forward(current, status, extra)
    _RULES[kind](
        new_spec if new_spec is not None else current.spec,
        status if status is not None else current.status,
        extra if extra is not None else current.extra,
    )
    return new_spec


def labels_only_update(current: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` changes nothing of a secret's or config's Spec but its Labels (swarmkit's rule).

    The name must be the same (exactly), and Data, when given and not empty, the same bytes: an
    empty Data reaches swarmkit as no data at all, and `docker stack deploy` resends the data it
    has. Driver and Templating in an update are ignored, as swarmkit ignores them.
    """
    if spec.get("Name") != current.get("Name"):
        return False
    data = spec.get("Data")
    if data is None or data == "":
        return True
    try:
        return base64.b64decode(data, validate=True) == base64.b64decode(current.get("Data") or "")
    except (binascii.Error, ValueError, TypeError):
        return False


def _task_moves_forward(
    current: StoredObject, status: Mapping[str, Any] | None, extra: Mapping[str, Any] | None
) -> None:
    """A task's Status.State and DesiredState only move forward, in TASK_STATES order.

    Reports come from agents in batches and may arrive late or twice; a stale "running" written
    over "failed" would bring a dead task back to life for the orchestrators, so the store, which
    every writer goes through, refuses it. The same for DesiredState: once an orchestrator asked
    for shutdown, no later write may ask for running again (swarmkit: "time travel is not allowed").
    """
    for part, new, field in ((current.status, status, "State"), (current.extra, extra, "DesiredState")):
        if new is None:
            continue
        old_state, new_state = part.get(field), new.get(field)
        if old_state == new_state or old_state not in _TASK_ORDER or new_state not in _TASK_ORDER:
            continue  # unchanged, or not a state at all (the kind's rules judge that)
        if _TASK_ORDER[new_state] < _TASK_ORDER[old_state]:
            what = "state" if field == "State" else "desired state"
            raise InvalidObject(
                f"task {current.id}: {what} cannot move back from {old_state} to {new_state}"
            )


def name_conflict_message(kind: str, name: str) -> str:
    """What Swarm says when the name is taken (swarmkit controlapi, moby for networks)."""
    if kind == "service":
        return f"name conflicts with an existing object: service {name} already exists"
    if kind == "network":
        return f"network with name {name} already exists"
    return f"{kind} {name} already exists"
