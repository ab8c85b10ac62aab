"""``/tasks``: list (with filters), inspect, logs. Tasks are read-only through the Engine API.

Filters are moby's (daemon/cluster/filters.go) over swarmkit's ListTasks: ``service`` and
``node`` are resolved first (by ID, name or prefix; an unknown one is the lookup's 404, as in
Docker), ``id`` and ``name`` match prefixes, ``label`` the service's labels, ``desired-state``
one of Swarm's task states. ``_up-to-date`` is the CLI's own filter for its progress bars: only
tasks that run their service's current spec.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from manager.engineapi.base import ManagerView, guarded
from manager.engineapi.logs import LogTarget, TaskLogSource, parse_log_query, stream_logs
from manager.engineapi.nodes import labels_match
from manager.engineapi.render_services import task_to_api, task_up_to_date
from manager.state.store import TASK_STATES, NotFound, StoredObject
from nodeagent.engineapi import ApiError, Route, json_response, parse_filters

__all__ = ["TaskRoutes", "task_name"]

_FILTERS = ("_up-to-date", "desired-state", "id", "label", "name", "node", "runtime", "service")


def task_name(task: StoredObject, service_name: str) -> str:
    """swarmkit's naming.Task: its annotated name, else ``service.slot.id`` (``service.node.id``)."""
    annotations = task.extra.get("Annotations")
    if isinstance(annotations, dict) and annotations.get("Name"):
        return str(annotations["Name"])
    slot = task.extra.get("Slot")
    middle = str(slot) if isinstance(slot, int) and slot else str(task.extra.get("NodeID") or "")
    return f"{service_name}.{middle}.{task.id}"


class TaskRoutes:
    """The handlers of ``/tasks`` for one manager."""

    def __init__(self, manager: ManagerView, logs: TaskLogSource) -> None:
        """Answer from ``manager``'s store; task logs come from ``logs``."""
        self.manager = manager
        self.logs = logs

    def routes(self) -> list[Route]:
        """(method, path, handler) for the node agent's Engine API."""
        return [
            ("GET", "/tasks", guarded(self.list)),
            ("GET", "/tasks/{id}", guarded(self.inspect)),
            ("GET", "/tasks/{id}/logs", guarded(self.task_logs)),
        ]

    def _service_of(self, task: StoredObject) -> StoredObject | None:
        try:
            return self.manager.store.get("service", str(task.extra.get("ServiceID") or ""))
        except NotFound:
            return None

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /tasks?filters=``: every task that matches every filter given."""
        store = self.manager.store
        filters = parse_filters(request.query.get("filters"))
        filters.validate(_FILTERS)
        states = []
        for value in filters.get("desired-state"):
            if value.lower() in TASK_STATES:
                states.append(value.lower())
            elif value:
                raise ApiError.bad_request(f"Invalid desired-state filter: '{value}'")
        service_ids = [store.lookup("service", s).id for s in filters.get("service")]
        node_ids = [store.lookup("node", n).id for n in filters.get("node")]

        tests: list[Callable[[StoredObject], bool]] = []
        if service_ids:
            tests.append(lambda t: t.extra.get("ServiceID") in service_ids)
        if node_ids:
            tests.append(lambda t: t.extra.get("NodeID") in node_ids)
        if states:
            tests.append(lambda t: t.extra.get("DesiredState") in states)
        if ids := filters.get("id"):
            tests.append(lambda t: any(t.id.startswith(p) for p in ids))
        if names := filters.get("name"):
            tests.append(lambda t: any(self._name(t).startswith(p) for p in names))
        if labels := filters.get("label"):
            tests.append(lambda t: labels_match(self._service_labels(t), labels))
        if runtimes := filters.get("runtime"):
            tests.append(lambda t: str(t.spec.get("Runtime") or "container") in runtimes)
        if filters.get("_up-to-date"):
            tests.append(self._up_to_date)

        if len(service_ids) == 1:  # the CLI's usual question: one service's tasks, from the index
            found = store.find("task", service_id=service_ids[0])
            tasks = [t for t in found if all(test(t) for test in tests)]
        else:
            tasks = store.find("task", filters=lambda t: all(test(t) for test in tests))
        return json_response([task_to_api(t) for t in tasks])

    def _name(self, task: StoredObject) -> str:
        annotations = task.extra.get("ServiceAnnotations")
        name = annotations.get("Name") if isinstance(annotations, dict) else None
        if not name:
            service = self._service_of(task)
            name = service.name if service is not None else ""
        return task_name(task, str(name))

    def _service_labels(self, task: StoredObject) -> object:
        annotations = task.extra.get("ServiceAnnotations")
        if isinstance(annotations, dict) and "Labels" in annotations:
            return annotations["Labels"]
        service = self._service_of(task)
        return service.spec.get("Labels") if service is not None else {}

    def _up_to_date(self, task: StoredObject) -> bool:
        service = self._service_of(task)
        return service is not None and task_up_to_date(task, service)

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /tasks/{id}``: by ID or unique ID prefix."""
        task = self.manager.store.lookup("task", request.match_info["id"])
        return json_response(task_to_api(task))

    async def task_logs(self, request: web.Request) -> web.StreamResponse:
        """``GET /tasks/{id}/logs``: one task's lines, from the node that runs it."""
        query = parse_log_query(request)
        task = self.manager.store.lookup("task", request.match_info["id"])
        node_id = str(task.extra.get("NodeID") or "")
        targets = [LogTarget(task.id, node_id, str(task.extra.get("ServiceID") or ""))] if node_id else []
        container = task.spec.get("ContainerSpec") or {}
        return await stream_logs(request, self.logs, targets, query, tty=bool(container.get("TTY")))
