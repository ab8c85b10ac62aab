"""A simulated cluster for the orchestration components: the real ones, on virtual time.

Package code (not test code) so the simulator tests and ``bench/orchestrator.py`` drive the same
thing. It holds one real :class:`Store`, the real components (the four orchestrators, the update
supervisor, the task reaper, the allocator and the scheduler), each in its own
:class:`SimHarness` writing through a :class:`DirectProposer`, and :class:`FakeAgents`: a
stand-in for the dispatcher and the agents that reports, after a latency, what an agent would
(accepted to running, shutdown, complete for a job's task) for tasks on nodes that are ready. A
Down node's agent is silent, as in Swarm. An image can be made to fail its healthcheck
(:attr:`FakeAgents.unhealthy`), as the emulated runtime fails an unhealthy task.

Everything random comes from the simulator's seed, so a run is replayed exactly by its seed.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from manager.allocator import Allocator
from manager.component import DirectProposer, SimHarness, run_now
from manager.component.base import Component
from manager.orchestrator.common import ASSIGNED, RUNNING, SHUTDOWN, desired, state
from manager.orchestrator.global_service import GlobalOrchestrator
from manager.orchestrator.jobs import GlobalJobOrchestrator, ReplicatedJobOrchestrator
from manager.orchestrator.replicated import ReplicatedOrchestrator
from manager.orchestrator.taskreaper import TaskReaper
from manager.orchestrator.update import UpdateSupervisor
from manager.scheduler.component import SchedulerComponent
from manager.state.store import Create, Delete, Store, Update
from manager.state.store.commands import Op
from manager.state.store.errors import NotFound
from manager.state.store.objects import StoredObject, default_cluster_spec, format_timestamp, thaw
from nodeagent.identity import new_id
from nodeagent.sim import Simulator

__all__ = ["FakeAgents", "SimCluster"]


class FakeAgents:
    """Every node's agent, reduced to its reports: one batch per ``latency`` while there is news.

    A task assigned to a ready node runs (a job's task completes: "finished"); a task held with
    DesiredState ready is prepared and waits; a task asked to shut down reports shutdown. Tasks
    on a node that is not ready are not heard from.
    """

    def __init__(self, sim: Simulator, store: Store, write: DirectProposer, *, latency: float = 0.05) -> None:
        self.sim = sim
        self.store = store
        self.write = write
        self.latency = latency
        self.reports = 0
        self._due = False
        self._watch = store.watch(["task", "node"], on_change=self._wake)
        self._dirty: set[str] = set()
        self._nodes_changed = False
        self.unhealthy: dict[str, float] = {}
        """Image -> seconds after it starts that a task of it fails "unhealthy container"."""

    def _wake(self) -> None:
        for change in self._watch.poll():
            if change.kind == "task":
                self._dirty.add(change.object.id)
            else:
                self._nodes_changed = True
        if not self._due and (self._dirty or self._nodes_changed):
            self._due = True
            self.sim.call_later(self.latency, self._report)

    def _report(self) -> None:
        self._due = False
        if self._nodes_changed:  # a node came back: its agent reports all its tasks again
            self._dirty |= {t.id for t in self.store.find("task") if t.extra.get("NodeID")}
            self._nodes_changed = False
        ready = {n.id for n in self.store.find("node") if n.status.get("State") == "ready"}
        ops: list[Op] = []
        when = format_timestamp(self.sim.now)
        for task_id in sorted(self._dirty):
            try:
                task = self.store.get("task", task_id)
            except NotFound:
                continue  # reaped meanwhile
            if str(task.extra.get("NodeID") or "") not in ready:
                continue
            update = _agent_step(task, when)
            if update is not None:
                ops.append(update)
        self._dirty.clear()
        if ops:
            self.reports += len(ops)
            run_now(self.write(ops))
        for op in ops:
            assert isinstance(op, Update) and op.status is not None
            image = _image(self.store.get("task", op.id)) if op.status.get("State") == "running" else ""
            if image in self.unhealthy:
                self.sim.call_later(self.unhealthy[image], lambda task_id=op.id: self._unhealthy(task_id))

    def _unhealthy(self, task_id: str) -> None:
        """The healthcheck gave up on a running task: it fails as the emulated runtime reports."""
        try:
            task = self.store.get("task", task_id)
        except NotFound:
            return
        if task.status.get("State") != "running":
            return
        status = thaw(task.status)
        status.update(
            State="failed", Timestamp=format_timestamp(self.sim.now), Message="started",
            Err="unhealthy container",
        )  # fmt: skip
        run_now(self.write([Update("task", task.id, task.version, status=status)]))

    def fail(self, task_id: str, exit_code: int = 1) -> None:
        """The task's process exits with ``exit_code`` now (as an agent would report it)."""
        task = self.store.get("task", task_id)
        status = thaw(task.status)
        status.update(
            State="failed", Timestamp=format_timestamp(self.sim.now), Message="started",
            Err=f"task: non-zero exit ({exit_code})",
            ContainerStatus={"ContainerID": "", "PID": 0, "ExitCode": exit_code},
        )  # fmt: skip
        run_now(self.write([Update("task", task.id, task.version, status=status)]))


def _image(task: StoredObject) -> str:
    container = task.spec.get("ContainerSpec")
    return str(container.get("Image") or "") if isinstance(container, Mapping) else ""


def _agent_step(task: StoredObject, when: str) -> Op | None:
    """The one report an agent makes now for this task, or None."""
    current, wanted = state(task), desired(task)
    status = thaw(task.status)
    status["Timestamp"] = when
    if wanted >= SHUTDOWN and ASSIGNED <= current <= RUNNING:  # shutdown or remove asked
        status.update(State="shutdown", Message="shutdown")
    elif current < ASSIGNED or current > RUNNING:
        return None
    elif task.extra.get("DesiredState") == "ready":
        if task.status.get("State") == "ready":
            return None
        status.update(State="ready", Message="prepared")
    elif task.extra.get("DesiredState") == "complete":
        status.update(State="complete", Message="finished", ContainerStatus={"ExitCode": 0})
    elif current < RUNNING:
        status.update(State="running", Message="started")
    else:
        return None
    return Update("task", task.id, task.version, status=status)


class SimCluster:
    """A store with nodes, the orchestration components in simulator harnesses, and fake agents."""

    def __init__(
        self,
        seed: int,
        nodes: Sequence[StoredObject],
        *,
        agent_latency: float = 0.05,
        default_delay: float | None = None,
        components: Callable[[Simulator], list[Component]] | None = None,
    ) -> None:
        """``nodes``: the cluster's nodes (``manager.scheduler.build.make_node``); ``default_delay``:
        the restart delay when a task's policy states none (None: swarmkit's 5 s)."""
        self.sim = Simulator(seed)
        self.store = Store()
        self.write = DirectProposer(self.store, self.sim.clock)
        self.rng = self.sim.fork_rng("api")
        ops: list[Op] = [Create("cluster", "c" * 25, default_cluster_spec())]
        for node in nodes:
            ops.append(Create("node", node.id, thaw(node.spec), thaw(node.status), thaw(node.extra)))
        run_now(self.write(ops))
        if components is None:
            self.components = [
                ReplicatedOrchestrator(self.sim.fork_rng("replicated"), default_delay=default_delay),
                GlobalOrchestrator(self.sim.fork_rng("global"), default_delay=default_delay),
                ReplicatedJobOrchestrator(self.sim.fork_rng("replicated-job"), default_delay=default_delay),
                GlobalJobOrchestrator(self.sim.fork_rng("global-job"), default_delay=default_delay),
                UpdateSupervisor(self.sim.fork_rng("update"), default_delay=default_delay),
                TaskReaper(),
                Allocator(),
                SchedulerComponent(),
            ]
        else:
            self.components = components(self.sim)
        self.harnesses = [SimHarness(c, self.sim, self.store, self.write) for c in self.components]
        self.agents = FakeAgents(self.sim, self.store, self.write, latency=agent_latency)
        for harness in self.harnesses:
            harness.run()

    # ---- what a user does ------------------------------------------------------------------------

    def create_service(self, spec: dict[str, Any]) -> str:
        """Create a service (its Spec as the Engine API stores it); returns its ID."""
        service_id = new_id(self.rng)
        run_now(self.write([Create("service", service_id, spec, {}, {})]))
        return service_id

    def update_service(self, service_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a service's Spec in place through ``change``, as ``docker service update`` does:
        the Engine API keeps the old Spec as PreviousSpec and clears UpdateStatus."""
        service = self.store.get("service", service_id)
        spec = copy.deepcopy(service.spec)
        change(spec)
        extra = thaw(service.extra)
        extra.pop("UpdateStatus", None)
        extra["PreviousSpec"] = thaw(service.spec)
        run_now(self.write([Update("service", service_id, service.version, spec=spec, extra=extra)]))

    def scale(self, service_id: str, replicas: int) -> None:
        """``docker service scale SERVICE=replicas``."""
        self.update_service(service_id, lambda spec: spec["Mode"]["Replicated"].update(Replicas=replicas))

    def remove_service(self, service_id: str) -> None:
        """``docker service rm``."""
        run_now(self.write([Delete("service", service_id)]))

    def set_node(
        self, node_id: str, *, state: str | None = None, availability: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Mark a node Down or ready (what liveness does), drain it or change its labels."""
        node = self.store.get("node", node_id)
        spec, status = thaw(node.spec), thaw(node.status)
        if state is not None:
            status["State"] = state
        if availability is not None:
            spec["Availability"] = availability
        if labels is not None:
            spec["Labels"] = labels
        run_now(self.write([Update("node", node_id, node.version, spec=spec, status=status)]))

    def add_node(self, node: StoredObject) -> None:
        """A node joins."""
        run_now(self.write([Create("node", node.id, thaw(node.spec), thaw(node.status), thaw(node.extra))]))

    # ---- looking ---------------------------------------------------------------------------------

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> None:
        """Advance virtual time to ``deadline`` (or until ``stop()`` holds)."""
        self.sim.run_until(deadline, stop)

    def tasks(self, service_id: str) -> list[StoredObject]:
        """The service's tasks, sorted by ID."""
        return self.store.find("task", service_id=service_id)

    def running(self, service_id: str) -> list[StoredObject]:
        """The service's tasks that run and are meant to."""
        return [
            t for t in self.tasks(service_id)
            if t.status.get("State") == "running" and t.extra.get("DesiredState") == "running"
        ]  # fmt: skip

    def digest(self) -> str:
        """A digest of the whole store: the same seed and steps give the same digest."""
        return hashlib.sha256(self.store.snapshot()).hexdigest()[:16]
