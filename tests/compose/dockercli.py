"""The real docker CLI against the compose test cluster, for the service tests.

Every call is ``docker -H tcp://<manager1's address>:2375 ...`` with a config folder of the
session's own (under the tests' STATE folder), so nothing of the user's docker set-up (contexts,
credentials, DOCKER_HOST) takes part; the host's engine is only asked through ``swarmlet`` and
``docker exec``/``stats`` on the project's own containers. Rows are read with ``--format
'{{json .}}'``, the CLI's own rendering of the same cells its tables show.
"""

from __future__ import annotations

import functools
import json
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from tests.compose.helpers import docker_cli, nodes, start_stopped_nodes, wait_for

__all__ = [
    "NODES", "api", "docker", "five_ready", "json_rows", "manager_host", "node_ids", "ok",
    "page", "pages", "running_tasks", "service_ls", "service_ps", "tasks_per_node", "tidy_cluster",
]

NODES = ("manager1", "manager2", "manager3", "worker1", "worker2")
"""The session cluster's nodes (tests/compose/conftest.py)."""


@functools.cache
def manager_host() -> str:
    """manager1's Engine API address, ``ADDR:2375`` (looked up once: addresses never move)."""
    addr = nodes()["manager1"].addr
    assert addr, "manager1 has no address"
    return f"{addr}:2375"


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against manager1 (writes are forwarded to the leader)."""
    return docker_cli(f"tcp://{manager_host()}", *args, timeout=timeout)


def ok(*args: str, timeout: float = 120) -> str:
    """The CLI's stdout; fails the test, showing stderr, unless it exited 0."""
    done = docker(*args, timeout=timeout)
    assert done.returncode == 0, f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def json_rows(out: str) -> list[dict[str, Any]]:
    """The rows of a ``--format '{{json .}}'`` listing."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def service_ps(service: str, *flags: str) -> list[dict[str, Any]]:
    """`docker service ps --no-trunc` rows (IDs whole, Err whole; Image without the digest, Error
    without the quotes the CLI puts around it)."""
    rows = json_rows(ok("service", "ps", "--no-trunc", "--format", "{{json .}}", *flags, service))
    for row in rows:
        row["Image"] = row["Image"].split("@")[0]
        if len(row["Error"]) >= 2 and row["Error"][0] == row["Error"][-1] == '"':
            row["Error"] = row["Error"][1:-1]
    return rows


def running_tasks(service: str) -> list[dict[str, Any]]:
    """The tasks desired Running whose current state is Running."""
    return [r for r in service_ps(service) if r["DesiredState"] == "Running"
            and r["CurrentState"].startswith("Running")]  # fmt: skip


def tasks_per_node(rows: list[dict[str, Any]]) -> Counter[str]:
    """How many of ``rows`` each node has."""
    return Counter(r["Node"] for r in rows)


def service_ls() -> dict[str, dict[str, Any]]:
    """`docker service ls` rows by service name."""
    return {r["Name"]: r for r in json_rows(ok("service", "ls", "--format", "{{json .}}"))}


def node_ids() -> dict[str, str]:
    """hostname -> node ID, from `docker node ls`."""
    return {r["Hostname"]: r["ID"] for r in json_rows(ok("node", "ls", "--format", "{{json .}}"))}


def five_ready() -> bool:
    """Whether `docker node ls` shows the five nodes Ready and Active."""
    rows = json_rows(ok("node", "ls", "--format", "{{json .}}", timeout=30))
    return sorted(r["Hostname"] for r in rows if r["Status"] == "Ready" and r["Availability"] == "Active") \
        == list(NODES)


def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One Engine API request to manager1, as a client other than the CLI would send it."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{manager_host()}/v1.47{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def page(task_id: str) -> str:
    """The page a web task serves, read inside its node's container from the task's own listener.

    The listener (``Status.Listeners``: the node's address and the port the task really
    listens on) is read through the dispatcher's NodeTasks method on a manager's cluster port,
    as the local tests read it; ``docker exec`` reaches it from the node itself, so this works
    wherever the host cannot route to the project's network.
    """
    from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

    from nodeagent import tls

    addr = nodes()["manager1"].control_addr
    assert addr
    with tls.channel(addr, sync=True) as channel:  # the compose conftest set the operator's certificate
        stub = dispatcher_pb2_grpc.AssignmentsStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.NodeTasks(dispatcher_pb2.NodeTasksRequest(node_id=""), timeout=5.0)
    task = next(t for t in map(json.loads, reply.tasks) if t["ID"] == task_id)
    (listener,) = task["Status"]["Listeners"]
    hostname = {v: k for k, v in node_ids().items()}[task["NodeID"]]
    url = f"http://{listener['Addr']}:{listener['Port']}/"
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    done = subprocess.run(["docker", "exec", nodes()[hostname].ref, "python3", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pages(service: str, count: int) -> list[str]:
    """The pages of the service's ``count`` running tasks, asked again until each answers (a task
    listed running may be replaced meanwhile on a loaded machine, where a node may be thought
    Down for a moment)."""

    def probe() -> list[str] | None:
        tasks = running_tasks(service)
        return [page(t["ID"]) for t in tasks] if len(tasks) == count else None

    return list(wait_for(f"{count} pages of {service}", probe, timeout=90, interval=1.0))


def tidy_cluster(services_before: set[str]) -> None:
    """Leave the cluster as a test found it: its new services removed, every node started, Active,
    without labels, and the five Ready."""
    start_stopped_nodes()
    extra = sorted(set(service_ls()) - services_before)
    if extra:
        ok("service", "rm", *extra)
    for row in json_rows(ok("node", "ls", "--format", "{{json .}}")):
        if row["Availability"] != "Active":
            ok("node", "update", "--availability", "active", row["ID"])
        labels = json.loads(ok("node", "inspect", "--format", "{{json .Spec.Labels}}", row["ID"]))
        if labels:
            ok("node", "update", *[a for key in labels for a in ("--label-rm", key)], row["ID"])
    wait_for("the five nodes Ready and Active", five_ready, timeout=60, interval=0.5)
