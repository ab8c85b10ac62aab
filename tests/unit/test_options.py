"""The node agent's flags and environment: defaults, precedence, and errors that name the culprit."""

from __future__ import annotations

import pathlib

import pytest

from nodeagent.options import OptionsError, parse_options

BASE = ["--role", "worker", "--hostname", "node1", "--advertise-addr", "127.0.0.5"]


def test_defaults_are_swarms_ports() -> None:
    opts = parse_options(BASE, {})
    assert (opts.gossip_port, opts.cluster_port, opts.metrics_port) == (7946, 2377, 9323)
    assert opts.listen_addr == "0.0.0.0"
    assert opts.data_dir == "/var/lib/swarmlet"
    assert opts.gossip_config == "default" and opts.time_scale == 1.0 and opts.log_level == "info"
    assert opts.join == () and opts.discover is None and not opts.bootstrap
    assert opts.gossip_address == "127.0.0.5:7946"
    assert opts.web_port == 8081
    assert parse_options([*BASE, "--web-port", "9090"], {}).web_port == 9090


def test_environment_fills_in_and_flags_win() -> None:
    env = {"SWARMLET_ROLE": "manager", "SWARMLET_GOSSIP_PORT": "8000", "SWARMLET_BOOTSTRAP": "true",
           "SWARMLET_JOIN": "m1:2377, m2:2377", "SWARMLET_HOSTNAME": "fromenv",
           "SWARMLET_ADVERTISE_ADDR": "10.0.0.1"}
    opts = parse_options(["--gossip-port", "9000"], env)
    assert opts.role == "manager"
    assert opts.gossip_port == 9000
    assert opts.bootstrap is True
    assert opts.join == ("m1:2377", "m2:2377")
    assert opts.hostname == "fromenv"
    assert opts.cluster_address == "10.0.0.1:2377"


def test_gossip_seeds_default_to_the_join_hosts_at_the_gossip_port() -> None:
    opts = parse_options([*BASE, "--join", "manager1:2377,manager2:2377", "--gossip-port", "7000"], {})
    assert opts.gossip_seeds() == ("manager1:7000", "manager2:7000")
    explicit = parse_options([*BASE, "--gossip-join", "127.0.0.9:1234"], {})
    assert explicit.gossip_seeds() == ("127.0.0.9:1234",)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {}, "--role"),
        (["--role", "boss"], {}, "--role"),
        ([], {"SWARMLET_ROLE": "boss"}, "SWARMLET_ROLE"),
        ([*BASE, "--gossip-port", "70000"], {}, "--gossip-port"),
        ([*BASE, "--metrics-port", "http"], {}, "--metrics-port"),
        (BASE, {"SWARMLET_METRICS_PORT": "0"}, "SWARMLET_METRICS_PORT"),
        ([*BASE, "--time-scale", "0"], {}, "--time-scale"),
        ([*BASE, "--time-scale", "fast"], {}, "--time-scale"),
        ([*BASE, "--join", "manager1"], {}, "--join"),
        ([*BASE, "--join", "manager1:notaport"], {}, "--join"),
        ([*BASE, "--listen-addr", "not-an-ip"], {}, "--listen-addr"),
        ([*BASE, "--gossip-config", "wan"], {}, "--gossip-config"),
        ([*BASE, "--discover", "dns"], {}, "--discover"),
        ([*BASE, "--log-level", "loud"], {}, "--log-level"),
        ([*BASE, "--token-file", "/nonexistent/token"], {}, "--token-file"),
        (BASE, {"SWARMLET_BOOTSTRAP": "maybe"}, "SWARMLET_BOOTSTRAP"),
        ([*BASE, "--bootstrap"], {}, "--bootstrap"),
        ([*BASE, "--discover", "mdns", "--join", "m:2377"], {}, "--discover"),
        ([*BASE, "--metrics-port", "7946"], {}, "--metrics-port"),
        ([*BASE, "--web-port", "2375"], {}, "--web-port"),
        ([*BASE, "--web-port", "web"], {}, "--web-port"),
        ([*BASE, "--hostname", "bad name"], {}, "--hostname"),
        ([*BASE, "--no-such-flag"], {}, "--no-such-flag"),
    ],
)
def test_bad_values_name_the_flag_or_variable(argv: list[str], env: dict[str, str], named: str) -> None:
    with pytest.raises(OptionsError) as info:
        parse_options(argv, env)
    assert named in str(info.value)


def test_token_files_must_exist(tmp_path: pathlib.Path) -> None:
    token = tmp_path / "token"
    token.write_text("SWMTKN-1-x-y")
    opts = parse_options([*BASE, "--token-file", str(token)], {})
    assert opts.token_file == str(token)


