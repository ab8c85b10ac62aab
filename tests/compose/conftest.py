"""Compose tests: a real cluster of containers from compose.yml, brought up once per test session.

They skip, saying why, only when no Docker engine answers. Images are built first if missing
(that is part of what these tests check: no registry is needed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy import images
from deploy.backends.compose import docker_engine_error
from tests.compose.helpers import swarmlet

UP_TIMEOUT = 90


@pytest.fixture(scope="session")
def engine() -> None:
    problem = docker_engine_error()
    if problem:
        pytest.skip(f"no Docker engine answers: {problem.splitlines()[0]}")
    images.ensure_images()


@pytest.fixture(scope="session")
def cluster(engine: None) -> Iterator[str]:
    """A fresh 3-manager, 2-worker cluster; yields `swarmlet up`'s output; removed afterwards."""
    swarmlet("down")
    try:
        up = swarmlet("up", "--timeout", str(UP_TIMEOUT))
        yield up.stdout
    finally:
        swarmlet("down", check=False)


