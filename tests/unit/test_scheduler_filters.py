"""Each filter, and the exact words a pending task shows, as recorded from a real Swarm.

The single-node recordings (single-node/07-modes-placement.txt, api/task-pending-*.json) ran on
one manager "vm" with 2 CPUs and 25 GB: the cluster ``VM`` below is that node.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from manager.scheduler import PENDING_MESSAGE, Cluster, Decisions, Pending, schedule
from manager.scheduler.build import GIB, make_node, make_service, make_task, task_template
from manager.state.store.objects import StoredObject

VM = make_node("mtf9fxg3e8rd2d0hazmk6yj01", hostname="vm", role="manager", cpus=2, memory=25276510208)


def run(
    nodes: Sequence[StoredObject],
    services: Sequence[StoredObject],
    pending: Sequence[StoredObject],
    existing: Sequence[StoredObject] = (),
) -> Decisions:
    cluster = Cluster(nodes, [*existing, *pending], {s.id: s for s in services})
    return schedule(cluster, pending)


def err_of(decisions: Decisions, task_id: str) -> str:
    return decisions.still_pending[task_id].err


# ---- the recordings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "template", "err"),
    [
        ("bigcpu", task_template(cpus=64), "no suitable node (insufficient resources on 1 node)"),
        ("bigmem", task_template(memory=100 * GIB), "no suitable node (insufficient resources on 1 node)"),
        (
            "lbl",
            task_template(constraints=["node.labels.x==nope"]),
            "no suitable node (scheduling constraints not satisfied on 1 node)",
        ),
        (
            "pinned",  # task-pending-constraint.json, from the stack
            task_template(constraints=["node.labels.disk == ssd"]),
            "no suitable node (scheduling constraints not satisfied on 1 node)",
        ),
        (
            "badc3",
            task_template(constraints=["foo==bar"]),
            "no suitable node (scheduling constraints not satisfied on 1 node)",
        ),
        (
            "badc4",
            task_template(constraints=["node.role==boss"]),
            "no suitable node (scheduling constraints not satisfied on 1 node)",
        ),
    ],
)
def test_recorded_pending_reasons(name: str, template: dict[str, object], err: str) -> None:
    service = make_service(name, template)
    task = make_task(f"{name}.1", service)
    decisions = run([VM], [service], [task])
    assert decisions.assignments == {}
    assert decisions.still_pending == {task.id: Pending("pending task scheduling", err)}
    assert PENDING_MESSAGE == "pending task scheduling"


def test_recorded_max_replicas_per_node() -> None:
    # docker service create --replicas 2 --replicas-max-per-node 1: maxper.1 runs, maxper.2 waits.
    service = make_service("maxper", task_template(max_replicas=1), replicas=2)
    tasks = [make_task(f"maxper.{i}", service, slot=i) for i in (1, 2)]
    decisions = run([VM], [service], tasks)
    assert decisions.assignments == {"maxper.1": VM.id}
    assert err_of(decisions, "maxper.2") == "no suitable node (max replicas per node limit exceed)"


def test_recorded_label_added_later_lets_the_task_run() -> None:
    service = make_service("lbl", task_template(constraints=["node.labels.x==nope"]))
    task = make_task("lbl.1", service)
    labelled = make_node(VM.id, hostname="vm", role="manager", labels={"x": "nope"})
    assert run([labelled], [service], [task]).assignments == {"lbl.1": VM.id}


# ---- ready: state and availability ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "availability"),
    [("down", "active"), ("unknown", "active"), ("disconnected", "active"), ("ready", "pause"),
     ("ready", "drain")],
)  # fmt: skip
def test_not_ready_or_not_active_is_not_available(state: str, availability: str) -> None:
    node = make_node("n1", state=state, availability=availability)
    service = make_service("s")
    decisions = run([node], [service], [make_task("t", service)])
    assert err_of(decisions, "t") == "no suitable node (1 node not available for new tasks)"


def test_counts_are_pluralised() -> None:
    nodes = [make_node(f"n{i}", availability="drain") for i in range(3)]
    service = make_service("s")
    decisions = run(nodes, [service], [make_task("t", service)])
    assert err_of(decisions, "t") == "no suitable node (3 nodes not available for new tasks)"


def test_no_nodes_at_all() -> None:
    service = make_service("s")
    assert err_of(run([], [service], [make_task("t", service)]), "t") == "no suitable node"


# ---- resources -----------------------------------------------------------------------------------


def test_reservations_of_tasks_on_the_node_count() -> None:
    node = make_node("n1", cpus=2, memory=4 * GIB)
    big = make_service("big", task_template(cpus=1.5))
    running = make_task("r", big, node_id="n1", state="running")
    service = make_service("s", task_template(cpus=1))
    decisions = run([node], [big, service], [make_task("t", service)], existing=[running])
    assert err_of(decisions, "t") == "no suitable node (insufficient resources on 1 node)"


@pytest.mark.parametrize(
    "state", ["complete", "shutdown", "failed", "rejected", "orphaned", "pending", "new"]
)
def test_tasks_not_holding_the_node_free_their_reservations(state: str) -> None:
    node = make_node("n1", cpus=2)
    big = make_service("big", task_template(cpus=2))
    old = make_task("old", big, node_id="n1", state=state)
    service = make_service("s", task_template(cpus=2))
    decisions = run([node], [big, service], [make_task("t", service)], existing=[old])
    assert decisions.assignments == {"t": "n1"}


@pytest.mark.parametrize("state", ["assigned", "accepted", "preparing", "ready", "starting", "running"])
def test_tasks_assigned_to_running_hold_their_reservations(state: str) -> None:
    node = make_node("n1", memory=2 * GIB)
    big = make_service("big", task_template(memory=GIB + 1))
    # Desired shutdown but still running: it no longer counts for spread, but still holds memory.
    old = make_task("old", big, node_id="n1", state=state, desired="shutdown")
    service = make_service("s", task_template(memory=GIB))
    decisions = run([node], [big, service], [make_task("t", service)], existing=[old])
    assert err_of(decisions, "t") == "no suitable node (insufficient resources on 1 node)"


def test_exact_fit_is_a_fit() -> None:
    node = make_node("n1", cpus=2, memory=4 * GIB)
    service = make_service("s", task_template(cpus=2, memory=4 * GIB))
    assert run([node], [service], [make_task("t", service)]).assignments == {"t": "n1"}


def test_a_batch_fills_nodes_then_waits() -> None:
    nodes = [make_node(f"n{i}", cpus=4) for i in range(2)]
    service = make_service("s", task_template(cpus=1), replicas=10)
    tasks = [make_task(f"t{i:02}", service, slot=i) for i in range(1, 11)]
    decisions = run(nodes, [service], tasks)
    assert sorted(decisions.assignments.values()) == ["n0"] * 4 + ["n1"] * 4
    assert set(decisions.still_pending) == {"t09", "t10"}
    assert err_of(decisions, "t10") == "no suitable node (insufficient resources on 2 nodes)"


# ---- platform, host ports ----------------------------------------------------------------------


def test_platform_filter_normalises_architectures() -> None:
    nodes = [
        make_node("amd", arch="x86_64"), make_node("arm", arch="aarch64"), make_node("win", os="windows"),
    ]  # fmt: skip
    service = make_service("s", task_template(platforms=[("linux", "arm64")]), replicas=2)
    tasks = [make_task(f"t{i}", service, slot=i) for i in (1, 2)]
    decisions = run(nodes, [service], tasks)
    assert decisions.assignments == {"t1": "arm", "t2": "arm"}
    anyarch = make_service("a", task_template(platforms=[("windows", "")]))
    assert run(nodes, [anyarch], [make_task("w", anyarch)]).assignments == {"w": "win"}
    mips = make_service("m", task_template(platforms=[("linux", "mips64")]))
    assert err_of(run(nodes, [mips], [make_task("m1", mips)]), "m1") == (
        "no suitable node (unsupported platform on 3 nodes)"
    )


def test_host_mode_ports_conflict_per_node_and_protocol() -> None:
    nodes = [make_node("n1"), make_node("n2")]
    web = make_service("web", host_ports=[8080], replicas=3)
    tasks = [make_task(f"w{i}", web, slot=i) for i in (1, 2, 3)]
    decisions = run(nodes, [web], tasks)
    assert sorted(decisions.assignments.values()) == ["n1", "n2"]
    assert err_of(decisions, "w3") == "no suitable node (host-mode port already in use on 2 nodes)"
    udp = make_service("dns", host_ports=[(8080, "udp")])
    running = [make_task(f"r{i}", web, node_id=n.id, state="running") for i, n in enumerate(nodes)]
    assert run(nodes, [web, udp], [make_task("u", udp)], existing=running).assignments == {"u": "n1"}
    anyport = make_service("any", host_ports=[0], replicas=3)
    spread = [make_task(f"a{i}", anyport, slot=i) for i in (1, 2, 3)]
    assert len(run(nodes, [anyport], spread).assignments) == 3  # port 0 never conflicts


# ---- max replicas --------------------------------------------------------------------------------


def test_seven_replicas_max_one_on_five_nodes() -> None:
    nodes = [make_node(f"n{i}") for i in range(5)]
    service = make_service("s", task_template(max_replicas=1), replicas=7)
    tasks = [make_task(f"t{i}", service, slot=i) for i in range(1, 8)]
    decisions = run(nodes, [service], tasks)
    assert sorted(decisions.assignments.values()) == [n.id for n in nodes]
    assert decisions.still_pending == {
        "t6": Pending("pending task scheduling", "no suitable node (max replicas per node limit exceed)"),
        "t7": Pending("pending task scheduling", "no suitable node (max replicas per node limit exceed)"),
    }


def test_max_replicas_counts_only_tasks_meant_to_run() -> None:
    node = make_node("n1")
    service = make_service("s", task_template(max_replicas=1))
    stopping = make_task("old", service, node_id="n1", state="running", desired="shutdown")
    assert run([node], [service], [make_task("t", service)], existing=[stopping]).assignments == {"t": "n1"}
    running = make_task("old", service, node_id="n1", state="running")
    decisions = run([node], [service], [make_task("t", service)], existing=[running])
    assert err_of(decisions, "t") == "no suitable node (max replicas per node limit exceed)"


# ---- how explanations combine ----------------------------------------------------------------------


def test_explanations_most_failures_first() -> None:
    nodes = [
        make_node("d1", availability="drain"),
        make_node("d2", state="down"),
        make_node("d3", availability="pause"),
        make_node("small1", cpus=1),
        make_node("small2", cpus=1),
    ]
    service = make_service("s", task_template(cpus=2))
    decisions = run(nodes, [service], [make_task("t", service)])
    assert err_of(decisions, "t") == (
        "no suitable node (3 nodes not available for new tasks; insufficient resources on 2 nodes)"
    )
    more_small = [*nodes[:1], *(make_node(f"small{i}", cpus=1) for i in range(3))]
    assert err_of(run(more_small, [service], [make_task("t", service)]), "t") == (
        "no suitable node (insufficient resources on 3 nodes; 1 node not available for new tasks)"
    )


def test_ties_keep_pipeline_order() -> None:
    nodes = [make_node("a", labels={}), make_node("b", availability="drain"), make_node("c", cpus=0.5)]
    service = make_service("s", task_template(cpus=1, constraints=["node.labels.disk==ssd"]))
    decisions = run(nodes, [service], [make_task("t", service)])
    assert err_of(decisions, "t") == (
        "no suitable node (1 node not available for new tasks; insufficient resources on 1 node; "
        "scheduling constraints not satisfied on 1 node)"
    )


def test_a_node_is_charged_to_its_first_failing_filter_only() -> None:
    node = make_node("n1", availability="drain", cpus=1)
    service = make_service("s", task_template(cpus=8, constraints=["node.labels.disk==ssd"]))
    decisions = run([node], [service], [make_task("t", service)])
    assert err_of(decisions, "t") == "no suitable node (1 node not available for new tasks)"


def test_unparsable_stored_constraints_are_ignored_like_swarmkit() -> None:
    service = make_service("s", task_template(constraints=["node.labels.x=y"]))
    assert run([VM], [service], [make_task("t", service)]).assignments == {"t": VM.id}
