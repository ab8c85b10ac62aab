"""The ingress routing mesh on a compose cluster, driven by the real docker CLI, reached from the host.

* `docker service create --name web --replicas 3 -p 8080:80 nginx`: port 8080 at every node's
  address answers, on nodes that run no task of it too, and 30 requests reach all 3 tasks (the
  pages name them);
* the visit counter: web (REDIS_HOST=redis) and redis on one overlay, on different nodes;
* a capture on UDP 4789 inside a node container (tshark in the container's network namespace)
  decodes VXLAN with the ingress network's VNI while datagrams to a UDP ingress port flow;
* the stream tunnels between agents on TCP 4789 take mutual TLS: a plaintext connection is
  dropped unanswered while tunnelled requests flow;
* a removed service's published port closes at once; a host-mode port shows in
  `docker service ps` (PORTS ``*:8080->80/tcp``) and answers only on the task's node.

Each test removes its services and networks: the session's cluster is left as found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.helpers import docker_cli, nodes, wait_for
from tests.needs import need

DOCKER = shutil.which("docker")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real docker CLI at manager1's Engine API, with a config folder of its own."""
    host = nodes()["manager1"].docker_host
    assert host
    proc = docker_cli(host, *args, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc


def host_docker(*args: str) -> str:
    """The host's own engine (the node containers)."""
    assert DOCKER is not None
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout


def get(addr: str, port: int) -> str:
    """GET / on the node's address, as curl from the host; the page ("" when it did not answer 200)."""
    try:
        with urllib.request.urlopen(f"http://{addr}:{port}/", timeout=5) as answer:
            return str(answer.read().decode()) if answer.status == 200 else ""
    except (urllib.error.URLError, OSError):
        return ""


def task_of(page: str) -> str:
    found = re.search(r"task (\S+?), slot (\d+), node (\S+?)<", page)
    return found.group(1) if found else ""


@pytest.fixture
def web(cluster: str) -> Iterator[str]:
    docker("service", "create", "--quiet", "--name", "web", "--replicas", "3", "-p", "8080:80", "nginx")
    try:
        yield "web"
    finally:
        docker("service", "rm", "web", check=False)
        wait_for("port 8080 closed on every node",
                 lambda: all(not get(str(n.addr), 8080) for n in nodes().values()), timeout=60)


def running_tasks(service: str) -> dict[str, str]:
    """Task name (web.1.<id>) -> node hostname, from `docker service ps`."""
    out = docker("service", "ps", service, "--no-trunc", "--filter", "desired-state=running",
                 "--format", "{{.Name}}.{{.ID}} {{.Node}} {{.CurrentState}}").stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if " Running " in f" {line} "}


def test_every_node_answers_on_the_published_port_and_30_requests_reach_all_3_tasks(web: str) -> None:
    tasks = wait_for("3 running tasks", lambda: (t := running_tasks(web)) and len(t) == 3 and t, timeout=60)
    found = nodes()
    idle = sorted(set(found) - set(tasks.values()))
    assert idle, f"every node runs a task: {tasks}"  # 5 nodes, 3 tasks: two have none
    for name, node in sorted(found.items()):
        page = wait_for(f"{name}:8080", lambda node=node: get(str(node.addr), 8080), timeout=30)
        assert "Welcome to nginx!" in page
        assert task_of(page) in tasks, (name, page)
    answered: dict[str, int] = {}
    addrs = [str(found[name].addr) for name in sorted(found)]
    for i in range(30):
        page = get(addrs[i % len(addrs)], 8080)
        assert page, f"request {i} to {addrs[i % len(addrs)]}:8080 was not answered"
        answered[task_of(page)] = answered.get(task_of(page), 0) + 1
    assert set(answered) == set(tasks), answered
    # Round robin: through one node that runs no task, 30 requests are 10 for each task.
    spread: dict[str, int] = {}
    for _ in range(30):
        name = task_of(get(str(found[idle[0]].addr), 8080))
        spread[name] = spread.get(name, 0) + 1
    assert sorted(spread.values()) == [10, 10, 10], spread


