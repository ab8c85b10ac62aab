"""`swarmlet sim gossip`: the JSON it prints, and bad flags refused with a message."""

from __future__ import annotations

import json

import pytest

from deploy.cli import main

FIELDS = {
    "nodes", "seeds", "loss", "config", "virtual_s", "wall_s", "false_positives", "first_suspect_s",
    "all_dead_s", "dissemination_999_s", "dissemination_all_s", "msgs_per_node_per_s",
}


def test_json_output_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sim", "gossip", "--nodes", "7", "--seeds", "2", "--kill", "1", "--duration", "8",
               "--loss", "0.05", "--latency-ms", "1", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= FIELDS
    assert (result["nodes"], result["seeds"], result["loss"], result["config"]) == (7, 2, 0.05, "default")
    assert set(result["all_dead_s"]) == {"p50", "p99", "max"}
    assert set(result["dissemination_999_s"]) == {"p50", "p99"}
    assert result["false_positives"] == 0
    assert result["all_dead_s"]["max"] < 3.0  # two crashes, both found quickly
    assert result["virtual_s"] > 16 and result["wall_s"] > 0


def test_lan_config_is_selectable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "gossip", "--nodes", "5", "--config", "lan", "--duration", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == "lan"


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--loss", "1.5"], "--loss"), (["--nodes", "1"], "--nodes"), (["--kill", "6"], "--kill"),
     (["--duration", "0"], "--duration"), (["--latency-ms", "-1"], "--latency-ms")],
)
def test_bad_flags_exit_2_naming_the_flag(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "gossip", *flags]) == 2
    assert named in capsys.readouterr().err
