"""The update supervisor: rolling updates and rollbacks of replicated and global services.

swarmkit's ``update.Updater`` as a pure reconcile over the store. The division of work with the
orchestrators is strict: they keep the count (scale, restarts, lost nodes); this component alone
replaces tasks whose Spec is no longer the service's TaskTemplate (an image change, a
``--force``). Everything it needs is read from the store, so a new leader carries an update on:

* the update in progress is the service's ``UpdateStatus`` (``updating`` or ``rollback_started``;
  ``paused`` / ``rollback_paused`` stop it until the user updates again, which clears it);
* the update's tasks are those with the service's current TaskTemplate created since
  ``UpdateStatus.StartedAt``; a *dirty slot* (a global service's: node) has a task meant to run
  with another Spec and no such task.

Each pass, per service, with the UpdateConfig (RollbackConfig while rolling back):

1. **Failures.** An update task that stopped (failed, rejected, exited, shut down unasked) before
   it ran or within ``Monitor`` of starting is a failure; when failures / slots being updated
   exceed ``MaxFailureRatio``, ``FailureAction`` applies: ``pause`` (State ``paused``),
   ``continue``, or ``rollback``: the service is written once with Spec and PreviousSpec swapped
   and State ``rollback_started`` (a failing rollback pauses as ``rollback_paused``).
2. **Start-first ends.** A slot whose new task runs has its old tasks shut down.
3. **Batches.** ``Parallelism`` workers (0: every slot at once), as swarmkit's: a worker is busy
   while its new task is not yet running, then for ``Delay``. Each free worker takes the next
   dirty slot, in one group of ops: ``stop-first`` shuts the old task down and creates the new
   one held (DesiredState ``ready``; the orchestrator releases it once the old task has stopped,
   :func:`manager.orchestrator.restart.held_start`), ``start-first`` creates the new task running.
4. **Completion.** No dirty slot left and every worker free: ``Monitor`` later, State
   ``completed`` ("update completed") or ``rollback_completed`` ("rollback completed").

Times are wake-ups (``next_wakeup``), never sleeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from manager.component.base import DirtyKey, StoreView
from manager.orchestrator.base import Context, Plan, ServiceOrchestrator
from manager.orchestrator.common import (
    RUNNING,
    SHUTDOWN,
    desired,
    new_task,
    parse_timestamp,
    service_mode,
    set_desired,
    state,
)
from manager.state.store.commands import Update
from manager.state.store.objects import StoredObject, format_timestamp, thaw
from manager.state.store.watch import Change

__all__ = [
    "UpdateConfig",
    "UpdateSupervisor",
    "is_dirty",
    "update_config",
]

IN_PROGRESS = ("updating", "rollback_started")
_EPSILON = 1e-3  # StartedAt and CreatedAt are printed to the microsecond


@dataclass(frozen=True)
class UpdateConfig:
    """An UpdateConfig or RollbackConfig in seconds, with swarmkit's defaults."""

    parallelism: int  # slots updated at once; 0: all
    delay: float  # seconds a worker waits after its task runs
    failure_action: str  # pause | continue | rollback
    monitor: float  # seconds after a task starts during which its stop is a failure
    max_failure_ratio: float
    order: str  # stop-first | start-first


def _nanos(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, float(value) / 1e9)
    return default


def update_config(spec: Mapping[str, Any], rollback: bool) -> UpdateConfig:
    """The service's UpdateConfig (RollbackConfig when rolling back), defaults filled."""
    raw = spec.get("RollbackConfig" if rollback else "UpdateConfig")
    cfg: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    parallelism = cfg.get("Parallelism")
    action = cfg.get("FailureAction")
    ratio = cfg.get("MaxFailureRatio")
    order = cfg.get("Order")
    return UpdateConfig(
        parallelism=parallelism if isinstance(parallelism, int) and parallelism >= 0 else 1,
        delay=_nanos(cfg.get("Delay"), 0.0),
        failure_action=str(action) if action in ("pause", "continue", "rollback") else "pause",
        monitor=_nanos(cfg.get("Monitor"), 5.0),
        max_failure_ratio=float(ratio) if isinstance(ratio, int | float) and ratio > 0 else 0.0,
        order="start-first" if order == "start-first" else "stop-first",
    )