def test_the_tunnel_port_drops_a_plaintext_connection_while_tunnelled_requests_flow(web: str) -> None:
    tasks = wait_for("3 running tasks", lambda: (t := running_tasks(web)) and len(t) == 3 and t, timeout=60)
    found = nodes()
    busy = sorted(set(tasks.values()))
    idle = sorted(set(found) - set(busy))
    # A plaintext tunnel connection, as an agent without TLS would open it: the preface and an
    # OPEN frame for a task on the ingress network (VNI 4096 in the tag: any will do).
    frame = b"SWARMLET-TUNNEL 2\n" + bytes([1]) + (1).to_bytes(4, "big") + (16).to_bytes(4, "big") + bytes(16)
    ref = found[busy[0]].ref  # the node container's own address: 4789 is not published on the host
    nets = json.loads(host_docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", ref))
    with socket.create_connection((str(next(iter(nets.values()))["IPAddress"]), 4789), timeout=10) as sock:
        sock.sendall(frame)
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
    assert answer == b"" or answer[:1] == b"\x15", answer  # no OPENED: closed, or a TLS alert
    for _ in range(6):  # while the agents' own tunnels (mutual TLS) carry requests
        assert task_of(get(str(found[idle[0]].addr), 8080)) in tasks


def test_a_removed_services_port_closes_at_once_and_a_host_mode_port_shows_in_ps(cluster: str) -> None:
    found = nodes()
    docker("service", "create", "--quiet", "--name", "hostweb", "--constraint", "node.hostname==worker1",
           "--publish", "published=8080,target=80,mode=host", "nginx")
    try:
        out = wait_for("the host-mode port in service ps", lambda: (o := docker(
            "service", "ps", "hostweb", "--filter", "desired-state=running",
            "--format", "{{.Node}} {{.CurrentState}} {{.Ports}}").stdout.strip()) and " Running " in o and o,
            timeout=60)
        assert out.split()[0] == "worker1" and out.split()[-1] == "*:8080->80/tcp", out
        assert "Welcome to nginx!" in wait_for("worker1:8080", lambda: get(str(found["worker1"].addr), 8080),
                                               timeout=30)
        assert not get(str(found["worker2"].addr), 8080)  # host mode: only the task's node listens
    finally:
        docker("service", "rm", "hostweb", check=False)
    wait_for("port 8080 closed", lambda: not get(str(found["worker1"].addr), 8080), timeout=30)
    # An ingress port: open on every node; once the service is removed, closed at once on every
    # node (Swarm's), not kept for the 10 s a node that gossip took for dead keeps it.
    docker("service", "create", "--quiet", "--name", "gone", "-p", "8080:80", "nginx")
    try:
        wait_for("8080 on every node", lambda: all(get(str(n.addr), 8080) for n in found.values()),
                 timeout=60)
    finally:
        docker("service", "rm", "gone")
    removed = time.monotonic()
    wait_for("8080 closed on every node", lambda: all(not get(str(n.addr), 8080) for n in found.values()),
             timeout=30)
    assert time.monotonic() - removed < 5.0


def test_the_visit_counter_counts_in_redis_on_another_node(cluster: str) -> None:
    docker("network", "create", "-d", "overlay", "countnet")
    try:
        docker("service", "create", "--quiet", "--name", "redis", "--network", "countnet",
               "--constraint", "node.hostname==worker1", "redis:7")
        docker("service", "create", "--quiet", "--name", "counter", "--network", "countnet",
               "--constraint", "node.hostname==worker2", "-e", "REDIS_HOST=redis", "-p", "80:80", "nginx")
        assert running_tasks("redis") and set(running_tasks("redis").values()) == {"worker1"}
        assert set(running_tasks("counter").values()) == {"worker2"}
        found = nodes()
        entry = str(found["manager2"].addr)
        first = wait_for("a counted visit", lambda: re.search(r"Visits: (\d+)", get(entry, 80)), timeout=30)
        start = int(first.group(1))
        seen = []
        for name in ("manager3", "worker1", "manager1"):
            page = get(str(found[name].addr), 80)
            found_count = re.search(r"Visits: (\d+)", page)
            assert found_count, page
            seen.append(int(found_count.group(1)))
        assert seen == [start + 1, start + 2, start + 3]
    finally:
        docker("service", "rm", "counter", "redis", check=False)
        wait_for("countnet free", lambda: docker("network", "rm", "countnet", check=False).returncode == 0,
                 timeout=30)


def test_a_capture_on_4789_in_a_node_decodes_vxlan_with_the_ingress_vni(cluster: str) -> None:
    tshark = shutil.which("tshark")
    need(None if tshark else "tshark is not installed on the host (apt-get install -y tshark)")
    assert tshark is not None
    ingress = json.loads(docker("network", "inspect", "ingress").stdout)[0]
    vni = ingress["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
    docker("service", "create", "--quiet", "--name", "udpsink", "--constraint", "node.hostname==worker1",
           "-p", "5514:5514/udp", "nginx")
    pcap = Path(tempfile.mkdtemp(prefix="swarmlet-mesh-")) / "ingress.pcap"
    try:
        entry = nodes()["manager2"]  # runs no task of udpsink: its datagrams cross the overlay
        pid = host_docker("inspect", "--format", "{{.State.Pid}}", entry.ref).strip()
        nets = json.loads(host_docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", entry.ref))
        entry_ip = str(next(iter(nets.values()))["IPAddress"])
        said = pcap.with_suffix(".err")
        with said.open("wb") as err:
            capture = subprocess.Popen(["nsenter", "-t", pid, "-n", tshark, "-i", "any", "-f",
                                        "udp port 4789", "-c", "3", "-w", str(pcap)],
                                       stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        wait_for("tshark capturing",
                 lambda: "Capture started" in said.read_text() or capture.poll() is not None, timeout=30)
        if "Capture started" not in said.read_text():
            need(f"tshark cannot capture in the node's namespace: {said.read_text()[-200:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deadline = time.monotonic() + 30
            i = 0
            while capture.poll() is None and time.monotonic() < deadline:
                sock.sendto(f"hello {i}".encode(), (entry_ip, 5514))  # to the node's UDP ingress port
                i += 1
                time.sleep(0.2)
        capture.wait(timeout=10)
        fields = ["vxlan.flags", "vxlan.vni", "ip.dst", "udp.dstport", "ip.checksum.status", "data.data"]
        out = subprocess.run([tshark, "-r", str(pcap), "-d", "udp.port==4789,vxlan", "-o",
                              "ip.check_checksum:TRUE", "-T", "fields", "-E", "separator=|",
                              *[a for f in fields for a in ("-e", f)]],
                             capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.strip().splitlines()]
        assert len(rows) == 3, out
        for row in rows:
            assert row["vxlan.flags"] in ("0x0800", "0x08000000")
            assert row["vxlan.vni"] == vni  # the ingress network's, as `docker network inspect` says
            assert row["ip.dst"].split(",")[-1].startswith("10.0.0.")  # the task's ingress address
            assert row["udp.dstport"].split(",") == ["4789", "5514"]
            assert row["ip.checksum.status"].split(",")[-1] == "1"
            assert bytes.fromhex(row["data.data"]).startswith(b"hello ")
    finally:
        docker("service", "rm", "udpsink", check=False)
