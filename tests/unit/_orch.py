"""A small world for orchestrator unit tests: a real store, nodes, services, tasks, and passes."""

from __future__ import annotations

from typing import Any

from manager.component import DirectProposer, StoreView, run_now
from manager.component.base import Component, DirtyKey, Reconciled
from manager.scheduler.build import make_node, task_template
from manager.state.store import Create, Delete, Store, Update
from manager.state.store.objects import StoredObject, default_cluster_spec, format_timestamp, thaw

NODES = ["n1", "n2", "n3"]


class World:
    """A store at a settable time; every write is a batch stamped with that time."""

    def __init__(self, nodes: list[str] | None = None, now: float = 1000.0) -> None:
        self.now = now
        self.store = Store()
        self.write = DirectProposer(self.store, lambda: self.now)
        self.seq = 0
        ops: list[Any] = [Create("cluster", "cl", default_cluster_spec())]
        for node_id in nodes if nodes is not None else NODES:
            n = make_node(node_id)
            ops.append(Create("node", node_id, thaw(n.spec), thaw(n.status), thaw(n.extra)))
        self.apply(ops)

    def apply(self, ops: list[Any]) -> None:
        if ops:
            run_now(self.write(ops))

    def service(self, name: str = "web", *, mode: dict[str, Any] | None = None, **template: Any) -> str:
        restart = template.pop("restart", None)
        tt = task_template(**template)
        if restart is not None:
            tt["RestartPolicy"] = restart
        spec = {"Name": name, "TaskTemplate": tt, "Mode": mode or {"Replicated": {"Replicas": 1}}}
        self.apply([Create("service", f"svc-{name}", spec, {}, {})])
        return f"svc-{name}"

    def task(
        self, service_id: str, *, slot: int = 0, node: str = "", state: str = "running",
        desired: str = "running", iteration: int | None = None,
    ) -> str:  # fmt: skip
        self.seq += 1
        task_id = f"t{self.seq:03d}"
        service = self.store.get("service", service_id)
        extra: dict[str, Any] = {"ServiceID": service_id, "DesiredState": desired}
        if slot:
            extra["Slot"] = slot
        if node:
            extra["NodeID"] = node
        if iteration is not None:
            extra["JobIteration"] = {"Index": iteration} if iteration else {}
        status = {"State": state, "Message": state, "Timestamp": format_timestamp(self.now)}
        self.apply([Create("task", task_id, thaw(service.spec["TaskTemplate"]), status, extra)])
        return task_id

    def set_task(self, task_id: str, *, state: str | None = None, desired: str | None = None) -> None:
        task = self.store.get("task", task_id)
        status, extra = thaw(task.status), thaw(task.extra)
        if state is not None:
            status.update(State=state, Timestamp=format_timestamp(self.now))
        if desired is not None:
            extra["DesiredState"] = desired
        self.apply([Update("task", task_id, task.version, status=status, extra=extra)])

    def set_node(self, node_id: str, **fields: Any) -> None:
        node = self.store.get("node", node_id)
        spec, status = thaw(node.spec), thaw(node.status)
        if "state" in fields:
            status["State"] = fields["state"]
        if "availability" in fields:
            spec["Availability"] = fields["availability"]
        if "labels" in fields:
            spec["Labels"] = fields["labels"]
        self.apply([Update("node", node_id, node.version, spec=spec, status=status)])

    def update_spec(self, service_id: str, **changes: Any) -> None:
        service = self.store.get("service", service_id)
        spec = thaw(service.spec)
        spec.update(changes)
        self.apply([Update("service", service_id, service.version, spec=spec)])

    def delete(self, kind: str, obj_id: str) -> None:
        self.apply([Delete(kind, obj_id)])

    def run(self, component: Component, dirty: set[DirtyKey] | None = None) -> Reconciled:
        """One pass over every service (or ``dirty``); its ops are applied."""
        keys = dirty if dirty is not None else {("service", s.id) for s in self.store.find("service")}
        result = component.reconcile(StoreView(self.store), frozenset(keys), self.now)
        self.apply(list(result.ops))
        return result

    def tasks(self, service_id: str) -> list[StoredObject]:
        return self.store.find("task", service_id=service_id)

    def live(self, service_id: str) -> list[StoredObject]:
        return [t for t in self.tasks(service_id) if t.extra.get("DesiredState") in ("running", "ready")]

    def slots(self, service_id: str) -> list[int]:
        return sorted(int(t.extra.get("Slot") or 0) for t in self.live(service_id))
