"""Property test: on a few hundred random clusters, no placement breaks a filter, and a task left
pending fits nowhere. The oracle below re-derives every rule from the task and node JSON on its
own (only the constraint matcher is shared; it has its own table tests), and replays the
scheduler's decisions in the order it made them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import pytest

from manager.scheduler import Cluster, parse_constraints, schedule
from manager.scheduler.build import GIB, make_node, make_service, make_task, task_template
from manager.scheduler.constraint import node_matches
from manager.state.store.objects import StoredObject

HOLDING = {"assigned", "accepted", "preparing", "ready", "starting", "running"}
ACTIVE_DESIRED = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
                  "complete"}  # fmt: skip
CONSTRAINTS = [
    "node.labels.zone==a", "node.labels.zone!=a", "node.labels.disk==ssd", "node.role==manager",
    "node.role!=manager", "node.platform.os==linux", "engine.labels.gpu==yes", "node.hostname!=n0",
]  # fmt: skip


@dataclass
class Oracle:
    """Each node's free resources, active tasks per service, and host ports in use."""

    nodes: dict[str, StoredObject]
    services: dict[str, StoredObject]
    cpu: dict[str, int] = field(default_factory=dict)
    mem: dict[str, int] = field(default_factory=dict)
    count: dict[tuple[str, str], int] = field(default_factory=dict)
    ports: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.nodes.values():
            res = n.extra["Description"]["Resources"]
            self.cpu[n.id], self.mem[n.id], self.ports[n.id] = res["NanoCPUs"], res["MemoryBytes"], set()

    def need(self, task: StoredObject) -> tuple[int, int]:
        res = task.spec["Resources"]["Reservations"]
        return res.get("NanoCPUs", 0), res.get("MemoryBytes", 0)

    def host_ports(self, task: StoredObject) -> set[tuple[str, int]]:
        ports = self.services[task.extra["ServiceID"]].spec["EndpointSpec"]["Ports"]
        return {(p["Protocol"], p["PublishedPort"]) for p in ports if p["PublishMode"] == "host"}

    def add(self, task: StoredObject, node_id: str, *, active: bool) -> None:
        cpu, mem = self.need(task)
        self.cpu[node_id] -= cpu
        self.mem[node_id] -= mem
        self.ports[node_id] |= self.host_ports(task)
        if active:
            key = (node_id, task.extra["ServiceID"])
            self.count[key] = self.count.get(key, 0) + 1

    def fits(self, task: StoredObject, node_id: str) -> bool:
        node = self.nodes[node_id]
        if node.status["State"] != "ready" or node.spec["Availability"] != "active":
            return False
        cpu, mem = self.need(task)
        if (cpu or mem) and (cpu > self.cpu[node_id] or mem > self.mem[node_id]):
            return False
        placement = task.spec["Placement"]
        desc = node.extra["Description"]
        api = {"ID": node.id, "Spec": node.spec, "Description": desc, "Status": node.status}
        if not node_matches(parse_constraints(placement.get("Constraints", [])), api):
            return False
        os, arch = desc["Platform"]["OS"], desc["Platform"]["Architecture"]
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
        wanted = placement.get("Platforms", [])
        if wanted and not any(p["OS"] in ("", os) and p["Architecture"] in ("", arch) for p in wanted):
            return False
        if self.host_ports(task) & self.ports[node_id]:
            return False
        limit = placement.get("MaxReplicas", 0)
        return not limit or self.count.get((node_id, task.extra["ServiceID"]), 0) < limit


def labels(**pairs: str) -> dict[str, str]:
    return {k: v for k, v in pairs.items() if v != "-"}


