"""Bad input to the `swarmlet` commands: a clear message, exit 1, and nothing changed."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

from deploy import cli
from deploy.backends.base import ClusterState, NodeHandle, UnknownNode, read_state, resolve_node, write_state
from deploy.backends.local import node_specs


@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An empty state folder of our own, so no test sees or touches a real cluster's."""
    folder = tmp_path / "state"
    monkeypatch.setenv("SWARMLET_STATE", str(folder))
    return folder


def local_cluster_on_record(folder: pathlib.Path, managers: int = 3, workers: int = 2) -> None:
    """A local cluster in the state file whose processes are not running (no pid files)."""
    specs = node_specs(managers, workers, folder, folder / "local")
    write_state(ClusterState("local", managers, workers, {"nodes": specs}))


NODES = [
    NodeHandle("manager1", "manager", "running", "c1", aliases=("swarmlet-manager1-1",)),
    NodeHandle("manager2", "manager", "running", "c2"),
    NodeHandle("3f2a9c0d1e7b", "worker", "running", "c3", aliases=("swarmlet-worker-1",)),
    NodeHandle("3f2bb1c2d3e4", "worker", "running", "c4", aliases=("swarmlet-worker-2",)),
]


def test_resolve_by_hostname_alias_and_unique_prefix() -> None:
    assert resolve_node("manager2", NODES).ref == "c2"
    assert resolve_node("swarmlet-worker-2", NODES).ref == "c4"
    assert resolve_node("3f2a", NODES).ref == "c3"


def test_ambiguous_or_unknown_name_lists_the_nodes() -> None:
    for name in ("3f2", "manager", "nope"):
        with pytest.raises(UnknownNode) as err:
            resolve_node(name, NODES)
        assert str(err.value) == (
            f"No such node: {name}. The nodes are: 3f2a9c0d1e7b, 3f2bb1c2d3e4, manager1, manager2"
        )


