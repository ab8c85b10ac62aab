"""What `swarmlet up` prints, run against a stand-in backend: every line once when stdout is no
terminal, and a `docker swarm init` hint that a node's Engine API accepts."""

from __future__ import annotations

import pathlib
import re
import shlex
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploy import cli
from deploy.backends.base import Layout, NodeHandle
from deploy.commands import up
from deploy.engine import NodeRow


class FakeBackend:
    """Nodes that start when asked and are Ready at once."""

    name = "compose"

    def __init__(self) -> None:
        self.started: Layout | None = None

    def check(self, layout: Layout) -> None:
        pass

    def prepare(self, progress: Callable[[str], None]) -> str | None:
        progress("image swarmlet/base:b up to date")
        progress("image swarmlet/node:n up to date")
        return "swarmlet/node:n"

    def agent_help(self, layout: Layout) -> str:
        return "--no-swarm"

    def start_cluster(self, layout: Layout) -> None:
        self.started = layout

    def nodes(self) -> list[NodeHandle]:
        if self.started is None:
            return []
        layout = self.started
        return [NodeHandle(name, "manager" if name.startswith("manager") else "worker", "running", name,
                           docker_host=f"tcp://{layout.addr(name)}:2375", addr=layout.addr(name))
                for name in layout.names]

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        return iter(())

    def prometheus_url(self, timeout: float = 60.0) -> str | None:
        return None


def _rows(nodes: Any) -> list[NodeRow]:
    return [NodeRow(id=f"{n.hostname}-id", hostname=n.hostname, role=n.role, status="Ready",
                    availability="Active", manager_status="Leader" if n.hostname == "manager1" else
                    ("Reachable" if n.role == "manager" else ""), engine_version="0.1.0",
                    is_self=n.hostname == "manager1") for n in nodes]


@pytest.fixture
def fake(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setenv("SWARMLET_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("SWARMLET_PROJECT", "unit-up")
    monkeypatch.setenv("SWARMLET_NO_TLS", "1")
    monkeypatch.setattr(up, "load_backend", lambda name=None: backend)
    monkeypatch.setattr(up, "read_tokens", lambda nodes: bool(nodes))
    monkeypatch.setattr(up, "ask_managers", _rows)
    monkeypatch.setattr(up, "_engine_answers", lambda node: True)
    return backend


def test_without_a_terminal_every_line_is_printed_once(
    fake: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    # The progress's closing lines end in their elapsed time: compare the words before it.
    words = [re.sub(r"\s+\d+:\d\d:\d\d$", "", line) for line in lines]
    assert "image swarmlet/base:b up to date" in words
    assert any(w.startswith("manager1 created the swarm; join tokens in ") for w in words)
    twice = sorted({w for w in words if words.count(w) > 1})
    assert twice == [], out


def test_the_no_swarm_hint_is_a_swarm_init_a_node_accepts(
    fake: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodeagent.engineapi.swarmnode import NodeSwarmRoutes

    assert cli.main(["up", "--no-swarm"]) == 0
    out = capsys.readouterr().out
    [command] = re.findall(r"`(docker swarm init[^`]*)`", out)
    assert "export DOCKER_HOST=tcp://" in out
    # The request the docker CLI makes of that command: its flags, with the CLI's defaults.
    flags = shlex.split(command)[3:]
    given = dict(zip(flags[::2], flags[1::2], strict=True))
    body = {"ListenAddr": given.get("--listen-addr", "0.0.0.0:2377"),
            "AdvertiseAddr": given.get("--advertise-addr", "")}
    routes = NodeSwarmRoutes(membership=None, engine=None,  # type: ignore[arg-type]
                             interfaces=lambda name: "172.20.0.2" if name == "eth0" else None)
    routes._addresses(body)  # raises ApiError (HTTP 400) for an address the node refuses


def test_on_a_terminal_the_step_under_way_is_redrawn_in_place_and_ends_as_one_line() -> None:
    import io

    from deploy.progress import Steps

    out = io.StringIO()
    with Steps(out, live=True) as steps:
        task = steps.add_task("waiting for the nodes")
        steps.update(task, "3/5 nodes Ready")
        assert out.getvalue().rsplit("\r\x1b[2K", 1)[-1].startswith("⠋ 3/5 nodes Ready  0:00:00")
        steps.print("  a line of its own")
        steps.update(task, "5/5 nodes Ready")
        other = steps.add_task("left under way")
    # What the terminal shows: each erase (\r, then ESC[2K) wipes the line drawn so far.
    shown = [line.rsplit("\r\x1b[2K", 1)[-1] for line in out.getvalue().split("\n")]
    assert shown == ["  a line of its own", "  5/5 nodes Ready  0:00:00", "  left under way  0:00:00", ""]
    assert other == 1


@pytest.mark.parametrize("early_refused", [False, True])
def test_the_operator_certificate_is_asked_of_the_creating_manager_then_of_any(
    fake: FakeBackend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    early_refused: bool,
) -> None:
    asked: list[list[str]] = []

    def certificate(nodes: list[NodeHandle]) -> str | None:
        asked.append([n.hostname for n in nodes])
        refused = early_refused and len(asked) == 1
        return "manager1:2377 gave no operator certificate: busy" if refused else None

    monkeypatch.setattr(up, "operator_certificate", certificate)
    assert cli.main(["up"]) == 0
    everyone = ["manager1", "manager2", "manager3", "worker1", "worker2"]
    assert asked == ([["manager1"], everyone] if early_refused else [["manager1"]])
    assert "Warning" not in capsys.readouterr().err  # the second try got it
