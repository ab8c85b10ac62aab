"""Secrets and configs delivered to the node that runs the task, with the real docker CLI.

One manager and one worker run as ``python -m nodeagent`` on 127.x addresses. ``printf s3cret |
docker secret create db_pass -``, then a postgres service on the worker reads its password from
``/run/secrets/db_pass`` (POSTGRES_PASSWORD_FILE) and says so in its log; an nginx service
serves a config as its index page from the task's listener; only the worker holds the secret
(the manager's node runs no task that uses it), no byte of it is under any node's data dir, and
``docker service update --secret-rm db_pass`` (with the variable that named its file) replaces
the task and makes the worker drop it. Skipped without a
docker binary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import subprocess
import urllib.request
from typing import Any

import pytest
from _docker_cli import DOCKER, cli_rows, requires_docker
from _procs_manager import START_S, Cluster, wait_until

from nodeagent.agent.taskservice import list_payloads, list_tasks

pytestmark = requires_docker

SECRET = b"s3cret-7f3a9c"


def _files_containing(root: pathlib.Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_a_secret_reaches_only_the_node_of_its_task_in_memory_and_is_dropped(tmp_path: pathlib.Path) -> None:
    c = Cluster(tmp_path)
    manager = c.add_managers(1)[0]
    worker = c.add_worker("worker1")
    c.start_all()

    def run(*args: str, stdin: str | None = None) -> Any:
        assert DOCKER is not None
        env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp_path / "docker-config"),
               "HOME": str(tmp_path)}  # fmt: skip
        argv = [DOCKER, "-H", f"tcp://{manager.host}:2375", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, input=stdin,
                              cwd=tmp_path)  # fmt: skip

    def api(path: str) -> Any:
        with urllib.request.urlopen(f"http://{manager.host}:2375{path}", timeout=5) as answer:
            return json.loads(answer.read())

    def held(node_host: str) -> list[str]:
        return [row["name"] for row in asyncio.run(list_payloads(f"{node_host}:7946"))]

    def running_task(service: str) -> dict[str, Any] | None:
        tasks = api("/tasks?filters=" + urllib.request.quote(json.dumps({"service": {service: True}})))
        up = [t for t in tasks if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]
        return up[0] if up else None

    try:
        wait_until(lambda: run("node", "ls").stdout.count("Ready") == 2, START_S, 0.5, "2 nodes Ready")
        made = run("secret", "create", "db_pass", "-", stdin=SECRET.decode())
        assert made.returncode == 0, made.stderr
        (tmp_path / "index.html").write_text("<h1>served from a swarm config</h1>\n")
        assert run("config", "create", "index", "./index.html").returncode == 0

        on_worker = ("--detach", "--constraint", "node.role==worker")
        db = run("service", "create", *on_worker, "--name", "db", "--secret", "db_pass",
                 "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/db_pass", "postgres:16")  # fmt: skip
        assert db.returncode == 0, db.stderr
        index = "source=index,target=/usr/share/nginx/html/index.html"
        web = run("service", "create", *on_worker, "--name", "web", "--config", index, "nginx:1.25")
        assert web.returncode == 0, web.stderr

        rows = wait_until(lambda: (r := cli_rows(run("service", "ps", "db").stdout)[1:]) and
                          r[0][5].startswith("Running") and r, 40, 0.5, "db running")  # fmt: skip
        assert rows[0][3] == "worker1"
        logs = wait_until(lambda: (out := run("service", "logs", "--raw", "db").stdout)
                          and "ready to accept connections" in out and out, 20, 0.5, "db's log")  # fmt: skip
        print(logs)
        assert 'superuser "postgres", database "postgres"; password read from the file /run/secrets/db_pass' \
            " (POSTGRES_PASSWORD_FILE)" in logs
        assert SECRET.decode() not in logs

        # The web task serves the config at its listener (the node's task service says where).
        task = wait_until(lambda: running_task("web"), 40, 0.5, "web running")
        rows = asyncio.run(list_tasks(f"{worker.host}:7946"))
        (row,) = [r for r in rows if r["task_id"] == task["ID"]]
        assert row["files"] == "/usr/share/nginx/html/index.html"
        with urllib.request.urlopen(f"http://{row['address']}/", timeout=5) as page:
            assert page.read() == b"<h1>served from a swarm config</h1>\n"

        # Only the worker holds the secret and the config; the manager runs none of these tasks.
        assert sorted(held(worker.host)) == ["db_pass", "index"]
        assert held(manager.host) == []
        # Never on disk: neither the bytes nor their base64 under the worker's data dir, and
        # not the bytes under any node's (a manager's Raft log holds the store, base64 as the API).
        assert _files_containing(tmp_path / "worker1", SECRET) == []
        assert _files_containing(tmp_path / "worker1", base64.b64encode(SECRET)) == []
        assert _files_containing(tmp_path / "manager1", SECRET) == []
        assert SECRET.decode() not in worker.log_path.read_text(errors="replace")

        # The web service removed: its task shuts down and the worker drops the config.
        assert run("service", "rm", "web").returncode == 0
        wait_until(lambda: held(worker.host) == ["db_pass"], 30, 0.5, "the worker dropped index")

        # The secret removed from the service, and the variable that named its file with it (with
        # POSTGRES_PASSWORD_FILE left naming /run/secrets/db_pass, the new task exits 1 with the
        # entrypoint's "No such file or directory", as the real image does, and the update pauses):
        # the new task does not use it, and once the old task is shut down the worker drops it.
        before = running_task("db")
        assert before is not None
        removed = run("service", "update", "--detach", "--secret-rm", "db_pass", "--env-rm",
                      "POSTGRES_PASSWORD_FILE", "--env-add", "POSTGRES_HOST_AUTH_METHOD=trust", "db")
        assert removed.returncode == 0, removed.stderr
        spec = api("/services/db")["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert "Secrets" not in spec or not spec["Secrets"]
        wait_until(lambda: (t := running_task("db")) and t["ID"] != before["ID"], 60, 0.5, "db replaced")
        wait_until(lambda: held(worker.host) == [], 30, 0.5, "the worker dropped db_pass")
        assert _files_containing(tmp_path / "worker1", SECRET) == []
    except Exception:
        print(run("service", "ps", "db").stdout, held(worker.host))
        print(c.logs())
        raise
    finally:
        c.stop_all()
