"""The golden-file mechanism: a normal run never writes; --update-golden (or the variable) does."""

from __future__ import annotations

import pathlib

import pytest

from tests.golden import Golden


def test_a_missing_golden_file_fails_saying_how_to_create_it_unwritten(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "golden" / "trace.txt"
    with pytest.raises(pytest.fail.Exception, match=r"missing; create it with `pytest --update-golden`"):
        Golden(update=False).check(path, "a\n")
    assert not path.exists() and not path.parent.exists()


def test_a_changed_output_fails_with_a_diff_and_leaves_the_file_alone(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("a\nb\n")
    before = path.stat().st_mtime_ns
    with pytest.raises(pytest.fail.Exception, match=r"(?s)--update-golden.*-b\n\+c"):
        Golden(update=False).check(path, "a\nc\n")
    assert path.read_text() == "a\nb\n" and path.stat().st_mtime_ns == before
    Golden(update=False).check(path, "a\nb\n")  # the same output passes


def test_update_mode_writes_new_and_changed_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "new" / "trace.txt"
    Golden(update=True).check(path, "one\n")
    assert path.read_text() == "one\n"
    Golden(update=True).check(path, "two\n")
    assert path.read_text() == "two\n"


def test_the_option_and_the_variable_both_select_update_mode(
    pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.golden import update_golden_requested

    monkeypatch.setattr(pytestconfig.option, "update_golden", False)
    monkeypatch.delenv("SWARMLET_UPDATE_GOLDEN", raising=False)
    assert not update_golden_requested(pytestconfig)
    monkeypatch.setenv("SWARMLET_UPDATE_GOLDEN", "1")
    assert update_golden_requested(pytestconfig)
    monkeypatch.delenv("SWARMLET_UPDATE_GOLDEN")
    monkeypatch.setattr(pytestconfig.option, "update_golden", True)
    assert update_golden_requested(pytestconfig)
