"""The leader's components run in manager harnesses on the wall clock, only while leading."""

from __future__ import annotations

import asyncio
import random

from _orch import World

from manager.leader import leader_components, start_leader_components


def test_one_component_of_each_kind() -> None:
    names = [c.name for c in leader_components(random.Random(1))]
    assert names == [
        "orchestrator-replicated", "orchestrator-global", "orchestrator-replicated-job",
        "orchestrator-global-job", "update-supervisor", "task-reaper", "allocator", "scheduler",
    ]  # fmt: skip


def test_a_service_is_placed_while_leading_and_nothing_runs_after() -> None:
    w = World()
    leading = [True]

    async def main() -> None:
        started = start_leader_components(
            w.store, w.write, lambda: leading[0], random.Random(2), time_scale=0.2
        )
        sid = w.service("web", mode={"Replicated": {"Replicas": 3}})
        for _ in range(200):
            await asyncio.sleep(0.01)
            if [t.status["State"] for t in w.tasks(sid)] == ["assigned"] * 3:
                break
        assert sorted(str(t.extra["NodeID"]) for t in w.tasks(sid)) == ["n1", "n2", "n3"]
        leading[0] = False
        await asyncio.sleep(0.1)
        assert not any(h.runner.running for h, _ in started)
        w.update_spec(sid, Mode={"Replicated": {"Replicas": 5}})
        await asyncio.sleep(0.1)
        assert len(w.tasks(sid)) == 3  # a follower's components write nothing
        for harness, task in started:
            harness.stop()
            await task

    asyncio.run(main())
