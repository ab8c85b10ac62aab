"""Where `swarmlet` keeps a cluster's state: the repository's .cache/ (ignored by git), never
inside a package, where the CA key and join tokens could be committed or shipped in the image."""

from __future__ import annotations

import pathlib

import pytest

from deploy.backends.base import state_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_state_lives_in_the_repositorys_ignored_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMLET_STATE", raising=False)
    assert state_dir("swarmlet") == ROOT / ".cache" / "cluster"
    assert state_dir("demo") == ROOT / ".cache" / "cluster-demo"
    assert "/.cache/" in (ROOT / ".gitignore").read_text().splitlines()
