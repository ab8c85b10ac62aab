"""Compose tests: a real cluster of containers from compose.yml, brought up once per test session.

The cluster is the tests' own compose project, ``swarmlet-test-<pid>-<random>`` (see
tests/compose/helpers.py), with its own state folder: a cluster the user has up (the default
project ``swarmlet``, or any other) is never looked at, reused or taken down. Only the tests'
project is removed at the end, also when a test or the bring-up fails. Its nodes publish their
ports on addresses of the project's own 127.B block (deploy/addresses.py: B is derived from the
project name, never the default project's 0, and moved on if another cluster listens there), so
that projects never compete for an address or a port.

Without a Docker engine, the compose plugin or the images, the tests skip, saying why; with
CI=true they fail instead (tests/needs.py). Images are built first if missing (that is part of
what these tests check: no registry is needed).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from deploy import images
from deploy.backends.compose import compose_missing, docker_engine_error
from tests.compose.helpers import NODE_CPUS, NODE_MEMORY, PROJECT, STATE, backend, swarmlet
from tests.needs import need

UP_TIMEOUT = 90


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def compose_requirements() -> str | None:
    """None if the compose tests can run here, else why not (one line); builds missing images."""
    problem = docker_engine_error()
    if problem:
        return _first_line(problem)  # "No Docker engine is reachable: <docker's reason>"
    problem = compose_missing()
    if problem:
        return _first_line(problem)
    try:
        images.ensure_images()
    except images.BuildError as e:
        return f"the images cannot be built: {_first_line(str(e))}"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    need(compose_requirements())


@pytest.fixture(scope="session")
def cluster(engine: None) -> Iterator[str]:
    """A fresh 3-manager, 2-worker cluster of the tests' own project, each node declaring 1 CPU and
    1 GiB; yields `swarmlet up`'s output.

    Removed afterwards, whatever happened: its containers, network, volumes and state folder.
    """
    leftover = backend().nodes()
    assert not leftover, f"the project {PROJECT} already has containers: {[n.hostname for n in leftover]}"
    try:
        up = swarmlet("up", "--timeout", str(UP_TIMEOUT), "--cpus", str(NODE_CPUS), "--memory", NODE_MEMORY)
        yield up.stdout
    finally:
        swarmlet("down", check=False)
        shutil.rmtree(STATE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _operator_tls() -> None:
    """This test process asks the managers' 2377 (the control API) over mutual TLS, as an operator
    holding a manager certificate of the cluster's CA (in STATE, made by `swarmlet up`)."""
    from deploy.backends.base import use_cluster_tls

    use_cluster_tls(STATE)
