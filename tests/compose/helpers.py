"""Helpers of the compose tests: run `swarmlet` as a user would, and wait for conditions.

Every `swarmlet` run here acts on the tests' own compose project, PROJECT, whose state (join
tokens, state file) is in STATE: nothing of the user's default cluster is touched.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from deploy.backends.base import NodeHandle
from deploy.backends.compose import ComposeBackend
from tests.needs import need

__all__ = ["NODE_CPUS", "NODE_MEMORY", "PROJECT", "STATE", "all_ready", "backend", "cli_env", "docker_cli",
           "log_wait", "node", "nodes", "start_stopped_nodes", "status_json", "swarmlet", "wait_for"]

PROJECT = f"swarmlet-test-{os.getpid()}-{secrets.token_hex(2)}"
"""The compose project of this test session: never the default ``swarmlet``, never reused."""
STATE = pathlib.Path(tempfile.gettempdir()) / PROJECT
"""Its state folder (SWARMLET_STATE of the `swarmlet` runs); the cluster fixture removes it."""
NODE_CPUS = 1
NODE_MEMORY = "1g"
"""What every node of the session cluster declares to the scheduler (`swarmlet up --cpus 1 --memory
1g`), so that "insufficient resources" can be shown (tests/compose/test_compose_placement.py);
the tests that run `swarmlet up` again pass the same.
The cluster is started so once rather than a second cluster being brought up for that one test:
a bring-up costs 10 to 20 s and five more containers on this 2-core machine, and the declared
capacity changes nothing for tasks that reserve nothing, which is every other test's."""


def backend() -> ComposeBackend:
    """The compose backend of the tests' project, in this process."""
    return ComposeBackend(project=PROJECT, state=STATE)


def nodes() -> dict[str, NodeHandle]:
    """hostname -> the backend's handle (runs `docker compose ps`: 0.3 to 0.8 s here)."""
    return {n.hostname: n for n in backend().nodes()}


def node(hostname: str) -> NodeHandle:
    """The node called ``hostname`` (compose: its container)."""
    return nodes()[hostname]


def swarmlet(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `swarmlet` command as a user would, from this tree, on the tests' project."""
    env = dict(os.environ, SWARMLET_STATE=str(STATE))
    env.pop("SWARMLET_PROJECT", None)  # the flag says which project: the user's choice is not ours
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.cli", "--project", PROJECT, *args], capture_output=True, text=True,
            timeout=timeout, check=False, env=env,
        )
    except subprocess.TimeoutExpired:
        log_wait("swarmlet", " ".join(args[:2]), time.monotonic() - started, timeout, False)
        raise
    log_wait("swarmlet", " ".join(args[:2]), time.monotonic() - started, timeout, True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"swarmlet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


WAIT_LOG = "SWARMLET_WAIT_LOG"
"""When this environment variable names a file, every :func:`wait_for`, :func:`swarmlet` and
:func:`docker_cli` run appends a JSON line to it (the test, what was awaited, the seconds it took,
its bound), so that the waits near their deadline on a loaded machine can be found
(bench/compose_waits.py sums such a log up; docs/bringup.md, "The compose tests on a loaded machine")."""


def log_wait(kind: str, what: str, took: float, bound: float, ok: bool) -> None:
    """One line of the wait log (nothing unless SWARMLET_WAIT_LOG is set)."""
    path = os.environ.get(WAIT_LOG)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    row = {"test": test, "kind": kind, "what": what, "took": round(took, 3), "bound": bound, "ok": ok}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``probe`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    started = time.monotonic()
    deadline = started + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as e:  # a manager may refuse while it restarts: keep asking
            last = e
        if last and not isinstance(last, Exception):
            log_wait("wait", what, time.monotonic() - started, timeout, True)
            return last
        if time.monotonic() >= deadline:
            log_wait("wait", what, time.monotonic() - started, timeout, False)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def status_json() -> list[dict[str, Any]]:
    """`swarmlet status --json` as a list of node objects."""
    return list(json.loads(swarmlet("status", "--json", timeout=30).stdout))


def start_stopped_nodes() -> None:
    """Start again every node container a test paused or stopped (`swarmlet chaos unpause/start`)."""
    for n in nodes().values():
        if n.state == "paused":
            swarmlet("chaos", "unpause", n.hostname)
        elif n.state != "running":
            swarmlet("chaos", "start", n.hostname)


def all_ready() -> bool:
    """Whether `swarmlet status` shows the five nodes Ready, one of them the Leader."""
    rows = status_json()
    return len([r for r in rows if r["status"] == "Ready"]) == 5 and any(
        r["manager_status"] == "Leader" for r in rows
    )


def cli_env(docker_host: str | None = None) -> dict[str, str]:
    """The environment of a docker CLI run: a config folder of the session's own, so that nothing
    of the user's docker set-up (contexts, credentials, DOCKER_HOST) takes part; DOCKER_HOST is
    ``docker_host`` when one is given."""
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(STATE / "docker-config"),
           "HOME": str(STATE)}
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    return env


def docker_cli(docker_host: str, *args: str, timeout: float = 60, stdin: str | None = None,
               cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real docker CLI against one node (``docker -H tcp://ADDR:2375 ARGS...``) in
    :func:`cli_env`'s environment; the test is skipped (failed under CI) where there is no CLI."""
    docker = shutil.which("docker")
    need("the docker command is not installed here" if docker is None else None)
    assert docker is not None
    started = time.monotonic()
    try:
        proc = subprocess.run([docker, "-H", docker_host, *args], env=cli_env(), capture_output=True,
                              text=True, input=stdin, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        log_wait("docker", " ".join(args[:3]), time.monotonic() - started, timeout, False)
        raise
    log_wait("docker", " ".join(args[:3]), time.monotonic() - started, timeout, True)
    return proc
