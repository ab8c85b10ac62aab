"""Golden files: the one mechanism every golden test uses (the ``golden`` fixture of tests/conftest.py).

Files are written only in update mode (``pytest --update-golden`` or SWARMLET_UPDATE_GOLDEN=1);
in a normal run a changed output fails with a diff and a missing file fails saying how to make it.
"""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

__all__ = ["Golden", "update_golden_requested"]

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def update_golden_requested(config: pytest.Config) -> bool:
    """Whether this run rewrites golden files: --update-golden, or SWARMLET_UPDATE_GOLDEN=1."""
    return bool(config.getoption("--update-golden")) or os.environ.get("SWARMLET_UPDATE_GOLDEN") == "1"


class Golden:
    """Compares a test's output with its golden file; writes the file only in update mode."""

    def __init__(self, update: bool) -> None:
        self.update = update

    def check(self, path: pathlib.Path, got: str) -> None:
        """Fail unless ``got`` is the content of ``path`` (rewritten first in update mode)."""
        shown = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else path
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != got:
                path.write_text(got)
            return
        if not path.exists():
            pytest.fail(
                f"golden file {shown} is missing; create it with `pytest --update-golden` on this "
                "test (or SWARMLET_UPDATE_GOLDEN=1), then review and commit it",
                pytrace=False,
            )
        want = path.read_text()
        if got != want:
            lines = difflib.unified_diff(want.splitlines(True), got.splitlines(True), str(shown), "now")
            diff = "".join(lines)
            pytest.fail(
                f"output differs from the golden file {shown} (if the change is intended: "
                f"`pytest --update-golden` on this test, then review the diff):\n{diff}",
                pytrace=False,
            )
