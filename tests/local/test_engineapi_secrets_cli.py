"""The real docker CLI's ``docker secret`` and ``docker config`` commands against swarmlet processes.

Three managers run as ``python -m nodeagent`` on 127.0.0.x; the CLI asks manager2, so every
write is forwarded to the leader. ``secret create`` from stdin, ``secret ls`` with Swarm's
columns, ``secret inspect`` (never the data), ``config create`` from a file, ``config ls`` and
``inspect`` (the data, base64; ``--pretty``), ``config create --template-driver golang``, a
service that uses both, and the in-use refusal naming it, in Swarm's words. Skipped when no
docker binary is installed.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from _docker_cli import DOCKER, requires_docker
from _procs_manager import START_S, Cluster, running, wait_until

pytestmark = requires_docker


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 3, []) as c:
        yield c


def _columns(out: str) -> list[list[str]]:
    """Rows cut where the header's columns start, so an empty cell (DRIVER) stays a cell."""
    lines = out.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    ends = [*starts[1:], None]
    return [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines]


@pytest.mark.slow
def test_docker_secret_and_config_commands(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    m2 = cluster.managers()[1]

    def run(*args: str, stdin: str | None = None) -> Any:
        assert DOCKER is not None
        env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp_path / "docker-config"),
               "HOME": str(tmp_path)}
        return subprocess.run([DOCKER, "-H", f"tcp://{m2.host}:2375", *args], env=env, capture_output=True,
                              text=True, timeout=30, input=stdin, cwd=tmp_path)

    def ready() -> Any:
        done = run("node", "ls")
        return done if done.returncode == 0 and done.stdout.count("Ready") == 3 else None

    try:
        wait_until(ready, timeout=START_S, what="docker node ls: 3 Ready nodes")
    except AssertionError:
        raise AssertionError(cluster.logs()) from None

    created = run("secret", "create", "db_pass", "-", stdin="pw")
    assert created.returncode == 0, created.stderr
    secret_id = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{25}", secret_id)
    again = run("secret", "create", "db_pass", "-", stdin="again")
    assert again.returncode == 1
    assert again.stderr.strip() == ("Error response from daemon: rpc error: code = AlreadyExists desc = "
                                    "secret db_pass already exists")
    empty = run("secret", "create", "empty", "-", stdin="")
    assert (empty.returncode, empty.stderr.strip()) == (1, "error reading from STDIN: data is empty")

    listed = run("secret", "ls")
    print(listed.stdout)
    assert listed.returncode == 0, listed.stderr
    rows = _columns(listed.stdout)
    assert rows[0] == ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
    assert rows[1][:3] == [secret_id, "db_pass", ""] and len(rows) == 2
    assert rows[1][3].endswith(("ago", "second")), rows  # "Less than a second ago", "2 seconds ago"

    shown = run("secret", "inspect", "db_pass")
    assert shown.returncode == 0, shown.stderr
    secret = json.loads(shown.stdout)[0]
    assert secret["ID"] == secret_id and secret["Spec"] == {"Name": "db_pass", "Labels": {}}
    text = shown.stdout.replace("db_pass", "")
    assert "pw" not in text and base64.b64encode(b"pw").decode() not in text
    pretty = run("secret", "inspect", "--pretty", "db_pass")
    assert pretty.returncode == 0 and "Name:              db_pass" in pretty.stdout, pretty.stderr
    unknown = run("secret", "inspect", "nosuch")
    assert unknown.returncode == 1 and "Error response from daemon: secret nosuch not found" in unknown.stderr

    (tmp_path / "index.html").write_text("<h1>index from a swarm config</h1>\n")
    made = run("config", "create", "index", "./index.html")
    assert made.returncode == 0, made.stderr
    config_id = made.stdout.strip()
    configs = _columns(run("config", "ls").stdout)
    assert configs[0] == ["ID", "NAME", "CREATED", "UPDATED"] and configs[1][:2] == [config_id, "index"]
    config = json.loads(run("config", "inspect", "index").stdout)[0]
    assert config["Spec"]["Data"] == base64.b64encode(b"<h1>index from a swarm config</h1>\n").decode()

    pretty_config = run("config", "inspect", "--pretty", "index")
    assert "Data:\n<h1>index from a swarm config</h1>" in pretty_config.stdout, pretty_config.stderr
    (tmp_path / "tpl.txt").write_text("served by {{.Service.Name}} on {{.Node.Hostname}}\n")
    templated = run("config", "create", "--template-driver", "golang", "tpl", "./tpl.txt")
    assert templated.returncode == 0, templated.stderr
    assert json.loads(run("config", "inspect", "tpl").stdout)[0]["Spec"]["Templating"] == {"Name": "golang"}

    service = run("service", "create", "--name", "web", "--secret", "db_pass", "--config",
                  "source=index,target=/usr/share/nginx/html/index.html", "--detach", "nginx:1.25")
    assert service.returncode == 0, service.stderr
    inspected = json.loads(run("service", "inspect", "web").stdout)[0]
    container = inspected["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert container["Secrets"] == [{"File": {"Name": "db_pass", "UID": "0", "GID": "0", "Mode": 292},
                                     "SecretID": secret_id, "SecretName": "db_pass"}]
    assert container["Configs"] == [{"File": {"Name": "/usr/share/nginx/html/index.html", "UID": "0",
                                              "GID": "0", "Mode": 292},
                                     "ConfigID": config_id, "ConfigName": "index"}]
    missing = run("service", "create", "--name", "web2", "--secret", "nosuch", "--detach", "nginx:1.25")
    # The CLI's own words: it looks the name up first (GET /secrets?filters={"name":...}).
    assert (missing.returncode, missing.stderr.strip()) == (1, "secret not found: nosuch")

    in_use = run("secret", "rm", "db_pass")
    assert in_use.returncode == 1
    assert in_use.stderr.strip() == ("Error response from daemon: rpc error: code = InvalidArgument desc = "
                                     "secret 'db_pass' is in use by the following service: web")
    config_in_use = run("config", "rm", "index")
    assert config_in_use.returncode == 1 and "config 'index' is in use by the following service: web" in \
        config_in_use.stderr

    assert run("service", "rm", "web").returncode == 0
    removed = run("secret", "rm", "db_pass")
    assert (removed.returncode, removed.stdout.strip()) == (0, "db_pass"), removed.stderr
    assert run("config", "rm", "index", "tpl").returncode == 0
    assert _columns(run("secret", "ls").stdout) == [["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]]

    def gone() -> bool:
        return run("secret", "inspect", "db_pass").returncode == 1

    wait_until(gone, timeout=5, what="the secret is gone")
