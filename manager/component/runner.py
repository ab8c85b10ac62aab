"""What every harness shares: the watch, the dirty set, the wake-up time and the one write path.

:func:`write_reconciled` is the only place where a component's ops are written and where a
version conflict ("update out of sequence") is retried: it re-reads (the view is live, and the
conflicting write has been applied by the time the proposal fails) and reconciles again. Both
harnesses (the asyncio one in a manager, the simulator's) go through it unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import prometheus_client

from manager.component.base import Component, DirtyKey, StoreView
from manager.state.store.commands import Op
from manager.state.store.errors import UpdateOutOfSequence
from manager.state.store.store import Store
from manager.state.store.watch import Watch

__all__ = [
    "MAX_CONFLICT_RETRIES",
    "ComponentMetrics",
    "ComponentRunner",
    "ConflictsExhausted",
    "Writer",
    "write_reconciled",
]

log = logging.getLogger(__name__)

Writer = Callable[[Sequence[Op]], Awaitable[Any]]
"""Writes one batch and returns once it is applied here; raises the batch's StoreError if refused
(on a manager: ``ManagerRuntime.write``, a Raft proposal)."""

MAX_CONFLICT_RETRIES = 5
"""How many times one reconcile is redone after "update out of sequence" before giving up
(the keys stay dirty, so the next pass tries again)."""


class ConflictsExhausted(Exception):
    """Every attempt of one pass met a concurrent write; the dirty keys are kept for the next."""


class ComponentMetrics:
    """The components' metrics on one registry (create one per registry, share it)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self.reconciles = prometheus_client.Counter(
            "swarmlet_component_reconciles", "Reconcile passes by component", ["component"],
            registry=registry,
        )  # fmt: skip
        self.seconds = prometheus_client.Histogram(
            "swarmlet_component_reconcile_seconds", "Wall time of one reconcile call", ["component"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5), registry=registry,
        )  # fmt: skip
        self.batches = prometheus_client.Counter(
            "swarmlet_component_batches", "Batches written by component", ["component"], registry=registry
        )
        self.conflicts = prometheus_client.Counter(
            "swarmlet_component_conflicts", "Writes retried after update out of sequence", ["component"],
            registry=registry,
        )  # fmt: skip
        self.errors = prometheus_client.Counter(
            "swarmlet_component_errors", "Passes that failed (not leader, timeout, refused)", ["component"],
            registry=registry,
        )  # fmt: skip


async def write_reconciled(
    component: Component,
    view: StoreView,
    dirty: frozenset[DirtyKey],
    clock: Callable[[], float],
    write: Writer,
    metrics: ComponentMetrics | None = None,
) -> float | None:
    """Reconcile, write the ops in one batch, and on a version conflict re-read and reconcile again.

    Returns the component's ``next_wakeup``. Raises ConflictsExhausted after
    MAX_CONFLICT_RETRIES conflicts, and whatever else ``write`` raises (not leader, timeout,
    a refused batch): the caller keeps the dirty keys then.
    """
    name = component.name
    for _attempt in range(MAX_CONFLICT_RETRIES):
        started = time.perf_counter()  # metrics only: never seen by reconcile
        ops, next_wakeup = component.reconcile(view, dirty, clock())
        if metrics is not None:
            metrics.reconciles.labels(name).inc()
            metrics.seconds.labels(name).observe(time.perf_counter() - started)
        if not ops:
            return next_wakeup
        try:
            await write(list(ops))
        except UpdateOutOfSequence:
            # Someone wrote one of these objects first. The proposal fails only once the
            # conflicting entry has been applied here, so the view already shows it.
            if metrics is not None:
                metrics.conflicts.labels(name).inc()
            log.debug("%s: update out of sequence; reconciling again", name)
            continue
        if metrics is not None:
            metrics.batches.labels(name).inc()
        return next_wakeup
    raise ConflictsExhausted(f"{name}: {MAX_CONFLICT_RETRIES} conflicting writes in a row")


class ComponentRunner:
    """One component over one store: its watch, its dirty set and its next wake-up.

    The harnesses drive it: :meth:`open` when the component starts running (a manager: on
    becoming leader), :meth:`collect` when the watch has news, :meth:`due` to ask whether a
    pass is wanted, :meth:`reconcile_once` to do one, :meth:`close` when it stops.
    """

    def __init__(
        self,
        component: Component,
        store: Store,
        clock: Callable[[], float],
        metrics: ComponentMetrics | None = None,
    ) -> None:
        """``clock`` is the harness's: the wall clock in a manager, virtual time in the simulator."""
        self.component = component
        self.store = store
        self.view = StoreView(store)
        self.clock = clock
        self.metrics = metrics
        self.dirty: set[DirtyKey] = set()
        self.next_wakeup: float | None = None
        self.watch: Watch | None = None
        self._wake: Callable[[], None] = _nothing

    @property
    def running(self) -> bool:
        """Whether the runner is open (its watch subscribed)."""
        return self.watch is not None

    def open(self, wake: Callable[[], None]) -> None:
        """Subscribe, mark every watched object dirty, and start the component.

        ``wake`` is called (maybe often) whenever a pass may be due: a watched commit or a poke.
        """
        self._wake = wake
        self.watch = self.store.watch(self.component.kinds, on_change=wake)
        self.dirty = {(kind, obj.id) for kind in sorted(self.component.kinds) for obj in self.view.find(kind)}
        self.next_wakeup = None
        self.component.attach(self._poked)
        self.component.start(self.view, self.clock())

    def close(self) -> None:
        """Unsubscribe and detach; what was dirty is dropped (the next open starts afresh)."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        self.component.attach(None)
        self._wake = _nothing
        self.dirty.clear()
        self.next_wakeup = None

    def _poked(self, keys: Iterable[DirtyKey]) -> None:
        self.dirty.update(keys)
        self._wake()

    def collect(self) -> None:
        """Turn the watch's queued changes into dirty keys."""
        if self.watch is None:
            return
        for change in self.watch.poll():
            self.dirty.update(self.component.dirty_keys(change))

    def due(self, now: float) -> bool:
        """Whether a pass is wanted now: something is dirty, or the wake-up time has come."""
        return bool(self.dirty) or (self.next_wakeup is not None and now >= self.next_wakeup)

    async def reconcile_once(self, write: Writer) -> None:
        """One pass through :func:`write_reconciled`; on failure the dirty keys are kept."""
        dirty, self.dirty = frozenset(self.dirty), set()
        try:
            self.next_wakeup = await write_reconciled(
                self.component, self.view, dirty, self.clock, write, self.metrics
            )
        except BaseException:
            self.dirty |= dirty
            if self.metrics is not None:
                self.metrics.errors.labels(self.component.name).inc()
            raise


def _nothing() -> None:
    return None
