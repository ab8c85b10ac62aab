"""The real docker CLI against swarmlet nodes on 127.x addresses, for the local tests.

Each call runs the CLI against one node's Engine API (port 2375 of its address) with a config
folder of its own, so nothing of the user's docker set-up (contexts, credentials) takes part.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

__all__ = ["DOCKER", "cli_rows", "docker", "docker_info", "node_table", "requires_docker"]

DOCKER = shutil.which("docker")
requires_docker = pytest.mark.skipif(DOCKER is None, reason="no docker CLI installed")
"""The mark for a module whose tests drive the docker CLI."""


def docker(tmp: pathlib.Path, host: str, *args: str, timeout: float = 60,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker -H tcp://HOST:2375 ARGS...`` with a config folder under ``tmp`` (``stdin``
    piped in when given)."""
    assert DOCKER is not None
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp / "docker-config"), "HOME": str(tmp)}
    return subprocess.run([DOCKER, "-H", f"tcp://{host}:2375", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, input=stdin)


def cli_rows(out: str) -> list[list[str]]:
    """The cells of a table the CLI printed: Docker pads columns with at least three spaces, and a
    cell never holds two spaces in a row."""
    return [[cell.strip() for cell in line.split("   ") if cell.strip()] for line in out.splitlines()]


def docker_info(tmp: pathlib.Path, host: str, field: str) -> str:
    """One field of ``docker info`` at ``host`` (``Swarm.LocalNodeState``, ``Swarm.NodeID``...),
    "" when the CLI fails."""
    done = docker(tmp, host, "info", "--format", "{{." + field + "}}")
    return done.stdout.strip() if done.returncode == 0 else ""


def node_table(tmp: pathlib.Path, host: str, *fields: str) -> dict[str, tuple[str, ...]]:
    """hostname -> the ``fields`` (``ID``, ``Status``, ``ManagerStatus``...) of each row of
    ``docker node ls`` at ``host``; {} when the CLI fails."""
    template = "|".join("{{." + f + "}}" for f in ("Hostname", *fields))
    done = docker(tmp, host, "node", "ls", "--format", template)
    rows = [line.split("|") for line in done.stdout.splitlines()] if done.returncode == 0 else []
    return {r[0]: tuple(r[1:]) for r in rows if len(r) == len(fields) + 1}
