"""What every orchestrator does with one active task of a service: restart it under the restart
policy when it stopped or lost its node, or release it when it was held and its time has come.

Kept apart from :mod:`manager.orchestrator.restart` because it takes the orchestrators' pass
(:class:`~manager.orchestrator.base.Context`, :class:`~manager.orchestrator.base.Plan`), and
``base`` itself reads the restart defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from manager.orchestrator.base import Context, Plan
from manager.orchestrator.common import set_desired
from manager.orchestrator.restart import held_start, release_state, restart
from manager.state.store.objects import StoredObject

__all__ = ["restart_or_release"]


def restart_or_release(
    ctx: Context, plan: Plan, task: StoredObject, service: StoredObject, tasks: Sequence[StoredObject],
    node: StoredObject | None, *, restart_now: bool,
) -> float | None:
    """One active task as every orchestrator tends it: with ``restart_now`` (it stopped, or lost
    its node) replaced under the restart policy; else, if held (DesiredState ``ready``), released
    once :func:`held_start` says so. Returns when to look again (a held start still to come), or
    None. ``tasks`` are the task's slot (or node, or job) group."""
    if restart_now:
        ops, held = restart(task, service, slot_tasks=tasks, node=node, now=ctx.now, new_id=ctx.new_id,
                            default_delay=ctx.default_delay)  # fmt: skip
        return held if plan.add(*ops) else None
    if task.extra.get("DesiredState") != "ready":
        return None
    when = held_start(task, tasks, ctx.nodes(), ctx.default_delay)
    if when > ctx.now:
        return when
    plan.add(set_desired(task, release_state(task)))
    return None