def is_dirty(task: StoredObject, service: StoredObject) -> bool:
    """Is this task's Spec other than the service's TaskTemplate (an update must replace it)?"""
    return task.spec != (service.spec.get("TaskTemplate") or {})


def _slot_key(task: StoredObject, global_mode: bool) -> str:
    if global_mode:
        return str(task.extra.get("NodeID") or "")
    slot = task.extra.get("Slot")
    return f"{slot if isinstance(slot, int) else 0:09d}"


def _stopped_early(task: StoredObject) -> bool:
    """Did the task stop on its own (not because it was asked to)?"""
    current = state(task)
    if current <= RUNNING:
        return False
    return current != SHUTDOWN or desired(task) <= RUNNING


class UpdateSupervisor(ServiceOrchestrator):
    """Rolls replicated and global services to their new TaskTemplate, and back on failure."""

    name = "update-supervisor"
    modes = frozenset({"Replicated", "Global"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`ServiceOrchestrator`; also keeps when each update task was first seen running."""
        super().__init__(*args, **kwargs)
        self.running_at: dict[str, float] = {}

    def dirty_keys(self, change: Change) -> Iterable[DirtyKey]:
        """A service change; a task created, removed, or reaching running or beyond (monitor)."""
        obj = change.object
        if change.kind == "task":
            if change.action != "update" or state(obj) >= RUNNING:
                return (("service", str(obj.extra.get("ServiceID") or "")),)
            return ()
        if change.kind == "service":
            return (("service", obj.id),)
        return ()

    def services_for_node(self, view: StoreView, node_id: str) -> set[str]:
        """Node changes are the orchestrators' business."""
        return set()

    def start(self, view: StoreView, now: float) -> None:
        """A new leader: what it saw running before is unknown; task times say the rest."""
        super().start(view, now)
        self.running_at.clear()

    # ---- one service -----------------------------------------------------------------------------

    def reconcile_service(
        self, ctx: Context, service: StoredObject, tasks: Sequence[StoredObject], plan: Plan
    ) -> float | None:
        """One service's step of its update (see the module docstring)."""
        status = service.extra.get("UpdateStatus")
        current = status.get("State") if isinstance(status, Mapping) else None
        if current is not None and current not in IN_PROGRESS:
            return None  # paused, or ended: the next update begins when the user updates again
        global_mode = service_mode(service) == "Global"
        slots: dict[str, list[StoredObject]] = {}
        for task in tasks:
            if desired(task) <= RUNNING:
                slots.setdefault(_slot_key(task, global_mode), []).append(task)
        dirty_slots = [
            key for key, live in sorted(slots.items())
            if not any(not is_dirty(t, service) for t in live)
            and any(state(t) <= RUNNING for t in live)
        ]  # fmt: skip
        if current is None:
            if not dirty_slots:
                return None
            plan.add(self._status(service, {
                "State": "updating", "StartedAt": format_timestamp(ctx.now), "Message": "update in progress",
            }))  # fmt: skip
            return ctx.now
        assert isinstance(status, Mapping)
        rollback = current == "rollback_started"
        cfg = update_config(service.spec, rollback)
        started = parse_timestamp(status.get("StartedAt")) - _EPSILON
        ours = [t for t in tasks if not is_dirty(t, service) and parse_timestamp(t.created_at) >= started]
        for task in ours:
            if state(task) == RUNNING and task.id not in self.running_at:
                seen = parse_timestamp(task.status.get("Timestamp")) or ctx.now
                self.running_at[task.id] = min(ctx.now, seen)
        # 1. failures
        failed = sorted(
            (t for t in ours if _stopped_early(t) and self._within_monitor(t, cfg.monitor)),
            key=lambda t: (parse_timestamp(t.status.get("Timestamp")), t.id),
        )
        updating = {_slot_key(t, global_mode) for t in ours} | set(dirty_slots)
        ratio = len(failed) / max(1, len(updating))
        if failed and cfg.failure_action != "continue" and ratio > cfg.max_failure_ratio:
            plan.add(self._fail(service, status, rollback, cfg, failed[0].id))
            return None
        # 2. start-first: old tasks go once the new one runs (or a held new one waits for them)
        for key in sorted(slots):
            live = slots[key]
            fresh = [t for t in live if not is_dirty(t, service)]
            if fresh and any(state(t) == RUNNING or t.extra.get("DesiredState") == "ready" for t in fresh):
                ops = [set_desired(t, "shutdown") for t in live if is_dirty(t, service)]
                if ops and not plan.add(*ops):
                    return ctx.now
        # 3. batches
        wake: float | None = None
        busy = 0
        last_done = 0.0
        for task in ours:
            done = self._done_at(task)
            if done is None:
                if desired(task) <= RUNNING:
                    busy += 1
                continue
            last_done = max(last_done, done + cfg.delay)
            if done + cfg.delay > ctx.now:
                busy += 1
                wake = _earliest(wake, done + cfg.delay)
        free = len(dirty_slots) if cfg.parallelism == 0 else max(0, cfg.parallelism - busy)
        for key in dirty_slots[:free]:
            if not plan.add(*self._replace(ctx, service, slots[key], cfg, global_mode)):
                return ctx.now
        if dirty_slots or busy:
            return wake
        # 4. completion, Monitor after the last worker is free
        end = max(last_done, started) + cfg.monitor
        if end > ctx.now:
            return end
        ended = {**thaw(status), "CompletedAt": format_timestamp(ctx.now)}
        if rollback:
            ended.update(State="rollback_completed", Message="rollback completed")
        else:
            ended.update(State="completed", Message="update completed")
        plan.add(self._status(service, ended))
        for task in ours:
            self.running_at.pop(task.id, None)
        return None

    def _within_monitor(self, task: StoredObject, monitor: float) -> bool:
        """Did it stop before running, or within ``monitor`` of starting? (swarmkit's rule)."""
        started = self.running_at.get(task.id)
        if started is None:
            started = parse_timestamp(task.created_at)  # not seen running: the most lenient guess
        return parse_timestamp(task.status.get("Timestamp")) - started <= monitor

    def _done_at(self, task: StoredObject) -> float | None:
        """When the task's worker was done with it: it ran (or stopped); None: not yet."""
        if state(task) < RUNNING:
            return None if desired(task) <= RUNNING else parse_timestamp(task.status.get("Timestamp"))
        seen = self.running_at.get(task.id)
        return seen if seen is not None else parse_timestamp(task.status.get("Timestamp"))

    def _replace(
        self,
        ctx: Context,
        service: StoredObject,
        live: Sequence[StoredObject],
        cfg: UpdateConfig,
        global_mode: bool,
    ) -> list[Any]:
        """One slot's replacement, written together: stop-first shuts the old task down and holds
        the new one; start-first starts the new one beside the old."""
        first = live[0]
        create = new_task(
            service,
            task_id=ctx.new_id(),
            now=ctx.now,
            slot=0 if global_mode else int(first.extra.get("Slot") or 0),
            node_id=str(first.extra.get("NodeID") or "") if global_mode else "",
            desired_state="running" if cfg.order == "start-first" else "ready",
        )
        if cfg.order == "start-first":
            return [create]
        return [*(set_desired(t, "shutdown") for t in live), create]

    def _status(self, service: StoredObject, update_status: Mapping[str, Any]) -> Update:
        """The service with a new UpdateStatus (its Spec untouched)."""
        extra = {**thaw(service.extra), "UpdateStatus": dict(update_status)}
        return Update("service", service.id, service.version, extra=extra)

    def _fail(
        self,
        service: StoredObject,
        status: Mapping[str, Any],
        rollback: bool,
        cfg: UpdateConfig,
        task_id: str,
    ) -> Update:
        """FailureAction pause or rollback, as swarmkit words it."""
        update_status = thaw(status)
        previous = service.extra.get("PreviousSpec")
        if cfg.failure_action == "rollback" and not rollback and isinstance(previous, Mapping):
            update_status.update(
                State="rollback_started",
                Message=f"update rolled back due to failure or early termination of task {task_id}",
            )
            extra = {**thaw(service.extra), "PreviousSpec": thaw(service.spec), "UpdateStatus": update_status}
            return Update("service", service.id, service.version, spec=thaw(previous), extra=extra)
        if rollback:
            update_status.update(
                State="rollback_paused",
                Message=f"rollback paused due to failure or early termination of task {task_id}",
            )
        else:
            update_status.update(
                State="paused",
                Message=f"update paused due to failure or early termination of task {task_id}",
            )
        return self._status(service, update_status)


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)