def random_cluster(rng: random.Random) -> tuple[list[StoredObject], list[StoredObject], list[StoredObject],
                                                list[StoredObject]]:  # fmt: skip
    nodes = [
        make_node(
            f"n{i}",
            role=rng.choice(["manager", "worker", "worker"]),
            state=rng.choice(["ready"] * 8 + ["down", "unknown"]),
            availability=rng.choice(["active"] * 8 + ["pause", "drain"]),
            labels=labels(zone=rng.choice("ab-"), disk=rng.choice(["ssd", "hdd", "-"])),
            engine_labels={"gpu": "yes"} if rng.random() < 0.3 else {},
            cpus=rng.choice([0, 1, 2, 4, 8]),
            memory=rng.choice([0, 1, 2, 4, 8]) * GIB,
            os=rng.choice(["linux"] * 5 + ["windows"]),
            arch=rng.choice(["x86_64", "aarch64"]),
        )
        for i in range(rng.randint(0, 9))
    ]
    services = []
    for s in range(rng.randint(1, 4)):
        template = task_template(
            cpus=rng.choice([0, 0, 0.5, 1, 2]),
            memory=rng.choice([0, 0, GIB // 2, GIB]),
            constraints=rng.sample(CONSTRAINTS, rng.choice([0, 0, 0, 1, 1, 2])),
            preferences=rng.choice([[], [], ["node.labels.zone"], ["node.labels.zone", "node.labels.disk"]]),
            max_replicas=rng.choice([0, 0, 0, 1, 2]),
            platforms=rng.choice([[]] * 4 + [[("linux", "arm64")], [("", "amd64"), ("windows", "")]]),
        )
        ports = rng.choice([[]] * 4 + [[8080], [80, (53, "udp")]])
        services.append(make_service(f"s{s}", template, host_ports=ports))
    existing, pending = [], []
    states = ["running"] * 4 + ["assigned", "starting", "complete", "failed", "shutdown", "pending"]
    for i in range(rng.randint(0, 10) if nodes else 0):
        service = rng.choice(services)
        existing.append(make_task(
            f"e{i:02}", service, node_id=rng.choice(nodes).id, state=rng.choice(states),
            desired=rng.choice(["running", "running", "shutdown"]),
        ))  # fmt: skip
    for service in services:
        for slot in range(1, rng.randint(1, 7)):
            node_id = rng.choice(nodes).id if nodes and rng.random() < 0.1 else ""
            pending.append(make_task(f"p{service.id}-{slot}", service, slot=slot, node_id=node_id))
    return nodes, services, existing, pending


@pytest.mark.parametrize("seed", range(300))
def test_no_placement_breaks_a_filter_and_pending_fits_nowhere(seed: int) -> None:
    rng = random.Random(seed)
    nodes, services, existing, pending = random_cluster(rng)
    oracle = Oracle({n.id: n for n in nodes}, {s.id: s for s in services})
    for task in existing:
        if task.status["State"] in HOLDING:
            oracle.add(task, task.extra["NodeID"], active=task.extra["DesiredState"] in ACTIVE_DESIRED)
    by_id = {t.id: t for t in pending}
    order: list[tuple[str, str | None]] = []
    decisions = schedule(
        Cluster(nodes, [*existing, *pending], oracle.services), pending,
        on_decision=lambda task_id, node_id: order.append((task_id, node_id)),
    )  # fmt: skip

    left: list[StoredObject] = []
    for task_id, node_id in order:
        task = by_id[task_id]
        preassigned = task.extra["NodeID"]
        if node_id is None:
            if preassigned:
                assert not oracle.fits(task, preassigned), task_id
            else:
                left.append(task)
            continue
        assert not preassigned or preassigned == node_id
        assert oracle.fits(task, node_id), (seed, task_id, node_id)
        oracle.add(task, node_id, active=True)
    for task in left:
        assert not any(oracle.fits(task, n.id) for n in nodes), (seed, task.id)

    decided = [task_id for task_id, _ in order]
    assert len(decided) == len(set(decided))
    assert set(decided) == set(decisions.assignments) | set(decisions.still_pending)
    assert set(decided) >= {t.id for t in pending if not t.extra["NodeID"]}
    for task in left:
        err = decisions.still_pending[task.id].err
        assert err.startswith("no suitable node")
        counted = sum(int(n) for n in re.findall(r"(\d+) nodes?", err))
        if "max replicas" in err:
            assert counted < len(nodes)
        else:
            assert counted == len(nodes)  # every node charged to exactly one filter


def test_random_clusters_place_most_tasks() -> None:
    """Guard the property test against vacuity: it must see both outcomes often."""
    placed = pending = 0
    for seed in range(300):
        nodes, services, existing, tasks = random_cluster(random.Random(seed))
        decisions = schedule(Cluster(nodes, [*existing, *tasks], {s.id: s for s in services}), tasks)
        placed += len(decisions.assignments)
        pending += len(decisions.still_pending)
    assert placed > 300 and pending > 300

