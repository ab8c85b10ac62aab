"""The address scheme (deploy/addresses.py), the compose override, and `swarmlet env`'s line."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import pytest

from deploy.addresses import (
    DEFAULT_PUBLISH,
    AddressError,
    blocks_listening,
    choose_block,
    env_line,
    format_publish,
    names_a_node_engine,
    next_free_name,
    node_addr,
    parse_name,
    parse_publish,
    port_bindings,
    preferred_block,
    prometheus_addr,
)
from deploy.backends.base import ClusterState, Layout
from deploy.backends.compose_files import (
    BASE_NODES,
    PROMETHEUS_SERVICE,
    node_command,
    override_text,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("block", "role", "index", "addr"),
    [(0, "manager", 1, "127.0.1.1"), (0, "manager", 3, "127.0.1.3"), (0, "worker", 1, "127.0.2.1"),
     (0, "worker", 12, "127.0.2.12"), (77, "manager", 254, "127.77.1.254"),
     (254, "worker", 2, "127.254.2.2")],
)
def test_node_addresses(block: int, role: str, index: int, addr: str) -> None:
    assert node_addr(block, role, index) == addr


@pytest.mark.parametrize(
    ("block", "role", "index"), [(0, "manager", 0), (0, "worker", 255), (255, "worker", 1), (0, "boss", 1)]
)
def test_addresses_out_of_the_scheme_are_refused(block: int, role: str, index: int) -> None:
    with pytest.raises(AddressError):
        node_addr(block, role, index)


def test_default_project_has_block_0_others_a_stable_one_of_1_to_254() -> None:
    assert preferred_block("swarmlet") == 0
    blocks = {preferred_block(f"swarmlet-test-{i}") for i in range(2000)}
    assert blocks <= set(range(1, 255)) and len(blocks) > 200
    assert preferred_block("demo") == preferred_block("demo")  # the same on every run


def test_choose_block_moves_to_the_next_free_one() -> None:
    assert choose_block(7, set()) == 7
    assert choose_block(7, {7, 8}) == 9
    assert choose_block(254, {254}) == 1  # wraps within 1..254, never to the default's 0
    with pytest.raises(AddressError, match=r"every 127\.B block"):
        choose_block(3, set(range(1, 255)))


def test_listening_blocks_are_read_from_proc_net_tcp() -> None:
    def hexaddr(a: int, b: int, c: int, d: int) -> str:
        return f"{d:02X}{c:02X}{b:02X}{a:02X}"

    table = "\n".join([
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        f"   0: {hexaddr(127, 9, 1, 1)}:08FF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        f"   1: {hexaddr(127, 12, 2, 3)}:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2",
        f"   2: {hexaddr(127, 13, 1, 1)}:0947 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 3",
        f"   3: {hexaddr(127, 14, 3, 1)}:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4",
        f"   4: {hexaddr(10, 0, 1, 1)}:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 5",
    ])
    # 13: a connection, not a listener; 14: 127.14.3.x is no node's; 10.0.1.1 is not loopback.
    assert blocks_listening(table) == {9, 12}


def test_names_and_the_next_free_one() -> None:
    assert parse_name("worker12") == ("worker", 12)
    for bad in ("worker0", "worker", "Manager1", "worker01", "node1", "worker255"):
        with pytest.raises(AddressError):
            parse_name(bad)
    assert next_free_name("worker", ["manager1", "worker1", "worker2"]) == "worker3"
    assert next_free_name("worker", ["manager1", "worker2"]) == "worker1"  # a removed name is reused
    assert next_free_name("manager", ["manager1", "manager2", "manager3", "worker4"]) == "manager4"


def test_publish_lists_are_parsed_and_checked() -> None:
    assert parse_publish("80,8080") == DEFAULT_PUBLISH
    assert format_publish(DEFAULT_PUBLISH) == "80,8080"
    assert parse_publish("80,8080,30000-30009") == ((80, 80), (8080, 8080), (30000, 30009))
    assert parse_publish("8080, 80") == ((80, 80), (8080, 8080))
    assert parse_publish("") == ()
    for bad, words in [("http", "invalid port"), ("0", "1 to 65535"), ("90-80", "START <= END"),
                       ("2375", "the node's own"), ("9000-9400", "port 9323"), ("80,70-90", "overlaps 80")]:
        with pytest.raises(AddressError, match=words):
            parse_publish(bad)


def test_port_bindings_put_every_port_on_the_nodes_address() -> None:
    assert port_bindings("127.5.2.1", ((80, 80), (30000, 30009))) == [
        "127.5.2.1:2377:2377", "127.5.2.1:2375:2375", "127.5.2.1:9323:9323", "127.5.2.1:8081:8081",
        "127.5.2.1:80:80", "127.5.2.1:30000-30009:30000-30009",
    ]


def test_env_line() -> None:
    assert env_line("127.0.1.2") == "export DOCKER_HOST=tcp://127.0.1.2:2375"


def _compose_yml_services() -> dict[str, dict[str, list[str]]]:
    """compose.yml's ports and commands per service, read from its text (no YAML library here)."""
    services: dict[str, dict[str, list[str]]] = {}
    current = key = None
    text = (ROOT / "compose.yml").read_text()
    section = text[text.index("\nservices:\n"):text.index("\nnetworks:\n")]
    for line in section.splitlines():
        if match := re.fullmatch(r"  (\w+):", line):
            current = match.group(1)
            services[current] = {"ports": [], "command": []}
        elif current and (match := re.fullmatch(r"    (ports|command):", line)):
            key = match.group(1)
        elif current and key and (match := re.fullmatch(r'      - "?([^"#]*?)"?\s*(#.*)?', line)):
            services[current][key].append(match.group(1).strip())
        elif not line.startswith("      "):
            key = None
    return services


