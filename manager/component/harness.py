"""Two harnesses that run any component unchanged: in a manager, and in the simulator.

* :class:`ManagerHarness`: asyncio and the wall clock. It runs the component only while
  ``is_leader()`` holds (a component writes, and only the leader proposes); it writes through
  the manager's write path (``ManagerRuntime.write``: one Raft proposal per batch).
* :class:`SimHarness`: a :class:`nodeagent.sim.Simulator`'s virtual time and timers. It writes
  through a fake proposer, by default :class:`DirectProposer` (the store applied directly at the
  next index, stamped with virtual time), so a run depends only on its seed.

Both call :class:`manager.component.runner.ComponentRunner`, so the dirty set, the wake-up
and the conflict retry are the same code in both. Lifecycle: ``run()`` then ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from manager.component.base import Component
from manager.component.runner import ComponentMetrics, ComponentRunner, ConflictsExhausted, Writer
from manager.state.store.commands import Op, encode_batch
from manager.state.store.errors import StoreError
from manager.state.store.objects import format_timestamp
from manager.state.store.store import ApplyResult, Store

if TYPE_CHECKING:
    # Only for the simulator's harness: a manager does not import the simulator.
    from nodeagent.sim.scheduler import Simulator, Timer

__all__ = ["DirectProposer", "ManagerHarness", "SimHarness", "run_now"]

log = logging.getLogger(__name__)


class ManagerHarness:
    """Runs one component in a manager: on the leader only, on the wall clock, writing via Raft."""

    def __init__(
        self,
        component: Component,
        store: Store,
        write: Writer,
        *,
        is_leader: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        check_every: float = 0.1,
        retry_after: float = 0.1,
        metrics: ComponentMetrics | None = None,
    ) -> None:
        """``check_every``: the longest sleep between looks at leadership (seconds);
        ``retry_after``: the pause after a failed pass (no leader, a timeout, a refused batch)."""
        self.component = component
        self.write = write
        self.is_leader = is_leader
        self.clock = clock
        self.check_every = check_every
        self.retry_after = retry_after
        self.runner = ComponentRunner(component, store, clock, metrics)
        self._event = asyncio.Event()
        self._stopped = False

    async def run(self) -> None:
        """Until :meth:`stop`: follow leadership, reconcile on commits and timers."""
        runner = self.runner
        try:
            while not self._stopped:
                if not self.is_leader():
                    if runner.running:
                        log.info("%s: not the leader any more; stopped", self.component.name)
                        runner.close()
                    await self._sleep(self.check_every)
                    continue
                if not runner.running:
                    log.info("%s: leading; started", self.component.name)
                    runner.open(self._event.set)
                runner.collect()
                if runner.due(self.clock()):
                    try:
                        await runner.reconcile_once(self.write)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        # Lost leadership, no leader, a timeout (the write may still apply) or a
                        # refused batch: the keys stay dirty; look again shortly, re-reading.
                        log.debug("%s: pass failed: %s", self.component.name, exc)
                        await self._sleep(self.retry_after, backoff=True)
                    continue
                await self._sleep(self._until_due())
        finally:
            runner.close()

    def _until_due(self) -> float:
        wake = self.runner.next_wakeup
        if wake is None:
            return self.check_every
        return max(0.0, min(self.check_every, wake - self.clock()))

    async def _sleep(self, seconds: float, *, backoff: bool = False) -> None:
        """Wait for a watched commit, a poke or ``seconds``, whichever comes first.

        After a failed pass (``backoff``) the kept dirty keys do not cut the wait short."""
        self._event.clear()
        if self._stopped or (self.runner.dirty and not backoff):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)

    def stop(self) -> None:
        """End :meth:`run` at its next step (its task may also simply be cancelled)."""
        self._stopped = True
        self._event.set()


class DirectProposer:
    """A fake proposer: applies each batch to the store at the next index, at virtual time.

    Then it tells the watches, as a manager's apply path does, and raises the batch's
    StoreError if it was refused. It never waits, so :func:`run_now` can drive it.
    """

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.batches = 0

    async def __call__(self, ops: Sequence[Op]) -> ApplyResult:
        """Apply one batch now."""
        store = self.store
        data = encode_batch(list(ops), now=format_timestamp(self.clock()))
        result = store.apply(store.applied_index + 1, data)
        store.notify_watches()
        self.batches += 1
        if not result.ok:
            raise result.error if result.error is not None else StoreError("batch refused")
        return result


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (a simulated write) to its end, and return its value."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a simulated write must complete without waiting")


class SimHarness:
    """Runs one component in the simulator, on virtual time; the same seed gives the same run."""

    def __init__(
        self,
        component: Component,
        sim: Simulator,
        store: Store,
        write: Writer | None = None,
        *,
        is_leader: Callable[[], bool] | None = None,
        metrics: ComponentMetrics | None = None,
    ) -> None:
        """``write`` must not wait (default: a :class:`DirectProposer` on ``store``)."""
        self.component = component
        self.sim = sim
        self.write: Writer = write if write is not None else DirectProposer(store, sim.clock)
        self.is_leader = is_leader or _always
        self.runner = ComponentRunner(component, store, sim.clock, metrics)
        self._timer: Timer | None = None
        self.passes = 0

    def run(self) -> None:
        """Start: subscribe and schedule the first pass at the current virtual time."""
        self.runner.open(self._soon)
        self._soon()

    def stop(self) -> None:
        """Stop: cancel the pending pass and unsubscribe."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.runner.close()

    def _soon(self) -> None:
        self._schedule(self.sim.now)

    def _schedule(self, when: float) -> None:
        if self._timer is not None and not self._timer.cancelled:
            if self._timer.when <= when:
                return
            self._timer.cancel()
        self._timer = self.sim.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        runner = self.runner
        if not runner.running:
            return
        runner.collect()
        if self.is_leader() and runner.due(self.sim.now):
            self.passes += 1
            try:
                run_now(runner.reconcile_once(self.write))
            except (StoreError, ConflictsExhausted) as exc:
                # Refused, or a conflict every time: the keys stay dirty; try again shortly.
                log.debug("%s: simulated pass failed: %s", self.component.name, exc)
                self._schedule(self.sim.now + 0.1)
                return
        if runner.next_wakeup is not None:
            self._schedule(runner.next_wakeup)


def _always() -> bool:
    return True
