"""The components a manager runs while it leads: orchestrators, update supervisor, task reaper,
allocator, scheduler.

Each runs in its own :class:`manager.component.ManagerHarness`, which follows leadership: it
starts the component when this manager becomes leader (every watched object dirty) and stops it
when it no longer leads. They write through the manager's one write path (a Raft proposal per
batch). Their clock is the wall clock (``time.time``), not the monotonic one: the restart
supervisor compares ``now`` with task timestamps, which the leader stamps from the wall clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from manager.allocator import Allocator
from manager.component import ComponentMetrics, ManagerHarness
from manager.component.base import Component
from manager.orchestrator import (
    GlobalJobOrchestrator,
    GlobalOrchestrator,
    ReplicatedJobOrchestrator,
    ReplicatedOrchestrator,
    TaskReaper,
    UpdateSupervisor,
)
from manager.scheduler.component import SchedulerComponent
from manager.state.store.commands import Op
from manager.state.store.store import Store

__all__ = ["leader_components", "start_leader_components"]


def leader_components(rng: random.Random) -> list[Component]:
    """The components, each orchestrator with its own ID stream drawn from ``rng``."""
    return [
        ReplicatedOrchestrator(random.Random(rng.getrandbits(64))),
        GlobalOrchestrator(random.Random(rng.getrandbits(64))),
        ReplicatedJobOrchestrator(random.Random(rng.getrandbits(64))),
        GlobalJobOrchestrator(random.Random(rng.getrandbits(64))),
        UpdateSupervisor(random.Random(rng.getrandbits(64))),
        TaskReaper(),
        Allocator(),
        SchedulerComponent(),
    ]


def start_leader_components(
    store: Store,
    write: Callable[[Sequence[Op]], Any],
    is_leader: Callable[[], bool],
    rng: random.Random,
    *,
    time_scale: float = 1.0,
    metrics: ComponentMetrics | None = None,
) -> list[tuple[ManagerHarness, asyncio.Task[None]]]:
    """Start one harness per component on the running loop; the caller cancels the tasks."""
    started = []
    for component in leader_components(rng):
        harness = ManagerHarness(
            component,
            store,
            write,
            is_leader=is_leader,
            clock=time.time,
            check_every=0.1 * time_scale,
            retry_after=0.1 * time_scale,
            metrics=metrics,
        )
        started.append((harness, asyncio.create_task(harness.run(), name=component.name)))
    return started