def test_compose_yml_is_the_default_layout_as_the_override_would_write_it() -> None:
    services = _compose_yml_services()
    prometheus = services.pop(PROMETHEUS_SERVICE)
    assert tuple(sorted(services)) == BASE_NODES
    assert prometheus["ports"] == [f"{prometheus_addr(0)}:9090:9090"] == ["127.0.3.1:9090:9090"]
    layout = Layout.of(3, 2)
    for name in BASE_NODES:
        assert services[name]["ports"] == port_bindings(layout.addr(name), DEFAULT_PUBLISH), name
        assert services[name]["command"] == node_command(name), name


def test_override_for_another_block_more_nodes_mdns_and_no_swarm() -> None:
    text = override_text("/repo/compose.yml", ["manager1", "manager4", "worker3"], 9, ((8080, 8080),),
                         discover="mdns", no_swarm=True)
    assert text.startswith("# Written by")
    lines = text.splitlines()
    ports = [json.loads(line.split("!override ", 1)[1]) for line in lines if "ports: !override" in line]
    assert ports[0] == ["127.9.1.1:2377:2377", "127.9.1.1:2375:2375", "127.9.1.1:9323:9323",
                        "127.9.1.1:8081:8081", "127.9.1.1:8080:8080"]
    assert ports[2][0] == "127.9.2.3:2377:2377"
    commands = [json.loads(line.split(": ", 1)[1]) for line in lines if line.startswith("    command: ")]
    # Blank engines: no swarm options at all (the agent refuses --bootstrap, --join or a token with
    # --no-swarm); `docker swarm init` and `join` put them in a swarm.
    assert commands == [["--role=manager", "--hostname=manager1", "--no-swarm"],
                        ["--role=manager", "--hostname=manager4", "--no-swarm"],
                        ["--role=worker", "--hostname=worker3", "--no-swarm"]]
    assert '    extends: {"file": "/repo/compose.yml", "service": "manager3"}' in lines
    assert '    extends: {"file": "/repo/compose.yml", "service": "worker2"}' in lines
    # Prometheus moves to the block's own address, which no node has.
    assert ports[3] == ["127.9.3.1:9090:9090"]
    assert lines[-2:] == ["volumes:", "  manager4-data: {}"]
    # A manager compose.yml does not name gets a data volume of its own, and keeps the node
    # image's Python copy (its list replaces manager3's).
    mounts = [json.loads(line.split(": ", 1)[1]) for line in lines if line.startswith("    volumes: ")]
    assert mounts == [["manager4-data:/var/lib/swarmlet", "shared-volumes:/var/lib/swarmlet-shared",
                       "python:/opt/swarmlet/python:ro"]]


