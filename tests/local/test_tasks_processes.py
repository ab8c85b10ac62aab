"""The task path between real processes: store -> dispatcher -> worker agent -> emulated task -> store.

One manager and one worker run as ``python -m nodeagent`` processes on 127.x addresses (three
managers in the leader-change test). Tasks
are written as the scheduler would leave them (state assigned, NodeID the worker) through the
leader's write path; the worker's agent must run them and its reports must reach the store:
an nginx task reaches running and serves a page naming it, its log is read back through the
node's task service, it shuts down when its DesiredState says so; a ``sh -c "exit 3"`` task ends
failed with Docker's "task: non-zero exit (3)". When the leader is killed, a running task keeps
serving, and a shutdown written through the new leader reaches the worker and its report the
new leader's store.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import START_S, Cluster, NodeProc, wait_until
from _store_writes import assigned_task, node_tasks, service, set_desired_state, write_ops

from manager.controlapi import cluster_info, list_nodes
from nodeagent.agent.taskservice import list_tasks, task_logs


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    try:
        yield c
    finally:
        c.stop_all()


WEB = "taskweb0000000000000000001"
FAIL = "taskfail000000000000000001"
WEB2 = "taskweb0000000000000000002"


def _gossip_addr(node: NodeProc) -> str:
    args = node.args
    return f"{node.host}:{args[args.index('--gossip-port') + 1]}"


def _state(target: str, task_id: str) -> dict[str, Any]:
    return dict(node_tasks(target).get(task_id, {}).get("Status") or {})


@pytest.mark.slow
def test_assigned_tasks_run_on_the_worker_and_their_states_reach_the_store(cluster: Cluster) -> None:
    c = cluster
    c.start_all()
    manager = c.nodes["manager1"]
    worker = c.nodes["worker1"]
    try:
        rows = wait_until(
            lambda: {r.hostname: r for r in list_nodes(manager.target, timeout=1.0)
                     if r.status == "Ready" and r.hostname == "worker1"},
            START_S, 0.1, "worker1 Ready",
        )  # fmt: skip
        worker_id = rows["worker1"].id
        web = service("svcweb0000000000000000001", "web", {"Image": "nginx:1.25", "StopGracePeriod": 10**9},
                      restart="none")  # fmt: skip
        job = service("svcfail000000000000000001", "fails",
                      {"Image": "busybox", "Command": ["sh", "-c", "exit 3"]}, restart="none")  # fmt: skip
        # One batch: the leader's orchestrator finds each slot filled and adds no task of its own.
        write_ops(manager.target, [
            web, job,
            assigned_task(WEB, web, 1, worker_id),
            assigned_task(FAIL, job, 1, worker_id),
        ])  # fmt: skip

        running = wait_until(
            lambda: (s := _state(manager.target, WEB)).get("State") == "running" and s,
            20, 0.1, "the nginx task running in the store",
        )
        assert running["Message"] == "started"
        (listener,) = running["Listeners"]
        assert listener["Addr"] == worker.host and listener["TargetPort"] == 80
        url = f"http://{listener['Addr']}:{listener['Port']}/"
        page = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "web.1.taskweb0000000000000000001" in page
        assert "nginx:1.25" in page and "node worker1" in page

        # The worker counts its tasks by state; the leader counts the reports it wrote.
        def metrics(node: NodeProc) -> str:
            port = node.args[node.args.index("--metrics-port") + 1]
            page = urllib.request.urlopen(f"http://{node.host}:{port}/metrics", timeout=5).read()
            return str(page.decode())

        assert 'swarmlet_agent_tasks{state="running"} 1.0' in metrics(worker)
        assert 'swarmlet_dispatcher_status_reports_total{outcome="written"}' in metrics(manager)

        failed = wait_until(
            lambda: (s := _state(manager.target, FAIL)).get("State") == "failed" and s,
            20, 0.1, "the exit 3 task failed in the store",
        )
        assert failed["Err"] == "task: non-zero exit (3)"
        assert failed["Message"] == "started"
        assert failed["ContainerStatus"]["ExitCode"] == 3

        # The node's task service: what runs there, and the nginx task's access log line.
        rows_on_node = asyncio.run(list_tasks(_gossip_addr(worker)))
        assert {r["task_id"]: r["state"] for r in rows_on_node}[WEB] == "running"

        async def read_logs() -> list[str]:
            return [line.render() async for line in task_logs(
                _gossip_addr(worker), WEB, follow=False, tail=10, timestamps=True)]

        lines = asyncio.run(read_logs())
        assert any('"GET / HTTP/1.1" 200' in line for line in lines), lines
        assert lines[-1][:4].isdigit() and "Z " in lines[-1]  # "2026-...Z text"

        task = node_tasks(manager.target)[WEB]
        set_desired_state(manager.target, task, "shutdown")
        stopped = wait_until(
            lambda: (s := _state(manager.target, WEB)).get("State") == "shutdown" and s,
            20, 0.1, "the nginx task shut down in the store",
        )
        assert stopped["Message"] == "shutdown"
        assert stopped["ContainerStatus"]["ExitCode"] == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=2)
    except BaseException:
        print(c.logs())
        raise


@pytest.mark.slow
def test_tasks_keep_running_across_a_leader_change_and_answer_the_new_leader(tmp_path: Any) -> None:
    c = Cluster(tmp_path)
    c.add_managers(3)
    c.add_worker("worker1")
    c.start_all()
    try:
        first = c.nodes["manager1"]
        rows = wait_until(
            lambda: {r.hostname: r for r in list_nodes(first.target, timeout=1.0) if r.status == "Ready"}
            if cluster_info(first.target, timeout=1.0)["raft_voters"] == 3 else None,
            START_S, 0.1, "4 nodes Ready, 3 voters",
        )  # fmt: skip
        leader = c.nodes[str(cluster_info(first.target, timeout=1.0)["leader"])]
        web = service("svcweb0000000000000000002", "web", {"Image": "httpd:2.4", "StopGracePeriod": 10**9},
                      restart="none")  # fmt: skip
        write_ops(leader.target, [web, assigned_task(WEB2, web, 1, rows["worker1"].id)])
        running = wait_until(
            lambda: (s := _state(leader.target, WEB2)).get("State") == "running" and s,
            20, 0.1, "the httpd task running",
        )
        (listener,) = running["Listeners"]
        url = f"http://{listener['Addr']}:{listener['Port']}/"

        leader.kill()
        survivors = [m for m in c.managers() if m is not leader]
        new_name = wait_until(
            lambda: (name := cluster_info(survivors[0].target, timeout=1.0)["leader"])
            not in (None, leader.name) and name,
            10, 0.05, "a new leader",
        )
        new = c.nodes[str(new_name)]
        assert "It works!" in urllib.request.urlopen(url, timeout=5).read().decode()  # still serving
        task = node_tasks(new.target)[WEB2]
        stop = lambda: set_desired_state(new.target, task, "shutdown")  # noqa: E731
        wait_until(lambda: _try(stop), 10, 0.2, "the write to the new leader")
        stopped = wait_until(
            lambda: (s := _state(new.target, WEB2)).get("State") == "shutdown" and s,
            20, 0.1, "the task shut down, reported to the new leader",
        )
        assert stopped["Message"] == "shutdown"
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop_all()


def _try(write: Any) -> bool:
    try:
        write()
    except RuntimeError:
        return False  # e.g. the new leader has not settled yet
    return True
