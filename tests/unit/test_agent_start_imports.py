"""What a node agent's start imports: the built-in role and the version without the package
metadata, no simulator, and entry points still found for a role that is not built in."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

import nodeagent
import nodeagent.roles as roles
from manager.runtime import ManagerRuntime
from nodeagent.identity import VERSION

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_built_in_roles_are_the_ones_pyproject_registers() -> None:
    registered = _pyproject()["project"]["entry-points"][roles.ENTRY_POINT_GROUP]
    assert registered == roles.BUILTIN_ROLES
    assert roles.load_role("manager") is ManagerRuntime


def test_the_version_is_the_one_the_package_is_built_with() -> None:
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nodeagent.__version__"}
    assert nodeagent.__version__ == VERSION
    assert VERSION.count(".") == 2


def test_a_role_not_built_in_is_found_through_its_entry_point(
    installed_entry_point: Callable[[str, str, str], None],
) -> None:
    installed_entry_point(roles.ENTRY_POINT_GROUP, "auditor", f"{__name__}:Auditor")
    assert roles.load_role("auditor") is Auditor
    with pytest.raises(roles.RoleNotFound, match="no role named 'nobody' is installed"):
        roles.load_role("nobody")


def test_a_built_in_role_that_cannot_be_imported_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(roles.BUILTIN_ROLES, "manager", "manager.runtime:NoSuchClass")
    refused = r"role 'manager' \(manager.runtime:NoSuchClass\) cannot be loaded"
    with pytest.raises(roles.RoleNotFound, match=refused):
        roles.load_role("manager")


def test_a_managers_start_imports_neither_package_metadata_nor_the_simulator() -> None:
    # In a fresh interpreter: what `python -m nodeagent --role=manager` imports before it is ready.
    code = ("import sys, nodeagent.node, nodeagent.roles as r; r.load_role('manager');"
            "print(sorted(m for m in sys.modules if m.startswith(('importlib.metadata', 'nodeagent.sim'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]"


class Auditor:
    """A third party's role."""
