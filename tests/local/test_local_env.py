"""`swarmlet up --backend local` on its own project: each process on its address of the project's
block, `swarmlet env` pointing at the leader (or a named node), node add and rm of a worker."""

from __future__ import annotations

import os
import pathlib
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = f"swarmlet-localtest-{os.getpid()}-{secrets.token_hex(2)}"


def swarmlet(state: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`swarmlet --project PROJECT ARGS` from this tree, with the test's own state folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLET_")}
    env.update(SWARMLET_STATE=str(state), PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'proto'}")
    proc = subprocess.run([sys.executable, "-m", "deploy.cli", "--project", PROJECT, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"swarmlet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def local_cluster(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, str]]:
    """A local cluster of 3 managers and 2 workers; yields its state folder and `up`'s output."""
    state = tmp_path / "state"
    try:
        up = swarmlet(state, "up", "--backend", "local", "--timeout", "60")
        yield state, up.stdout
    finally:
        swarmlet(state, "down", check=False)


def test_env_and_node_add_rm_on_the_local_backend(local_cluster: tuple[pathlib.Path, str]) -> None:
    state, up = local_cluster
    line = next(x for x in up.splitlines() if x.startswith("export DOCKER_HOST="))
    block = int(line.split("tcp://127.", 1)[1].split(".", 1)[0])
    assert block != 0  # a project of its own: never the default cluster's 127.0 addresses
    leader = swarmlet(state, "env").stdout.strip()
    assert leader == line  # up printed the leader's line
    # The three managers found the cluster together: any of them may lead (manager1 asks first).
    assert leader in {f"export DOCKER_HOST=tcp://127.{block}.1.{i}:2375" for i in (1, 2, 3)}
    assert swarmlet(state, "env", "worker2").stdout == f"export DOCKER_HOST=tcp://127.{block}.2.2:2375\n"
    added = swarmlet(state, "node", "add")
    assert added.stdout.startswith(f"worker3 (127.{block}.2.3) joined the swarm as a worker"), added.stdout
    status = swarmlet(state, "status").stdout
    assert "worker3" in status
    removed = swarmlet(state, "node", "rm", "worker3")
    assert removed.stdout.strip() == f"Removed worker3 (127.{block}.2.3)"
    assert "worker3" not in swarmlet(state, "status").stdout