@pytest.mark.parametrize("command", [["chaos", "stop", "manager7"], ["logs", "manager7"]])
def test_unknown_node_lists_the_nodes_there_are(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    local_cluster_on_record(state)
    before = (state / "state.json").read_text()
    assert cli.main(command) == 1
    err = capsys.readouterr().err
    assert "No such node: manager7. The nodes are: manager1, manager2, manager3, worker1, worker2" in err
    assert (state / "state.json").read_text() == before


def test_chaos_rejects_an_unknown_action(state: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["chaos", "explode", "manager1"])
    assert exc.value.code == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err


def test_local_backend_refuses_disconnect_with_a_reason(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_cluster_on_record(state)
    assert cli.main(["chaos", "disconnect", "worker1"]) == 1
    assert "disconnect is not supported by the local backend" in capsys.readouterr().err


def test_pausing_a_stopped_local_node_says_it_is_not_running(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_cluster_on_record(state)
    assert cli.main(["chaos", "pause", "manager2"]) == 1
    assert "manager2 is not running" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "--managers", "0"], "--managers must be at least 1 (got 0)"),
        (["up", "--workers", "-1"], "--workers cannot be negative (got -1)"),
        (["up", "--timeout", "0"], "--timeout must be positive"),
        (["up", "--backend", "local", "--managers", "300"], "1 to 254 managers"),
        (["up", "--backend", "local", "--discover", "mdns"], "--discover mdns needs the compose backend"),
    ],
)
def test_bad_counts_are_refused_before_anything_happens(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
    assert not state.exists()


def test_no_docker_engine_says_so_and_suggests_local(
    state: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert "No Docker engine is reachable" in err
    assert "--backend local" in err
    assert not state.exists()  # no tokens, no state file: nothing was made


def test_local_port_in_use_is_named(state: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.1.2", 2377))
        except OSError as e:
            pytest.skip(f"cannot bind 127.0.1.2:2377 for the test: {e}")
        taken.listen()
        assert cli.main(["up", "--backend", "local"]) == 1
    err = capsys.readouterr().err
    if "is already in use" in err and "127.0.1.2:2377" not in err:
        pytest.skip(f"another local cluster on this machine holds the addresses first: {err.strip()}")
    assert "port 127.0.1.2:2377/tcp (cluster port of manager2) is already in use" in err
    assert not state.exists()


def test_up_refuses_a_second_backend_while_one_runs(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A live process whose command line names nodeagent stands in for a running local manager1.
    local_cluster_on_record(state)
    sleeper = os.spawnlp(os.P_NOWAIT, "python3", "python3", "-c",
                         "import time; time.sleep(30)  # nodeagent stand-in")
    try:
        (state / "local").mkdir(parents=True, exist_ok=True)
        (state / "local" / "manager1.pid").write_text(f"{sleeper}\n")
        assert cli.main(["up", "--backend", "compose"]) == 1
        assert "a cluster with the local backend is up: `swarmlet down` first" in capsys.readouterr().err
        assert read_state() is not None and read_state().backend == "local"  # type: ignore[union-attr]
    finally:
        os.kill(sleeper, 9)
        os.waitpid(sleeper, 0)


def test_up_never_removes_nodes_it_points_at_node_rm(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMLET_PROJECT", "unit-beyond")  # a block of its own: 127.0.x may be in use
    local_cluster_on_record(state)
    before = (state / "state.json").read_text()
    assert cli.main(["up", "--backend", "local", "--managers", "1", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "the cluster has nodes beyond --managers 1 --workers 1: manager2, manager3, worker2" in err
    assert "swarmlet node rm NAME" in err
    assert (state / "state.json").read_text() == before


def test_tokens_read_from_a_manager_are_kept_without_any_ca_key(state: pathlib.Path) -> None:
    """What `up` keeps of the cluster a manager created (GET /swarm): the two tokens and the root
    CA certificate; a CA key left by an older swarmlet is deleted; an answer with no tokens
    changes nothing."""
    from deploy.backends.base import has_tokens, save_join_tokens
    from manager.ca import ClusterCredentials

    made = ClusterCredentials.create()
    state.mkdir(parents=True, exist_ok=True)
    (state / "ca.key").write_bytes(made.ca_key_pem)
    assert not save_join_tokens({"JoinTokens": {}}, state)
    assert not has_tokens(state) and (state / "ca.key").exists()
    swarm = {"JoinTokens": {"Worker": made.worker_token, "Manager": made.manager_token},
             "TLSInfo": {"TrustRoot": made.ca_cert_pem.decode()}}
    assert save_join_tokens(swarm, state) and has_tokens(state)
    assert (state / "manager_token").read_text().strip() == made.manager_token
    assert (state / "ca.crt").read_bytes() == made.ca_cert_pem
    assert not (state / "ca.key").exists()
    assert (state / "worker_token").stat().st_mode & 0o077 == 0


def test_compose_override_adds_managers_beyond_three(state: pathlib.Path) -> None:
    from deploy.backends.base import Layout
    from deploy.backends.compose import ComposeBackend

    backend = ComposeBackend()
    backend._write_override(Layout.of(5, 2))
    override = (state / "compose.override.yml").read_text()
    assert '  manager5:\n    extends: {"file": ' in override
    assert '    hostname: "manager5"' in override
    assert "  manager5-data: {}" in override
    backend._write_override(Layout.of(3, 2))
    assert not (state / "compose.override.yml").exists()  # compose.yml alone is that cluster
    # A running cluster an older swarmlet founded with --initial-cluster keeps its commands.
    backend._write_override(Layout.of(3, 2, founders=("manager1", "manager2", "manager3")))
    assert '"--initial-cluster=' in (state / "compose.override.yml").read_text()


def test_compose_port_conflict_is_named() -> None:
    from deploy.backends.compose import _explain

    daemon = RuntimeError(
        "Error response from daemon: driver failed programming external connectivity on endpoint "
        "swarmlet-manager1-1 (0f3c): Bind for 127.0.0.1:2377 failed: port is already allocated"
    )
    assert _explain(daemon) == (
        "port 127.0.0.1:2377 is already in use: stop what uses it, then run `swarmlet up` again"
    )
    other = RuntimeError("line one\nno such image: swarmlet/node:latest")
    assert _explain(other) == "docker compose failed: line one\nno such image: swarmlet/node:latest"


def test_project_flag_and_env_pick_the_compose_project_and_its_own_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deploy.backends.base import DEFAULT_PROJECT, project_name, state_dir
    from deploy.backends.compose import ComposeBackend

    monkeypatch.delenv("SWARMLET_STATE", raising=False)
    monkeypatch.delenv("SWARMLET_PROJECT", raising=False)
    assert project_name() == DEFAULT_PROJECT == "swarmlet"
    assert state_dir().name == "cluster"  # the default cluster's folder is unchanged
    default = ComposeBackend()
    assert (default.project, default.network) == ("swarmlet", "swarmlet_cluster")
    monkeypatch.setenv("SWARMLET_PROJECT", "demo-2")
    named = ComposeBackend()
    assert (named.project, named.network) == ("demo-2", "demo-2_cluster")
    assert state_dir().name == "cluster-demo-2"
    assert ComposeBackend(project="other").project == "other"


@pytest.mark.parametrize("argv", [["--project", "Bad Name", "status"], ["status", "--project=Upper"]])
def test_invalid_project_name_is_refused(
    argv: list[str], state: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMLET_PROJECT", "swarmlet")  # restored afterwards: the flag sets it
    assert cli.main(argv) == 1
    assert "invalid project name" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--project", "demo", "down"], ["down", "--project", "demo"]])
def test_project_flag_before_or_after_the_command(
    argv: list[str], state: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def fake_run(args: object) -> int:
        from deploy.backends.base import project_name

        seen.append(project_name())
        return 0

    import deploy.commands.down as down

    monkeypatch.setenv("SWARMLET_PROJECT", "swarmlet")  # restored afterwards: the flag sets it
    monkeypatch.setattr(down, "run", fake_run)
    assert cli.main(argv) == 0
    assert seen == ["demo"]


@pytest.mark.parametrize(("flag", "value", "words"), [("--cpus", "many", "is not a number of CPUs"),
                                                      ("--memory", "lots", "is not a size")])
def test_up_refuses_a_bad_declared_capacity_and_makes_nothing(
    state: pathlib.Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, words: str
) -> None:
    assert cli.main(["up", "--backend", "local", flag, value]) == 1
    assert f"{flag}: '{value}' {words}" in capsys.readouterr().err
    assert not state.exists()


def test_the_declared_capacity_rides_in_the_layout_to_every_node() -> None:
    from deploy.backends.base import Layout
    from deploy.backends.local import _node_env

    layout = Layout.of(1, 1, cpus="1", memory="1g")
    assert Layout.from_json(layout.to_json()) == layout
    env = _node_env(layout)
    assert (env["SWARMLET_CPUS"], env["SWARMLET_MEMORY"]) == ("1", "1g")
    assert Layout.of(1, 1).capacity_env() == {"SWARMLET_CPUS": "", "SWARMLET_MEMORY": ""}


def test_up_is_not_done_while_a_live_manager_is_listed_unreachable() -> None:
    from deploy.commands.up import readiness
    from deploy.engine import NodeRow

    def row(name: str, status: str = "Ready", manager: str = "") -> NodeRow:
        return NodeRow(id=name, hostname=name, role="manager" if manager else "worker", status=status,
                       availability="Active", manager_status=manager, engine_version="0.1.0", is_self=False)

    rows = [row("manager1", manager="Leader"), row("manager2", manager="Unreachable"),
            row("manager3", manager="Reachable"), row("worker1"), row("worker2")]
    assert readiness(rows, 5) == (5, "manager1", False)  # the leader has not heard manager2 yet
    rows[1] = row("manager2", manager="Reachable")
    assert readiness(rows, 5) == (5, "manager1", True)
    stopped = [row("manager1", manager="Leader"), row("manager2", "Down", "Unreachable"), *rows[2:]]
    live = {"manager1", "manager3", "worker1", "worker2"}
    assert readiness(stopped, 4, live) == (4, "manager1", True)  # a stopped manager is not waited for
