"""Node agents as real processes on 127.0.0.x: crash detection, clean shutdown, bad input, link faults."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from nodeagent import tls
from nodeagent.transport.faults import LinkFaultRule, set_link_faults
from tests.local.conftest import Agent, AgentFactory, agent_env, free_port, loopback_block, wait_for


def converged(agents: list[Agent], ids: set[str]) -> bool:
    """Every agent sees exactly ``ids``, all alive."""
    return all(a.members() == dict.fromkeys(ids, "alive") for a in agents)


def test_five_agents_a_sigkilled_one_is_marked_dead_by_the_other_four(agents: AgentFactory) -> None:
    nodes = agents(5)
    ids = {a.node_id for a in nodes}
    wait_for(lambda: converged(nodes, ids), 20, "five agents to see each other alive")

    victim, survivors = nodes[2], [a for a in nodes if a is not nodes[2]]
    victim.kill()
    killed_at = time.monotonic()
    wait_for(
        lambda: all(a.members()[victim.node_id] == "dead" for a in survivors),
        15,
        "the four survivors to mark the killed agent dead",
    )
    detection = time.monotonic() - killed_at
    for agent in survivors:
        seen = agent.members()
        assert {n: s for n, s in seen.items() if n != victim.node_id} == dict.fromkeys(
            ids - {victim.node_id}, "alive"
        )
        assert agent.metric("swarmlet_gossip_members", state="dead") == 1
        assert agent.metric("swarmlet_gossip_members", state="alive") == 3
    print(f"crash detected as dead by all 4 survivors after {detection:.2f} s")
    # The default timing promises detection within a few seconds on loopback, even on a busy machine.
    # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy loop):
    # min 0.66 s, median 0.74 s, max 0.97 s; 10 later runs at load average 7 to 10: max 1.92 s.
    # The bound is 5 times that worst.
    assert detection < 10, detection


def test_sigterm_exits_0_within_a_second_and_the_others_see_it_leave(agents: AgentFactory) -> None:
    nodes = agents(3)
    ids = {a.node_id for a in nodes}
    wait_for(lambda: converged(nodes, ids), 20, "three agents to converge")
    leaver = nodes[1]
    assert leaver.proc is not None
    began = time.monotonic()
    leaver.proc.send_signal(signal.SIGTERM)
    code = leaver.proc.wait(5)
    took = time.monotonic() - began
    print(f"SIGTERM to exit: {took:.3f} s")
    assert code == 0, leaver.log()
    # Measured under load (6 runs of tests/local on 2 cores, one kept busy by a Python busy loop):
    # min 0.216 s, median 0.220 s, max 0.268 s (5 later runs at load average 7 to 10: max
    # 0.264 s); the bound is 3.7 times that worst.
    assert took < 1.0, f"SIGTERM took {took:.3f} s"
    wait_for(
        lambda: all(a.members()[leaver.node_id] == "left" for a in (nodes[0], nodes[2])),
        10,
        "the others to see the agent leave",
    )


def seen_by(nodes: list[Agent]) -> str:
    """The members each of ``nodes`` sees, for a failure message."""
    parts = []
    for a in nodes:
        try:
            parts.append(f"{a.hostname}: {a.members()}")
        except Exception as e:  # an agent that does not answer says so
            parts.append(f"{a.hostname}: {e!r}")
    return "members seen: " + "; ".join(parts)


def test_a_restarted_agent_keeps_its_id_and_comes_back_alive(agents: AgentFactory) -> None:
    nodes = agents(3)
    ids = {a.node_id for a in nodes}
    wait_for(lambda: converged(nodes, ids), 20, "three agents to converge")
    target = nodes[2]
    old_id = target.node_id
    target.kill()
    killed_at = time.monotonic()
    # A liveness bound. In 10 runs at load average 7 to 10 (2 cores, one also kept busy), the
    # crash was noticed after 0.68 to 0.97 s whenever it was (this test and the partition one:
    # 0.77 to 1.25 s), yet three runs timed out here or there at 15 s, 12 times the slowest
    # success: not a matter of slack. The failure now shows what each survivor sees.
    try:
        wait_for(lambda: nodes[0].members()[old_id] == "dead", 15, "the crash to be noticed")
    except AssertionError as e:
        raise AssertionError(f"{e}; {seen_by(nodes[:2])}") from None
    print(f"restart test: crash noticed after {time.monotonic() - killed_at:.2f} s")
    target.start()
    wait_for(lambda: converged(nodes, ids), 20, "the restarted agent to be alive everywhere")
    assert target.node_id == old_id


def test_garbage_from_the_network_is_counted_and_dropped(agents: AgentFactory) -> None:
    nodes = agents(2)
    ids = {a.node_id for a in nodes}
    wait_for(lambda: converged(nodes, ids), 20, "two agents to converge")
    target = nodes[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for payload in (b"\x00garbage", b"\x0a\x0b127.0.0.1:1\x12\x05\xff\xff\xff\xff\xff", b"z" * 65000):
            raw.sendto(payload, (target.ip, target.gossip_port))
    wait_for(
        lambda: (
            target.metric("swarmlet_gossip_messages_dropped_total", reason="malformed")
            + target.metric("swarmlet_gossip_messages_dropped_total", reason="oversized")
            >= 3
        ),
        10,
        "the bad datagrams to be counted",
    )
    assert target.alive()
    time.sleep(0.5)
    assert converged(nodes, ids), "membership must survive bad input"


def test_a_partition_injected_through_the_admin_service_isolates_and_heals(agents: AgentFactory) -> None:
    nodes = agents(3)
    ids = {a.node_id for a in nodes}
    wait_for(lambda: converged(nodes, ids), 20, "three agents to converge")
    cut = nodes[2]
    # Named by hostname, as people and the chaos command name nodes; the agent adds their addresses.
    others = tuple(a.hostname for a in nodes[:2])
    [answer] = set_link_faults(cut.gossip_address, [LinkFaultRule(peers=others, partition=True)])
    assert answer.partition
    # Each node found adds its gossip address and its bare IP (where its other planes are).
    expected = set(others) | {a.gossip_address for a in nodes[:2]} | {a.ip for a in nodes[:2]}
    assert set(answer.peers) == expected
    cut_at = time.monotonic()
    try:  # a liveness bound; see the restart test above about its rare time-outs
        wait_for(
            lambda: all(a.members()[cut.node_id] == "dead" for a in nodes[:2]),
            15,
            "the cut-off agent to be marked dead by the others",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}; {seen_by(nodes[:2])}") from None
    print(f"partition test: cut-off agent dead at both others after {time.monotonic() - cut_at:.2f} s")
    assert cut.metric("swarmlet_faults_injected_total", kind="partition", plane="gossip") > 0
    assert set_link_faults(cut.gossip_address, []) == []
    # Push-pull with dead members (every reconnect interval) brings the two sides together again.
    wait_for(lambda: converged(nodes, ids), 30, "the partition to heal")


def test_bad_configuration_exits_2_naming_the_flag(tmp_path: pathlib.Path) -> None:
    base = [
        sys.executable,
        "-m",
        "nodeagent",
        "--role",
        "worker",
        "--advertise-addr",
        "127.0.0.1",
        "--data-dir",
        str(tmp_path),
    ]
    bad = subprocess.run(
        [*base, "--gossip-port", "99999"], capture_output=True, text=True, env=agent_env(), timeout=30
    )
    assert bad.returncode == 2 and "--gossip-port" in bad.stderr, bad.stderr
    env = {**agent_env(), "SWARMLET_TIME_SCALE": "-1"}
    bad_env = subprocess.run(base, capture_output=True, text=True, env=env, timeout=30)
    assert bad_env.returncode == 2 and "SWARMLET_TIME_SCALE" in bad_env.stderr, bad_env.stderr


def _run_worker(tmp_path: pathlib.Path, ip: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """A worker agent on ``ip`` (a free gossip port; a free metrics port unless ``flags`` name
    one) with ``flags`` added, run until it exits: these tests expect it to refuse at start."""
    ports = ["--gossip-port", str(free_port(ip))]
    if "--metrics-port" not in flags:
        ports += ["--metrics-port", str(free_port(ip))]
    argv = [sys.executable, "-m", "nodeagent", "--role", "worker", "--advertise-addr", ip,
            "--listen-addr", ip, *ports, "--data-dir", str(tmp_path), *flags]
    return subprocess.run(argv, capture_output=True, text=True, env=agent_env(), timeout=30)


def test_a_taken_metrics_port_exits_2_naming_the_flag(tmp_path: pathlib.Path) -> None:
    ip = loopback_block(1)[0]
    with socket.socket() as squatter:
        squatter.bind((ip, 0))
        squatter.listen()
        run = _run_worker(tmp_path, ip, "--metrics-port", str(squatter.getsockname()[1]))
    assert run.returncode == 2 and "--metrics-port" in run.stderr, run.stderr


def test_mdns_browsers_keep_the_managers_of_their_own_cluster_only() -> None:
    from nodeagent.discovery import ManagerAnnouncer, ManagerBrowser

    hostname = f"mgr-{os.getpid()}-{time.time_ns() % 100000}"

    async def body() -> tuple[list[str], list[str]]:
        announcer = ManagerAnnouncer(hostname=hostname, node_id="a" * 25, address="127.0.0.1",
                                     cluster_port=2377, gossip_port=7946, cluster="digest-a",
                                     interfaces=["127.0.0.1"])
        ours = ManagerBrowser(cluster="digest-a", interfaces=["127.0.0.1"])
        theirs = ManagerBrowser(cluster="digest-b", interfaces=["127.0.0.1"])
        await announcer.start()
        await ours.start()
        await theirs.start()
        try:
            deadline = time.monotonic() + 10
            while "127.0.0.1:2377" not in ours.managers() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the other browser has heard the same announcement by now
            return ours.managers() + ours.gossip_seeds(), theirs.managers()
        finally:
            await theirs.stop()
            await ours.stop()
            await announcer.stop()

    found, other_cluster = asyncio.run(body())
    assert "127.0.0.1:2377" in found and "127.0.0.1:7946" in found
    assert "127.0.0.1:2377" not in other_cluster


def test_a_worker_without_a_join_token_exits_3_with_swarms_message(tmp_path: pathlib.Path) -> None:
    ip = loopback_block(1)[0]
    run = _run_worker(tmp_path, ip, "--join", f"{ip}:{free_port(ip)}")
    assert run.returncode == 3, run.stderr
    assert "A valid join token is necessary to join this cluster" in run.stderr


def test_a_worker_finds_its_manager_by_mdns_joins_and_gossips(
    agents: AgentFactory, tmp_path: pathlib.Path
) -> None:
    from manager.ca.tokens import ClusterCredentials
    from manager.controlapi.client import list_nodes

    creds = tmp_path / "creds"
    made = ClusterCredentials.create()
    made.write(creds)
    # This test process asks the manager's control API as an operator of that CA (mutual TLS).
    tls.use_operator_certificate(made.ca_cert_pem, made.ca_key_pem)
    manager_token, worker_token = str(creds / "manager_token"), str(creds / "worker_token")
    [manager] = agents(1, "--bootstrap", "--token-file", manager_token, "--manager-token-file", manager_token,
                       "--worker-token-file", worker_token, role="manager", seeds=0)
    [worker] = agents(1, "--discover", "mdns", "--token-file", worker_token, seeds=0)
    target = f"{manager.ip}:{manager.cluster_port}"

    def worker_ready() -> bool:
        rows = {r.hostname: r.status for r in list_nodes(target)}
        return rows.get(worker.hostname) == "Ready"

    wait_for(worker_ready, 30, "the worker to join through the manager it found on mDNS")
    ids = {manager.node_id, worker.node_id}
    wait_for(lambda: converged([manager, worker], ids), 15, "the worker to gossip with the manager")
