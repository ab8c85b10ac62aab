"""Docker's own ``swarm_manager_*`` metrics, read from the store when Prometheus scrapes.

A real Swarm manager exports object counts from its store (swarmkit's manager/metrics
collector) and whether it leads. swarmlet's store holds the same objects, so the same names,
types and labels map directly: dashboards and alerts written against Docker's metrics work
here. They are computed at scrape time on the agent's loop (the loop that applies the store),
so no count can drift from the store, and nothing in the store's apply path knows about them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from manager.state.store.objects import TASK_STATES

__all__ = ["NODE_STATES", "SwarmManagerMetrics"]

#: Node states as Docker's swarm_manager_nodes labels them (swarmkit's NodeStatus_State, lower case).
NODE_STATES = ("unknown", "down", "ready", "disconnected")


class SwarmManagerMetrics(Collector):
    """``swarm_manager_leader``, ``swarm_manager_nodes{state}``, ``swarm_manager_tasks_total{state}``
    and the services, networks, secrets and configs totals (all gauges, as Docker's); and
    swarmlet's ``swarmlet_tasks{service, state}``, from the leader only.

    Docker's gauges are answered by every manager (each applies the same store), so a sum over
    a cluster's managers counts every task once per manager. ``swarmlet_tasks`` has series on
    the leader alone, so that ``sum by (state) (swarmlet_tasks)`` over every node Prometheus
    scrapes is the cluster's count; a follower exposes the family without series."""

    def __init__(self, runtime: Any) -> None:
        """``runtime`` is the :class:`manager.runtime.ManagerRuntime` (its store and Raft shell)."""
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per series, from the store as this manager has applied it."""
        store = self.runtime.store
        shell = self.runtime.shell
        leader = GaugeMetricFamily("swarm_manager_leader", "Indicates if this manager node is a leader")
        leader.add_metric([], 1.0 if shell is not None and shell.is_leader else 0.0)
        yield leader

        nodes = Counter(str(n.status.get("State") or "unknown") for n in store.find("node"))
        family = GaugeMetricFamily("swarm_manager_nodes", "The number of nodes", labels=["state"])
        for state in NODE_STATES:
            family.add_metric([state], float(nodes.get(state, 0)))
        yield family

        tasks = Counter(str(t.status.get("State") or "new") for t in store.find("task"))
        family = GaugeMetricFamily("swarm_manager_tasks_total",
                                   "The number of tasks in the cluster object store", labels=["state"])
        for state in TASK_STATES:
            family.add_metric([state], float(tasks.get(state, 0)))
        yield family

        family = GaugeMetricFamily("swarmlet_tasks", "Tasks in the store by service and state (leader only)",
                                   labels=["service", "state"])
        if shell is not None and shell.is_leader:
            names = {s.id: s.name for s in store.find("service")}
            by_service = Counter(
                (names.get(str(t.extra.get("ServiceID") or ""), ""), str(t.status.get("State") or "new"))
                for t in store.find("task")
            )
            for (service, state), count in sorted(by_service.items()):
                family.add_metric([service, state], float(count))
        yield family

        for kind in ("service", "network", "secret", "config"):
            yield GaugeMetricFamily(f"swarm_manager_{kind}s_total",
                                    f"The number of {kind}s in the cluster object store",
                                    value=float(store.count(kind)))
