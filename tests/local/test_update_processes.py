"""Rolling updates and rollbacks with the real docker CLI, a manager and a worker as processes.

``docker service update --image nginx:1.26 --update-parallelism 1 --update-delay 2s`` replaces
one task at a time (each replacement created at least the delay after the previous one), ``service
ps`` then shows the old tasks Shutdown under ``\\_`` names, and every page served names 1.26;
``docker service rollback`` returns to 1.25; an update whose healthcheck fails, with
``--update-failure-action rollback --update-monitor 2s``, rolls back by itself.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import urllib.request
from typing import Any

import pytest
from _docker_cli import requires_docker
from _procs_manager import START_S, Cluster, wait_until
from _store_writes import node_tasks

from manager.orchestrator.common import parse_timestamp


def _images_served(target: str, service_name: str) -> list[str]:
    """The page each running task of the service serves (the emulated nginx names its image)."""
    pages = []
    for task in node_tasks(target).values():
        status = task.get("Status") or {}
        if task.get("DesiredState") != "running" or status.get("State") != "running":
            continue
        if (task.get("ServiceAnnotations") or {}).get("Name") != service_name:
            continue
        (listener,) = status["Listeners"]
        url = f"http://{listener['Addr']}:{listener['Port']}/"
        pages.append(urllib.request.urlopen(url, timeout=5).read().decode())
    return pages


@pytest.mark.slow
@requires_docker
def test_rolling_update_rollback_and_automatic_rollback_with_the_docker_cli(tmp_path: pathlib.Path) -> None:
    from _docker_cli import cli_rows, docker

    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    c.start_all()
    manager = c.managers()[0]

    def run(*args: str) -> Any:
        return docker(tmp_path, manager.host, *args)

    def ps() -> list[list[str]]:
        return cli_rows(run("service", "ps", "web").stdout)[1:]

    def update_status() -> dict[str, Any]:
        out = run("service", "inspect", "--format", "{{json .UpdateStatus}}", "web").stdout.strip()
        return json.loads(out) if out.startswith("{") else {}

    def running_images() -> list[str]:
        return sorted(row[2] for row in ps() if row[4] == "Running" and row[5].startswith("Running"))

    try:
        wait_until(lambda: run("node", "ls").stdout.count("Ready") == 2, START_S, 0.5, "2 nodes Ready")
        web = run("service", "create", "--detach", "--name", "web", "--replicas", "4", "nginx:1.25")
        assert web.returncode == 0, web.stderr
        wait_until(lambda: running_images() == ["nginx:1.25"] * 4, 30, 0.5, "4 tasks of nginx:1.25")

        # Not detached: the CLI follows the update (tasks up to date, UpdateStatus) to its end.
        done = run("service", "update", "--image", "nginx:1.26", "--update-parallelism", "1",
                   "--update-delay", "2s", "web")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "verify: Service web converged" in done.stdout, done.stdout
        wait_until(lambda: update_status().get("State") == "completed", 60, 0.5, "update completed")
        status = update_status()
        assert status["Message"] == "update completed" and status["CompletedAt"] >= status["StartedAt"]
        rows = ps()
        assert [row[2] for row in rows if row[4] == "Running"] == ["nginx:1.26"] * 4
        history = [row for row in rows if row[1].startswith("\\_ web.")]
        assert len(history) == 4, "\n".join(" ".join(row) for row in rows)  # every row, to tell why
        assert all(row[2] == "nginx:1.25" and row[4] == "Shutdown" and row[5].startswith("Shutdown")
                   for row in history)  # fmt: skip
        ids = [line for line in run("service", "ps", "-q", "web").stdout.split() if line]
        inspected_tasks = run("inspect", "--type", "task", *ids)
        assert inspected_tasks.returncode == 0, inspected_tasks.stderr
        tasks = json.loads(inspected_tasks.stdout)
        created = sorted(parse_timestamp(t["CreatedAt"]) for t in tasks
                         if t["Spec"]["ContainerSpec"]["Image"].startswith("nginx:1.26"))  # fmt: skip
        gaps = [b - a for a, b in itertools.pairwise(created)]
        assert len(created) == 4 and all(gap >= 2.0 for gap in gaps), gaps  # one at a time, 2 s apart
        pages = _images_served(manager.target, "web")
        assert len(pages) == 4 and all("nginx:1.26" in page for page in pages)

        back = run("service", "rollback", "web")
        assert back.returncode == 0, back.stderr
        assert "rollback: manually requested rollback" in back.stdout, back.stdout
        assert "verify: Service web converged" in back.stdout, back.stdout
        wait_until(lambda: update_status().get("State") == "rollback_completed", 60, 0.5, "rolled back")
        assert update_status()["Message"] == "rollback completed"
        wait_until(lambda: running_images() == ["nginx:1.25"] * 4, 30, 0.5, "4 tasks of nginx:1.25 again")

        broken = run("service", "update", "--detach", "--image", "nginx:1.27",
                     "--health-cmd", "curl -f http://localhost:81/", "--health-interval", "1s",
                     "--health-retries", "1", "--health-timeout", "1s",
                     "--update-failure-action", "rollback", "--update-monitor", "2s", "web")  # fmt: skip
        assert broken.returncode == 0, broken.stderr
        wait_until(lambda: update_status().get("State") == "rollback_completed", 90, 0.5, "rolled back again")
        inspected = json.loads(run("service", "inspect", "web").stdout)[0]
        assert inspected["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith("nginx:1.25@sha256:")
        assert "Healthcheck" not in inspected["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert inspected["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith("nginx:1.27@")
        assert inspected["UpdateStatus"]["Message"] == "rollback completed"
        wait_until(lambda: running_images() == ["nginx:1.25"] * 4, 30, 0.5, "back on nginx:1.25 by itself")
        failed = [row for row in ps() if row[2] == "nginx:1.27"]
        assert failed and any('"unhealthy container"' in row for row in failed), failed
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop_all()
