"""Malformed histories are refused with the line that is wrong; the command's exit codes."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from deploy import cli
from manager.check import HistoryError, load_history


def _write(path: pathlib.Path, lines: list[Any]) -> pathlib.Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


W1 = {"process": 1, "type": "invoke", "f": "write", "value": 1}
W1_OK = {"process": 1, "type": "ok", "f": "write", "value": 1}
R2 = {"process": 2, "type": "invoke", "f": "read", "value": None}


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        ([W1, "{not json"], 2, "not valid JSON"),
        ([W1, "[1, 2]"], 2, "JSON object"),
        ([{"type": "invoke", "f": "read"}], 1, '"process"'),
        ([{**W1, "type": "begin"}], 1, '"type"'),
        ([{**W1, "f": "append"}], 1, '"f"'),
        ([{**W1, "process": True}], 1, '"process"'),
        ([{**W1, "key": [1]}], 1, '"key"'),
        ([W1, {**W1, "value": 2}], 2, "has not completed"),
        ([W1_OK], 1, "no operation open"),
        ([W1, {**W1_OK, "f": "read"}], 2, "completes process 1's write"),
        ([W1, {**W1_OK, "key": "k9"}], 2, "key"),
        ([{"process": 1, "type": "invoke", "f": "cas", "value": 3}], 1, "[expected, new]"),
        ([{**R2, "value": 4}], 1, "read is invoked"),
        ([R2, {"process": 2, "type": "ok", "f": "read"}], 2, "ok read must carry"),
        ([{"process": 1, "type": "invoke", "f": "write"}], 1, "write is invoked"),
        ([W1, W1_OK, "", "nope"], 4, "not valid JSON"),
    ],
)
def test_malformed_line_is_named(tmp_path: pathlib.Path, lines: list[Any], bad_line: int, words: str) -> None:
    path = _write(tmp_path / "h.jsonl", lines)
    with pytest.raises(HistoryError) as info:
        load_history(path)
    assert info.value.line == bad_line
    assert str(info.value).startswith(f"line {bad_line}: ")
    assert words in str(info.value)


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "h.jsonl", [W1, "", W1_OK, "", {**W1, "process": 1, "type": "fail"}])
    with pytest.raises(HistoryError) as info:
        load_history(path)
    assert info.value.line == 5
    assert len(load_history(_write(tmp_path / "g.jsonl", [W1, "", W1_OK]))) == 2


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["check", "linearizable", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_exit_zero_when_linearizable(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path / "h.jsonl", [W1, W1_OK, R2, {"process": 2, "type": "ok", "f": "read", "value": 1}]
    )
    code, out, _ = _run(capsys, str(path), "--model", "register")
    assert code == 0
    assert out.startswith("linearizable: 2 operation(s)")


def test_command_exit_one_prints_unorderable(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = [
        W1,
        W1_OK,
        {**W1, "value": 2},
        {**W1_OK, "value": 2},
        R2,
        {"process": 2, "type": "ok", "f": "read", "value": 1},
    ]
    code, out, _ = _run(capsys, str(_write(tmp_path / "h.jsonl", stale)))
    assert code == 1
    assert "not linearizable" in out
    assert '"invoke_line": 5, "complete_line": 6' in out


def test_command_exit_two_names_the_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(_write(tmp_path / "h.jsonl", [W1, "{"])))
    assert code == 2 and out == ""
    assert "h.jsonl: line 2: not valid JSON" in err
    code, _, err = _run(capsys, str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in err


def test_command_rejects_unknown_model(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _run(capsys, str(_write(tmp_path / "h.jsonl", [W1])), "--model", "queue")
    assert info.value.code == 2
