"""The cluster's Prometheus, as a user sees it through `swarmlet metrics`, on the session's cluster.

Prometheus scrapes every node each second and finds them by DNS (the `nodes` alias, looked up
every 5 s: deploy/prometheus.yml). Each test leaves the cluster as it found it: worker1 running,
no extra node, no service. Waits are liveness bounds, many times what the awaited thing takes;
the one timing claim (a stopped node's `up` is 0 within two scrape intervals) has its slack named.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from deploy.addresses import prometheus_url
from tests.compose.helpers import (
    all_ready,
    backend,
    docker_cli,
    nodes,
    start_stopped_nodes,
    status_json,
    swarmlet,
    wait_for,
)

SCRAPE_INTERVAL = 1.0
"""deploy/prometheus.yml's scrape_interval."""
SLACK = 4.0
"""Added to two scrape intervals: the scrape timeout (1 s) and a loaded machine's delays."""
NODES = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def prometheus() -> str:
    """This cluster's Prometheus: its block's address (127.B.3.1:9090)."""
    block = int(str(nodes()["manager1"].addr).split(".")[1])
    return prometheus_url(block)


def api(query: str) -> list[dict[str, Any]]:
    """An instant query straight to Prometheus's HTTP API (fast enough to poll)."""
    url = prometheus() + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as answer:
        return list(json.loads(answer.read())["data"]["result"])


def table(query: str) -> list[dict[str, str]]:
    """`swarmlet metrics QUERY` as rows (column -> cell) of the table it prints."""
    out = swarmlet("metrics", query, timeout=60).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    if lines == ["Empty query result"]:
        return []
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[1:]]


def up_by_node() -> dict[str, str]:
    return {row["NODE"]: row["VALUE"] for row in table("up")}


@pytest.fixture
def healthy(cluster: str) -> Iterator[None]:
    """Every node running and scraped before; worker1 started again after, whatever happened."""
    wait_for("5 Ready nodes and a leader", all_ready, timeout=60, interval=0.5)
    yield
    start_stopped_nodes()
    wait_for("the cluster to heal", all_ready, timeout=60, interval=0.5)


def test_up_prints_prometheus_and_metrics_up_lists_every_node_with_1(cluster: str) -> None:
    assert f"Prometheus: {prometheus()} " in cluster
    wait_for("every node's up at 1", lambda: up_by_node() == dict.fromkeys(NODES, "1"), timeout=60,
             interval=1.0)
    columns = swarmlet("metrics", "up").stdout.splitlines()[0].split()
    assert columns == ["NODE", "NAME", "INSTANCE", "JOB", "VALUE"]


def test_a_bad_query_prints_prometheuss_error(cluster: str) -> None:
    bad = swarmlet("metrics", "sum by (state (swarmlet_tasks)", check=False)
    assert bad.returncode == 1
    assert "Error executing query: " in bad.stderr and "parse error" in bad.stderr, bad.stderr


def test_stopped_worker_is_0_within_two_scrape_intervals(healthy: None) -> None:
    wait_for("worker1 scraped", lambda: up_by_node().get("worker1") == "1", timeout=60, interval=1.0)
    instance = api('swarmlet_node_info{hostname="worker1"}')[0]["metric"]["instance"]
    zero_at: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        # Polled straight from the API: the target leaves DNS a few seconds after its container
        # stops (the next lookup), and `up` has no series for it from then on.
        while not stop.is_set() and not zero_at:
            try:
                if any(r["metric"]["instance"] == instance and r["value"][1] == "0" for r in api("up")):
                    zero_at.append(time.monotonic())
            except OSError:
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        swarmlet("chaos", "stop", "worker1")
        stopped = time.monotonic()
        watcher.join(timeout=2 * SCRAPE_INTERVAL + SLACK)
    finally:
        stop.set()
    assert zero_at, f"worker1's up did not go to 0 within {2 * SCRAPE_INTERVAL + SLACK} s of its stop"
    assert zero_at[0] - stopped <= 2 * SCRAPE_INTERVAL + SLACK
    # What the user runs: the last value each node's up had in the last minute.
    last = {row["INSTANCE"]: row for row in table("last_over_time(up[1m])")}
    assert (last[instance]["NODE"], last[instance]["VALUE"]) == ("worker1", "0"), last
    swarmlet("chaos", "start", "worker1")
    wait_for("worker1's up at 1 again", lambda: up_by_node().get("worker1") == "1", timeout=60,
             interval=1.0)


def _prometheus_container() -> dict[str, Any]:
    project = backend().project
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=prometheus"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) == 1, ids
    return dict(json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True,
                                          check=True).stdout)[0])


def _config() -> str:
    with urllib.request.urlopen(prometheus() + "/api/v1/status/config", timeout=5) as answer:
        return str(json.loads(answer.read())["data"]["yaml"])


def test_an_added_node_is_scraped_without_touching_prometheus(cluster: str) -> None:
    before = _prometheus_container()
    config = _config()
    swarmlet("node", "add", timeout=120)
    try:
        wait_for("worker3's up at 1", lambda: up_by_node().get("worker3") == "1", timeout=60, interval=1.0)
    finally:
        swarmlet("node", "rm", "worker3", timeout=120)
    after = _prometheus_container()
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]  # not restarted
    assert _config() == config  # nor reloaded with another configuration


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    leader = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    done = docker_cli(f"tcp://{nodes()[leader].addr}:2375", *args)
    assert done.returncode == 0, f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done


def test_tasks_by_state_follow_a_scaled_service(cluster: str) -> None:
    query = "sum by (state) (swarmlet_tasks)"

    def running(count: int) -> bool:
        return {row["STATE"]: row["VALUE"] for row in table(query)}.get("running") == str(count)

    _docker("service", "create", "--detach", "--name", "metrics-web", "--replicas", "2", "nginx:1.25")
    try:
        wait_for("2 running tasks", lambda: running(2), timeout=60, interval=1.0)
        _docker("service", "scale", "--detach", "metrics-web=5")
        wait_for("5 running tasks", lambda: running(5), timeout=60, interval=1.0)
        _docker("service", "scale", "--detach", "metrics-web=1")
        wait_for("1 running task", lambda: running(1), timeout=60, interval=1.0)
        by_service = table('swarmlet_tasks{service="metrics-web", state="running"}')
        assert [row["VALUE"] for row in by_service] == ["1"]
    finally:
        _docker("service", "rm", "metrics-web")
    wait_for("no task left", lambda: not table('swarmlet_tasks{service="metrics-web"}'), timeout=60,
             interval=1.0)
