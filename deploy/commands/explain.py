"""``swarmlet explain SERVICE|TASK``: why a task runs where it does, or waits.

For each node, which of the scheduler's filters the task passes or fails there, why, and what
would make it fit (a label to add, the capacity missing, an availability to change). No Swarm
tool shows this (moby#33807, moby#31555): Swarm gives only its one-line summary, which is
printed too ("Swarm says: no suitable node (...)").

The cluster is read through a manager's Engine API (the same answers `docker node ls`,
`docker service ls` and `docker service ps` get); the verdicts come from the scheduler's own
filters (manager/scheduler/explain.py), so they cannot drift from what the scheduler does.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from deploy.commands.status import error
from manager.scheduler.explain import Explanation, explain, explain_service
from manager.state.store.objects import StoredObject, freeze

__all__ = ["add_arguments", "from_api", "run"]

_OBJECT_FIELDS = ("ID", "Version", "CreatedAt", "UpdatedAt", "Spec", "Status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet explain``."""
    parser.add_argument("target", metavar="SERVICE|TASK", help="a service name or ID (prefix), or a task ID")
    parser.add_argument("--host", metavar="ADDR",
                        help="a manager's Engine API (tcp://HOST:PORT; default: $DOCKER_HOST, else "
                             "the running cluster's managers)")  # fmt: skip


def from_api(kind: str, body: dict[str, Any]) -> StoredObject:
    """A store object back from its Engine API rendering (the other top-level fields are extra)."""
    extra = {k: v for k, v in body.items() if k not in _OBJECT_FIELDS}
    return StoredObject(
        kind=kind,
        id=str(body.get("ID", "")),
        version=int((body.get("Version") or {}).get("Index", 0)),
        created_at=str(body.get("CreatedAt", "")),
        updated_at=str(body.get("UpdatedAt", "")),
        spec=freeze(body.get("Spec") or {}),
        status=freeze(body.get("Status") or {}),
        extra=freeze(extra),
    )


def _hosts(given: str | None) -> list[str]:
    if given:
        return [given]
    env = os.environ.get("DOCKER_HOST", "")
    if env.startswith("tcp://"):
        return [env]
    from deploy.backends import load_backend

    return [n.docker_host for n in load_backend().nodes() if n.role == "manager" and n.docker_host]


def _get(host: str, path: str) -> Any:
    base = "http://" + host.removeprefix("tcp://").rstrip("/")
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def _read_cluster(hosts: list[str]) -> tuple[list[Any], list[Any], list[Any]]:
    last = "no manager's Engine API is known: pass --host tcp://ADDR:2375 or set DOCKER_HOST"
    for host in hosts:
        try:
            return _get(host, "/nodes"), _get(host, "/services"), _get(host, "/tasks")
        except urllib.error.HTTPError as exc:
            try:
                last = f"{host}: {json.loads(exc.read()).get('message', exc.reason)}"
            except ValueError:
                last = f"{host}: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = f"{host}: {exc}"
    raise LookupError(last)


def _pick(target: str, services: list[StoredObject], tasks: list[StoredObject]) -> StoredObject | str:
    """The service (by name, ID or ID prefix) or task (by ID prefix) ``target`` names, or why none."""
    exact = [s for s in services if target in (s.name, s.id)]
    if exact:
        return exact[0]
    for kind, candidates in (("service", services), ("task", tasks)):
        found = [o for o in candidates if o.id.startswith(target)]
        if len(found) > 1:
            return f"{kind} prefix {target} is ambiguous: " + ", ".join(sorted(o.id for o in found))
        if found:
            return found[0]
    return f"no such service or task: {target}"


def run(args: argparse.Namespace) -> int:
    """Print, for each node, the filters the task passes or fails and what would make it fit."""
    try:
        raw_nodes, raw_services, raw_tasks = _read_cluster(_hosts(args.host))
    except LookupError as exc:
        return error(str(exc))
    nodes = [from_api("node", n) for n in raw_nodes]
    services = [from_api("service", s) for s in raw_services]
    tasks = [from_api("task", t) for t in raw_tasks]
    by_id = {s.id: s for s in services}
    target = _pick(args.target, services, tasks)
    if isinstance(target, str):
        return error(target)
    reports: list[Explanation] = []
    if target.kind == "task":
        reports.append(explain(target, nodes, tasks, by_id))
    else:
        pending = [t for t in tasks
                   if t.extra.get("ServiceID") == target.id and t.status.get("State") == "pending"]
        if pending:
            reports += [explain(t, nodes, tasks, by_id) for t in sorted(pending, key=lambda t: t.id)]
        else:
            print(f"service {target.name} has no pending task; where one more replica could go:")
            reports.append(explain_service(target, nodes, tasks, by_id))
    print("\n\n".join(r.render() for r in reports))
    return 0
