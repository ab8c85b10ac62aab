"""The node image's entry point (deploy/node-entrypoint.sh) runs Python from the Python copy in
the mounted volume only when that copy was made from this very image."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "node-entrypoint.sh"


def _run(tmp_path: pathlib.Path, held: str | None, want: str = "abc123") -> dict[str, str]:
    """Run the entry point with a stand-in python that prints what it was given."""
    copy = tmp_path / "copy"
    copy.mkdir()
    if held is not None:
        (copy / "KEY").write_text(held + "\n")
    mine = tmp_path / "image-key"
    mine.write_text(want + "\n")
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "HOME=${PYTHONHOME:-}"\necho "PATH=${PYTHONPATH:-}"\necho "ARGS=$*"\n')
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(SWARMLET_ENTRY_COPY=str(copy), SWARMLET_ENTRY_KEY=str(mine), SWARMLET_ENTRY_PYTHON=str(python))
    out = subprocess.run(["sh", str(SCRIPT), "--role=worker", "--hostname=worker 1"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_the_copy_of_this_image_is_used(tmp_path: pathlib.Path) -> None:
    seen = _run(tmp_path, held="abc123")
    assert seen["HOME"] == str(tmp_path / "copy")
    assert seen["PATH"] == str(tmp_path / "copy" / "site")
    assert seen["ARGS"] == "-m nodeagent --role=worker --hostname=worker 1"


@pytest.mark.parametrize("held", [None, "", "0ther1mage"], ids=["no KEY (a copy cut short)", "empty KEY",
                                                                 "another build's copy"])
def test_any_other_copy_is_left_alone(tmp_path: pathlib.Path, held: str | None) -> None:
    seen = _run(tmp_path, held=held)
    assert seen["HOME"] == "" and seen["PATH"] == ""
    assert seen["ARGS"] == "-m nodeagent --role=worker --hostname=worker 1"
