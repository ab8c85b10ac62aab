"""explain(): every filter on every node, why, and what would make the task fit."""

from __future__ import annotations

from manager.scheduler import Cluster, NodeReport, explain, explain_service, schedule
from manager.scheduler.build import GIB, make_node, make_service, make_task, task_template


def checks_of(report: NodeReport) -> dict[str, tuple[bool, str, str]]:
    return {c.filter: (c.passed, c.reason, c.fix) for c in report.checks}


def test_each_failing_filter_says_why_and_how_to_fit() -> None:
    nodes = [
        make_node("n1", hostname="worker1", availability="drain", labels={"disk": "ssd"}),
        make_node("n2", hostname="worker2", labels={"disk": "hdd"}),
        make_node("n3", hostname="worker3", labels={"disk": "ssd"}, cpus=1, memory=GIB),
        make_node("n4", hostname="worker4", state="down", labels={"disk": "ssd"}),
    ]
    service = make_service("db", task_template(cpus=2, memory=2 * GIB, constraints=["node.labels.disk==ssd"]))
    task = make_task("db.1", service)
    result = explain(task, nodes, [task], {service.id: service})
    by_node = {r.node_id: r for r in result.nodes}

    assert by_node["n1"].charged_to == "ready"
    assert checks_of(by_node["n1"])["ready"] == (
        False, "node availability is drain", "docker node update --availability active worker1",
    )  # fmt: skip
    assert checks_of(by_node["n1"])["constraints"][0]  # everything else would pass there
    assert checks_of(by_node["n4"])["ready"][1] == "node is down, not ready"

    passed, reason, fix = checks_of(by_node["n2"])["constraints"]
    assert not passed and reason == "node.labels.disk == ssd: the node has 'hdd'"
    assert fix == "docker node update --label-add disk=ssd worker2"

    passed, reason, fix = checks_of(by_node["n3"])["resources"]
    assert not passed
    assert reason == "reserves 2 CPU, 1 of 1 free; reserves 2 GiB memory, 1 GiB of 1 GiB free"
    assert fix == "free or add 1 more CPU and 1 GiB more memory on this node, or lower the reservation"

    # The one-line summary is what the scheduler itself writes.
    decisions = schedule(Cluster(nodes, [task], {service.id: service}), [task])
    assert result.err == decisions.still_pending[task.id].err == (
        "no suitable node (2 nodes not available for new tasks; insufficient resources on 1 node; "
        "scheduling constraints not satisfied on 1 node)"
    )
    assert result.fitting == ()
    text = result.render()
    assert "worker2 [n2]: no (constraints)" in text
    assert "to fit: docker node update --label-add disk=ssd worker2" in text


def test_a_running_task_is_judged_without_itself() -> None:
    node = make_node("n1", cpus=2)
    service = make_service("s", task_template(cpus=2, max_replicas=1), host_ports=[8080])
    running = make_task("s.1", service, node_id="n1", state="running")
    result = explain(running, [node], [running], {service.id: service})
    assert result.fitting == ("n1",) and result.err == ""
    assert "fits on 1 of 1 nodes" in result.render()


def test_max_replicas_host_ports_and_platform_explained() -> None:
    node = make_node("n1", hostname="w1", arch="x86_64")
    service = make_service(
        "web", task_template(max_replicas=1, platforms=[("linux", "arm64")]), host_ports=[8080]
    )
    running = make_task("web.1", service, node_id="n1", state="running")
    task = make_task("web.2", service, slot=2)
    result = explain(task, [node], [running, task], {service.id: service})
    checks = checks_of(result.nodes[0])
    assert checks["platform"] == (
        False, "node is linux/amd64; the image runs on linux/arm64",
        "run it on a node of a supported platform",
    )  # fmt: skip
    assert checks["host-ports"][1] == "host-mode port in use: 8080/tcp by task web.1"
    assert checks["max-replicas"][:2] == (False, "1 task of the service on this node, at most 1 allowed")
    assert result.err == "no suitable node (unsupported platform on 1 node)"


def test_unknown_keys_and_role_constraints_get_their_own_advice() -> None:
    node = make_node("n1", hostname="w1", role="worker")
    service = make_service("s", task_template(constraints=["node.role==manager", "foo==bar"]))
    task = make_task("s.1", service)
    report = explain(task, [node], [task], {service.id: service}).nodes[0]
    passed, reason, fix = checks_of(report)["constraints"]
    assert not passed
    assert "node.role == manager: the node has 'worker'" in reason
    assert "foo == bar: Swarm knows no such key" in reason
    assert fix.startswith("docker node promote w1; use node.id, node.hostname")


def test_unparsable_constraints_are_noted() -> None:
    service = make_service("s", task_template(constraints=["node.labels.x=y"]))
    task = make_task("s.1", service)
    result = explain(task, [make_node("n1")], [task], {service.id: service})
    assert result.notes == (
        "constraints do not parse (constraint expected one operator from ==, !=); the scheduler ignores them",
    )
    assert result.fitting == ("n1",)


def test_explain_a_service_asks_where_one_more_replica_would_go() -> None:
    nodes = [make_node("n1", hostname="w1"), make_node("n2", hostname="w2")]
    service = make_service("web", task_template(max_replicas=1), replicas=2)
    running = [make_task(f"web.{i}", service, slot=i, node_id=f"n{i}", state="running") for i in (1, 2)]
    result = explain_service(service, nodes, running)
    assert result.err == "no suitable node (max replicas per node limit exceed)"
    assert result.task_id == "web.explain" and result.service_id == "web"
    assert explain_service(service, nodes, running[:1]).fitting == ("n2",)
