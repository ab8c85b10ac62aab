"""One shape for every manager component: watched kinds, a dirty set, a pure reconcile.

A component (:class:`Component`) names the store kinds it watches, turns watch events into dirty
keys, and decides in a pure ``reconcile(view, dirty, now) -> Reconciled(ops, next_wakeup)``. A
harness runs it: :class:`ManagerHarness` in a manager (asyncio, wall clock, leader only, one Raft
proposal per batch), :class:`SimHarness` in the simulator (virtual time, a fake proposer). Both
write through :func:`write_reconciled`, the one place version conflicts are retried.
See docs/architecture.md, "Manager components".
"""

from manager.component.base import Component, DirtyKey, Reconciled, StoreView
from manager.component.harness import DirectProposer, ManagerHarness, SimHarness, run_now
from manager.component.runner import (
    MAX_CONFLICT_RETRIES,
    ComponentMetrics,
    ComponentRunner,
    ConflictsExhausted,
    Writer,
    write_reconciled,
)

__all__ = [
    "MAX_CONFLICT_RETRIES",
    "Component",
    "ComponentMetrics",
    "ComponentRunner",
    "ConflictsExhausted",
    "DirectProposer",
    "DirtyKey",
    "ManagerHarness",
    "Reconciled",
    "SimHarness",
    "StoreView",
    "Writer",
    "run_now",
    "write_reconciled",
]