def test_manager1_creates_a_new_cluster_and_the_others_join_with_its_tokens() -> None:
    """manager1 bootstraps, its tokens (and the CA, until the Raft store holds its key) made in its
    own data volume; every other node joins with a token the host keeps. A cluster an older
    swarmlet founded with --initial-cluster keeps its founders' commands."""
    first = node_command("manager1")
    assert first[2] == "--bootstrap"
    assert "--manager-token-file=/var/lib/swarmlet/swarm-tokens/manager_token" in first
    assert not any("/run/secrets" in arg or arg.startswith("--token-file") for arg in first)
    for name in ("manager2", "manager4"):
        command = node_command(name)
        assert "--bootstrap" not in command and "--token-file=/run/secrets/manager_token" in command
    assert "--token-file=/run/secrets/worker_token" in node_command("worker1")
    founders = ("manager1", "manager2", "manager3")
    wanted = "--initial-cluster=manager1=manager1:2377,manager2=manager2:2377,manager3=manager3:2377"
    for name in founders:
        command = node_command(name, founders=founders)
        assert wanted in command and "--bootstrap" not in command, command
    assert "--initial-cluster" not in " ".join(node_command("manager4", founders=founders))
    text = override_text("/repo/compose.yml", ["manager1", "manager2", "manager4"], 9, (),
                         founders=("manager1", "manager2"))
    commands = [json.loads(line.split(": ", 1)[1]) for line in text.splitlines()
                if line.startswith("    command: ")]
    two = "--initial-cluster=manager1=manager1:2377,manager2=manager2:2377"
    assert commands[0][2] == commands[1][2] == two
    assert not any(c.startswith(("--initial-cluster", "--bootstrap")) for c in commands[2])


def test_up_founds_no_new_cluster_and_keeps_a_running_ones_founders() -> None:
    from deploy.commands.up import founding_managers

    fresh = Layout.of(5, 2)
    assert founding_managers(fresh, None, running=False) == ()  # manager1 creates it alone
    recorded = dataclasses.replace(Layout.of(3, 2), founders=("manager1", "manager2", "manager3"))
    assert founding_managers(fresh, recorded, running=True) == ("manager1", "manager2", "manager3")
    assert founding_managers(fresh, None, running=True) == ()
    assert founding_managers(dataclasses.replace(fresh, no_swarm=True), None, running=False) == ()
    # `node rm manager2`: the name leaves the founders, so a later `node add` of it joins.
    shrunk = recorded.with_names([n for n in recorded.names if n != "manager2"])
    assert shrunk.founders == ("manager1", "manager3")
    assert shrunk.with_names([*shrunk.names, "manager2"]).founders == ("manager1", "manager3")


def test_layout_round_trips_through_the_state_file() -> None:
    layout = Layout.of(3, 2, block=42, publish=((80, 80),), no_swarm=True, image="swarmlet/node:abc",
                       founders=("manager1", "manager2"))
    state = ClusterState("compose", 0, 0).with_layout(layout.with_names([*layout.names, "worker7"]))
    assert (state.managers, state.workers) == (3, 3)
    again = json.loads(json.dumps(state.extra))
    restored = Layout.from_json(again["layout"])
    assert restored is not None and restored.names[-1] == "worker7"
    assert restored.addr("worker7") == "127.42.2.7" and restored.image == "swarmlet/node:abc"
    assert restored.founders == ("manager1", "manager2")
    assert Layout.from_json({"names": ["boss1"]}) is None  # a damaged record is no layout


def test_a_docker_host_that_names_a_node_engine_is_recognised() -> None:
    assert names_a_node_engine("tcp://127.0.1.1:2375")
    assert names_a_node_engine("tcp://127.37.2.12:2375/")
    assert not names_a_node_engine("unix:///var/run/docker.sock")
    assert not names_a_node_engine("tcp://127.0.0.1:2375")  # a real engine on loopback
    assert not names_a_node_engine("tcp://127.0.3.1:2375")  # the services octet: no node
    assert not names_a_node_engine("tcp://127.0.1.1:2376")
    assert not names_a_node_engine("tcp://10.0.1.1:2375")
    assert not names_a_node_engine("")


def test_cluster_commands_ignore_a_docker_host_naming_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `eval $(swarmlet env)`, `swarmlet status` still finds its containers."""
    from deploy import cli

    seen: list[str | None] = []
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.1.1:2375")
    def run(args: object) -> int:
        seen.append(os.environ.get("DOCKER_HOST"))
        return 0

    monkeypatch.setattr("deploy.commands.env.run", run)
    assert cli.main(["env"]) == 0
    assert seen == [None]
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert cli.main(["env"]) == 0
    assert seen == [None, "tcp://127.0.0.1:2375"]
