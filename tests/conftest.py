"""Shared pytest set-up: markers by folder, so `-m unit` etc. select what their names say."""

from __future__ import annotations

import pathlib

import pytest

_FOLDER_MARKS = {"unit": "unit", "sim": "sim", "local": "local", "compose": "compose"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for folder, mark in _FOLDER_MARKS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, mark))
