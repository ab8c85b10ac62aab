"""`swarmlet status`: Docker's node ls columns, `*` on the answering node, --json fields."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rich.console import Console

from deploy import cli
from deploy.backends.base import BackendError, NodeHandle
from deploy.commands import status


@dataclass(frozen=True)
class Row:
    id: str
    hostname: str
    role: str
    status: str
    availability: str
    manager_status: str
    engine_version: str
    is_self: bool = False
    addr: str = ""


ROWS = [
    Row("w2id" + "0" * 21, "worker10", "worker", "Down", "Active", "", "0.1.0"),
    Row("m2id" + "0" * 21, "manager2", "manager", "Ready", "Active", "Reachable", "0.1.0"),
    Row("m1id" + "0" * 21, "manager1", "manager", "Ready", "Active", "Leader", "0.1.0", is_self=True),
    Row("w1id" + "0" * 21, "worker9", "worker", "Ready", "Drain", "", "0.1.0"),
]


def render(rows: list[Row]) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(status.node_table(rows))
    return [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]


def test_table_has_dockers_columns_in_order() -> None:
    header = render(ROWS)[0]
    positions = [header.index(col) for col in status.COLUMNS]
    assert positions == sorted(positions)


def test_answering_manager_is_starred_and_only_it() -> None:
    lines = render(ROWS)
    starred = [line for line in lines if "*" in line]
    assert len(starred) == 1
    assert starred[0].split()[:3] == ["m1id" + "0" * 21, "*", "manager1"]


def test_rows_sorted_by_hostname_numbers_as_numbers() -> None:
    body = render(ROWS)[1:]  # the header, then rows: no rule line, as Docker prints
    hostnames = [next(w for w in line.split() if w.startswith(("manager", "worker"))) for line in body]
    assert hostnames == ["manager1", "manager2", "worker9", "worker10"]


def test_worker_rows_leave_manager_status_empty() -> None:
    line = next(line for line in render(ROWS) if "worker9" in line)
    assert line.split()[2:] == ["Ready", "Drain", "0.1.0"]


def test_json_has_exactly_the_documented_fields() -> None:
    objects = status.nodes_json(ROWS)
    assert [o["hostname"] for o in objects] == ["manager1", "manager2", "worker9", "worker10"]
    for obj in objects:
        assert set(obj) == {"id", "hostname", "role", "status", "availability", "manager_status",
                            "engine_version"}
    assert objects[0]["manager_status"] == "Leader" and objects[0]["role"] == "manager"


class FakeBackend:
    name = "fake"

    def __init__(self, nodes: list[NodeHandle]) -> None:
        self._nodes = nodes

    def nodes(self) -> list[NodeHandle]:
        return self._nodes

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        yield from [f"{node.hostname} line {i}" for i in range(5)][-(tail or 5):]


def managers(states: list[str]) -> list[NodeHandle]:
    return [
        NodeHandle(f"manager{i}", "manager", st, f"ref{i}", control_addr=f"127.0.0.1:{4000 + i}")
        for i, st in enumerate(states, start=1)
    ] + [NodeHandle("worker1", "worker", "running", "refw")]


def test_status_asks_the_next_manager_when_one_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from manager.controlapi import client

    asked: list[str] = []

    def list_nodes(target: str, timeout: float = 3.0) -> list[Row]:
        asked.append(target)
        if target.endswith(":4001"):
            raise client.ControlError(f"cannot reach the manager at {target}")
        return ROWS

    monkeypatch.setattr(client, "list_nodes", list_nodes)
    monkeypatch.setattr(status, "load_backend", lambda: FakeBackend(managers(["running", "running"])))
    assert cli.main(["status", "--json"]) == 0
    assert asked == ["127.0.0.1:4001", "127.0.0.1:4002"]
    printed = json.loads(capsys.readouterr().out)
    assert [o["hostname"] for o in printed] == ["manager1", "manager2", "worker9", "worker10"]


def test_stopped_managers_are_tried_last(monkeypatch: pytest.MonkeyPatch) -> None:
    from manager.controlapi import client

    asked: list[str] = []

    def list_nodes(target: str, timeout: float = 3.0) -> list[Row]:
        asked.append(target)
        return ROWS

    monkeypatch.setattr(client, "list_nodes", list_nodes)
    _rows, answered = status.query_nodes(managers(["exited", "running", "paused"]))
    assert answered.hostname == "manager2" and asked == ["127.0.0.1:4002"]


def test_no_manager_answering_names_each_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from manager.controlapi import client

    def refuse(target: str, timeout: float = 3.0) -> list[Row]:
        raise client.ControlError(f"cannot reach the manager at {target}")

    monkeypatch.setattr(client, "list_nodes", refuse)
    monkeypatch.setattr(status, "load_backend", lambda: FakeBackend(managers(["running", "exited"])))
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert "no manager answered" in err
    assert "manager1 (127.0.0.1:4001)" in err and "manager2 (127.0.0.1:4002)" in err


def test_status_without_cluster_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(status, "load_backend", lambda: FakeBackend([]))
    assert cli.main(["status"]) == 1
    assert "no cluster is up" in capsys.readouterr().err


def test_query_without_managers_is_an_error() -> None:
    with pytest.raises(BackendError, match="no manager is running"):
        status.query_nodes([NodeHandle("worker1", "worker", "running", "w")])


def test_without_a_leader_status_warns_in_swarms_words() -> None:
    assert status.leader_warning(ROWS) is None
    leaderless = [r for r in ROWS if r.manager_status != "Leader"]
    warning = status.leader_warning(leaderless)
    assert warning == (
        "Warning: The swarm does not have a leader. It's possible that too few managers are online. "
        "Make sure more than half of the managers are online."
    )
