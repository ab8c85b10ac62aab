"""Helpers of the stack, secret and volume tests: the real docker CLI against the session cluster.

``sh(cmd)`` runs a command line verbatim in bash with DOCKER_HOST at manager1 (so the seeds'
``echo "x" | docker secret create NAME -`` is typed as they print it); ``in_node`` runs Python
inside a node's container (the node's task service and the tasks' listeners are reached there).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import tempfile
import time
from typing import Any

from tests.compose.helpers import cli_env, log_wait, node

__all__ = ["DOCKER", "api_json", "docker", "in_node", "node", "sh", "talk"]

DOCKER = shutil.which("docker")
_WORK = pathlib.Path(tempfile.mkdtemp(prefix="stacks-cli-"))
"""The commands' working folder when a test names none."""


def _env(host: str | None = None) -> dict[str, str]:
    target = host or node("manager1").docker_host
    assert target, "manager1 publishes no Engine API"
    return cli_env(target)


_NO_LEADER = ("node lost leader status", "does not have a leader")
"""A write refused while the managers elect a leader (the shared machine's load makes elections
happen mid-test): the write did not happen, and a user would run the command again."""


def _run(argv: list[str], env: dict[str, str], stdin: str | None, timeout: float,
         cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    for _attempt in range(4):
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, input=stdin, timeout=timeout,
                                  cwd=cwd)  # fmt: skip
        except subprocess.TimeoutExpired:
            log_wait("docker", " ".join(argv[1:4]), time.monotonic() - started, timeout, False)
            raise
        log_wait("docker", " ".join(argv[1:4]), time.monotonic() - started, timeout, True)
        if proc.returncode == 0 or not any(words in proc.stderr for words in _NO_LEADER):
            return proc
        time.sleep(2)
    return proc


def sh(cmd: str, *, cwd: pathlib.Path | None = None, host: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``cmd`` run by bash as a user types it, DOCKER_HOST at manager1 (or ``host``)."""
    return _run(["bash", "-c", cmd], _env(host), None, timeout, cwd or _WORK)


def docker(*args: str, host: str | None = None, stdin: str | None = None,
           timeout: float = 120, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    """The docker CLI with ``args``."""
    assert DOCKER is not None
    return _run([DOCKER, *args], _env(host), stdin, timeout, cwd or _WORK)


def api_json(*args: str) -> Any:
    """``docker inspect``-style JSON output of a docker command."""
    out = docker(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


_AS_THE_NODE = (
    "from nodeagent import tls as _tls\n"
    "_tls.set_enabled(True)\n"
    "_tls.set_credentials(_tls.NodeCredentials.load('/var/lib/swarmlet'))\n"
)


def in_node(hostname: str, code: str, timeout: float = 60) -> str:
    """Run Python ``code`` inside the node's container, as the node (its own certificate: the
    agents' 7946 takes mutual TLS); its stdout."""
    ref = node(hostname).ref
    code = _AS_THE_NODE + code
    proc = subprocess.run(["docker", "exec", ref, "python3", "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_TALK = '''
import asyncio, socket, sys, time
from nodeagent.agent.taskservice import list_tasks
deadline = time.monotonic() + 30
while True:  # the node may report the task running a moment before its row shows the listener
    rows = asyncio.run(list_tasks("{host}:7946"))
    addr = "".join(r["address"] for r in rows if r["task_id"] == "{task}")
    if addr or time.monotonic() > deadline:
        break
    time.sleep(0.5)
if not addr:
    sys.exit(f"task {task} has no listener on {host}: {{rows}}")
host, port = addr.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
f = s.makefile("rw")
for line in {lines!r}:
    f.write(line + "\\n"); f.flush()
    print(f.readline().rstrip("\\n"))
'''


def talk(hostname: str, task_id: str, *lines: str) -> list[str]:
    """Send ``lines`` to a task's listener (the databases' line protocol) from inside its node."""
    out = in_node(hostname, _TALK.format(host=hostname, task=task_id, lines=list(lines)))
    return out.splitlines()
