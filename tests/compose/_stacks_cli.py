"""Helpers of the stack, secret and volume tests: the real docker CLI against the session cluster.

``sh(cmd)`` runs a command line verbatim in bash with DOCKER_HOST at manager1 (so the seeds'
``echo "x" | docker secret create NAME -`` is typed as they print it); ``in_node`` runs Python
inside a node's container (the node's task service and the tasks' listeners are reached there).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

from deploy.backends.base import NodeHandle
from tests.compose.helpers import backend

__all__ = ["DOCKER", "api_json", "docker", "in_node", "node", "sh", "talk"]

DOCKER = shutil.which("docker")
_HOME = pathlib.Path(tempfile.mkdtemp(prefix="stacks-cli-"))


def node(hostname: str) -> NodeHandle:
    """The node called ``hostname`` (compose: its container)."""
    return next(n for n in backend().nodes() if n.hostname == hostname)


def _env(host: str | None = None) -> dict[str, str]:
    target = host or node("manager1").docker_host
    assert target, "manager1 publishes no Engine API"
    return {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": target, "HOME": str(_HOME),
            "DOCKER_CONFIG": str(_HOME / "docker-config")}  # fmt: skip


def sh(cmd: str, *, cwd: pathlib.Path | None = None, host: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``cmd`` run by bash as a user types it, DOCKER_HOST at manager1 (or ``host``)."""
    return subprocess.run(["bash", "-c", cmd], env=_env(host), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or _HOME)  # fmt: skip


def docker(*args: str, host: str | None = None, stdin: str | None = None,
           timeout: float = 120, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    """The docker CLI with ``args``."""
    assert DOCKER is not None
    return subprocess.run([DOCKER, *args], env=_env(host), capture_output=True, text=True, input=stdin,
                          timeout=timeout, cwd=cwd or _HOME)  # fmt: skip


def api_json(*args: str) -> Any:
    """``docker inspect``-style JSON output of a docker command."""
    out = docker(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def in_node(hostname: str, code: str, timeout: float = 60) -> str:
    """Run Python ``code`` inside the node's container; its stdout."""
    ref = node(hostname).ref
    proc = subprocess.run(["docker", "exec", ref, "python3", "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_TALK = '''
import asyncio, socket, sys
from nodeagent.agent.taskservice import list_tasks
rows = asyncio.run(list_tasks("{host}:7946"))
addr = [r["address"] for r in rows if r["task_id"] == "{task}"][0]
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