def test_declared_capacity_reads_dockers_words_and_defaults_to_the_machine() -> None:
    base = ["--role", "worker", "--advertise-addr", "127.0.0.1"]
    opts = parse_options([*base, "--cpus", "0.5", "--memory", "1g"], {})
    assert (opts.nano_cpus, opts.memory_bytes) == (500_000_000, 1 << 30)
    opts = parse_options(base, {"SWARMLET_CPUS": "2", "SWARMLET_MEMORY": "512m"})
    assert (opts.nano_cpus, opts.memory_bytes) == (2_000_000_000, 512 << 20)
    # compose passes the variables through empty when `swarmlet up` was given no capacity
    opts = parse_options(base, {"SWARMLET_CPUS": "", "SWARMLET_MEMORY": ""})
    assert (opts.nano_cpus, opts.memory_bytes) == (None, None)
    for flag, value, words in (("--cpus", "none", "is not a number of CPUs"),
                               ("--memory", "lots", "is not a size"), ("--memory", "0", "must be positive")):
        with pytest.raises(OptionsError, match=f"invalid value for {flag}: .*{words}"):
            parse_options([*base, flag, value], {})


def test_the_data_path_port_is_4789_and_may_not_share_another_port() -> None:
    assert parse_options(BASE, {}).data_path_port == 4789
    assert parse_options([*BASE, "--data-path-port", "4790"], {}).data_path_port == 4790
    with pytest.raises(OptionsError, match="--data-path-port 7946 is already taken by --gossip-port"):
        parse_options([*BASE, "--data-path-port", "7946"], {})


def test_initial_cluster_names_the_founders_and_is_checked(tmp_path: pathlib.Path) -> None:
    from nodeagent.identity import founder_id, founders, is_id, token_digest

    token = tmp_path / "manager_token"
    token.write_text("SWMTKN-1-" + "d" * 50 + "-" + "s" * 25 + "\n")
    base = ["--role=manager", "--hostname=manager2", "--advertise-addr=127.0.0.1",
            f"--manager-token-file={token}"]
    members = "--initial-cluster=manager1=manager1:2377,manager2=manager2:2377,manager3=127.0.1.3:2377"
    options = parse_options([*base, members], {})
    assert options.initial_cluster == (("manager1", "manager1:2377"), ("manager2", "manager2:2377"),
                                       ("manager3", "127.0.1.3:2377"))
    # Every founder computes every founder's ID alike: from the CA digest and the names.
    ids = founders(token_digest(str(token)), options.initial_cluster)
    assert list(ids.values()) == ["manager1:2377", "manager2:2377", "127.0.1.3:2377"]
    assert all(is_id(i) for i in ids) and len(set(ids)) == 3
    assert founder_id("d" * 50, "manager2") in ids and founder_id("e" * 50, "manager2") not in ids
    for argv, words in (
        ([*base, "--initial-cluster=manager1=manager1:2377"], r"does not name this node \(manager2\)"),
        ([*base, "--initial-cluster=manager2"], "is not NAME=HOST:PORT"),
        ([*base, "--initial-cluster=manager2=a:1,manager2=b:1"], "names a manager twice"),
        ([*base, "--bootstrap", "--initial-cluster=manager2=a:1"], "exclude each other"),
        (["--role=worker", "--hostname=manager2", "--advertise-addr=127.0.0.1",
          "--initial-cluster=manager2=a:1"], "is for managers only"),
        ([*base[:3], "--initial-cluster=manager2=a:1"], "needs --manager-token-file"),
    ):
        with pytest.raises(OptionsError, match=words):
            parse_options(argv, {})


def test_founders_agree_on_the_cluster_id_their_certificates_carry() -> None:
    from nodeagent.identity import founder_id, founders_cluster_id, is_id

    ours = founders_cluster_id("d" * 50)
    assert is_id(ours) and ours == founders_cluster_id("d" * 50)  # every founder derives the same
    assert ours != founders_cluster_id("e" * 50)  # another CA, another cluster
    assert ours not in {founder_id("d" * 50, f"manager{i}") for i in (1, 2, 3)}  # never a node's ID


def test_tlsverify_takes_dockerds_three_files(tmp_path: pathlib.Path) -> None:
    files = []
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
        files.append(str(tmp_path / name))
    assert parse_options(BASE, {}).engine_tls is None
    flags = ["--tlsverify", "--tlscacert", files[0], "--tlscert", files[1], "--tlskey", files[2]]
    assert parse_options([*BASE, *flags], {}).engine_tls == tuple(files)
    env = {"SWARMLET_TLSVERIFY": "1", "SWARMLET_TLSCACERT": files[0], "SWARMLET_TLSCERT": files[1],
           "SWARMLET_TLSKEY": files[2]}
    assert parse_options(BASE, env).engine_tls == tuple(files)
    with pytest.raises(OptionsError, match=r"^--tlsverify needs --tlscert, --tlskey$"):
        parse_options([*BASE, "--tlsverify", "--tlscacert", files[0]], {})
    with pytest.raises(OptionsError, match=r"^--tlskey is only used with --tlsverify$"):
        parse_options([*BASE, "--tlskey", files[2]], {})
    with pytest.raises(OptionsError, match=r"--tlscert: .*no such file"):
        parse_options([*BASE, "--tlsverify", "--tlscert", str(tmp_path / "missing.pem")], {})
