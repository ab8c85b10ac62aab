"""Shared pytest set-up: markers by folder, so `-m unit` etc. select what their names say; and
the one way every golden-file test compares with, or rewrites, its file.

Golden files (tests/sim/golden/...) are only ever written when asked for, by either of

    .venv/bin/pytest --update-golden [tests...]
    SWARMLET_UPDATE_GOLDEN=1 .venv/bin/pytest [tests...]

then review the diff (`git diff tests/sim/golden`). In a normal run a golden test never writes:
a changed output fails with a diff, and a missing file fails saying how to create it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.golden import Golden, update_golden_requested

_FOLDER_MARKS = {"unit": "unit", "sim": "sim", "local": "local", "compose": "compose"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite every golden file the selected tests compare with (also SWARMLET_UPDATE_GOLDEN=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for folder, mark in _FOLDER_MARKS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """The golden-file checker of this run (update mode with --update-golden or SWARMLET_UPDATE_GOLDEN=1)."""
    return Golden(update_golden_requested(request.config))


@pytest.fixture(autouse=True)
def _plaintext_until_told() -> Iterator[None]:
    """Each test starts with this process's gRPC clients plaintext and holding no certificate
    (nodeagent.tls is per process); a test that runs an agent in-process, a local cluster
    (tests/local/_procs_manager.py) or the local agents fixture turns TLS on."""
    from nodeagent import tls

    tls.set_enabled(False)
    tls.set_credentials(None)
    yield
    tls.set_enabled(False)
    tls.set_credentials(None)


@pytest.fixture
def installed_entry_point(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, str], None]:
    """``install(group, name, value)``: from then on ``importlib.metadata.entry_points(group=...)``
    lists that entry point too, as if an installed package registered it."""
    import importlib.metadata

    real = importlib.metadata.entry_points
    added: dict[str, list[importlib.metadata.EntryPoint]] = {}

    def entry_points(**kw: Any) -> Any:
        group = kw.get("group")
        return added[group] if group in added else real(**kw)

    def install(group: str, name: str, value: str) -> None:
        added.setdefault(group, []).append(importlib.metadata.EntryPoint(name, value, group))
        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install
