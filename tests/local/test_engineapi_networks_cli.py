"""The real docker CLI's ``docker network`` commands against swarmlet node processes on 127.0.0.x.

Three managers and a worker run as ``python -m nodeagent``; the CLI asks manager2 (a follower,
so every write is forwarded to the leader) what 09-networks.txt asked a real Swarm: ``network
ls`` (Swarm's columns, the ingress network made with the cluster, the node's own networks),
``create -d overlay`` with and without ``--subnet``, the name taken, ``ls --filter``,
``inspect`` (subnet, gateway, VNI as the real Swarm gave them), a service on the network (its
VIP), a service on the swarm's predefined ``host`` network, ``rm`` refused while the service
uses it, then accepted. The worker lists its own
networks and refuses to make an overlay network, in Docker's words. Skipped when no docker
binary is installed.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from _docker_cli import cli_rows, docker, requires_docker
from _procs_manager import START_S, Cluster, running, wait_until

pytestmark = requires_docker

VXLAN = "com.docker.network.driver.overlay.vxlanid_list"


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running(tmp_path, 3, ["worker1"]) as c:
        yield c


@pytest.mark.slow
def test_docker_network_commands(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    m2 = cluster.managers()[1]
    worker = cluster.nodes["worker1"]

    def run(*args: str, host: str = m2.host) -> Any:
        return docker(tmp_path, host, *args)

    def ready() -> Any:
        done = run("node", "ls")
        if done.returncode != 0 or done.stdout.count("Ready") != 4:
            return None
        listed = run("network", "ls")  # the ingress network comes with the cluster
        return listed if " ingress " in listed.stdout else None

    try:
        listed = wait_until(ready, timeout=START_S, what="4 Ready nodes and the ingress network")
    except AssertionError:
        raise AssertionError(cluster.logs()) from None
    rows = cli_rows(listed.stdout)
    print(listed.stdout)
    assert rows[0] == ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(r[1:] for r in rows[1:]) == [
        ["bridge", "bridge", "local"], ["docker_gwbridge", "bridge", "local"], ["host", "host", "local"],
        ["ingress", "overlay", "swarm"], ["none", "null", "local"]]

    created = run("network", "create", "-d", "overlay", "labnet")
    assert created.returncode == 0, created.stderr
    labnet = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{25}", labnet)
    second = run("network", "create", "-d", "overlay", "--attachable", "--subnet", "10.99.0.0/24", "labnet2")
    assert second.returncode == 0, second.stderr
    again = run("network", "create", "-d", "overlay", "labnet")
    assert (again.returncode, again.stderr.strip()) == (
        1, "Error response from daemon: network with name labnet already exists")

    overlays = run("network", "ls", "--filter", "driver=overlay")
    assert [r[1] for r in cli_rows(overlays.stdout)[1:]] == ["ingress", "labnet", "labnet2"]
    assert next(r for r in cli_rows(overlays.stdout)[1:] if r[1] == "labnet")[0] == labnet[:12]

    shown = run("network", "inspect", "labnet")
    assert shown.returncode == 0, shown.stderr
    network = json.loads(shown.stdout)[0]
    # As the real Swarm's network-labnet.json.
    assert (network["Id"], network["Scope"], network["Driver"]) == (labnet, "swarm", "overlay")
    assert network["IPAM"] == {"Driver": "default", "Options": None,
                               "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]}
    assert network["Options"] == {VXLAN: "4097"}
    lab2 = json.loads(run("network", "inspect", "labnet2").stdout)[0]
    assert lab2["IPAM"]["Config"] == [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}]
    assert (lab2["Attachable"], lab2["Options"]) == (True, {VXLAN: "4098"})
    ingress = json.loads(run("network", "inspect", "ingress").stdout)[0]
    assert (ingress["Ingress"], ingress["Options"]) == (True, {VXLAN: "4096"})

    service = run("service", "create", "--detach", "--name", "netsvc", "--network", "labnet",
                  "--replicas", "2", "nginx:1.25")
    assert service.returncode == 0, service.stderr
    service_id = service.stdout.strip()
    inspected = json.loads(run("service", "inspect", "netsvc").stdout)[0]
    assert inspected["Spec"]["TaskTemplate"]["Networks"] == [{"Target": labnet}]
    assert inspected["Endpoint"]["VirtualIPs"] == [{"NetworkID": labnet, "Addr": "10.0.1.2/24"}]
    pretty = run("service", "inspect", "--pretty", "netsvc")
    assert "Networks: labnet" in pretty.stdout, pretty.stdout

    # --network host: the CLI asks for the swarm's predefined host network (scope=swarm).
    on_host = run("service", "create", "--detach", "--name", "hostnet", "--network", "host", "nginx:1.25")
    assert on_host.returncode == 0, on_host.stderr
    host_vips = json.loads(run("service", "inspect", "hostnet").stdout)[0]["Endpoint"]["VirtualIPs"]
    assert len(host_vips) == 1 and set(host_vips[0]) == {"NetworkID"}  # as Swarm: no address
    assert run("service", "rm", "hostnet").returncode == 0

    refused = run("network", "rm", "labnet")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[0] == (
        f"Error response from daemon: rpc error: code = FailedPrecondition desc = network {labnet} is in use "
        f"by service {service_id}")
    assert run("service", "rm", "netsvc").returncode == 0
    removed = run("network", "rm", "labnet", "labnet2")
    assert (removed.returncode, removed.stdout.split()) == (0, ["labnet", "labnet2"]), removed.stderr
    nosuch = run("network", "inspect", "labnet")
    assert (nosuch.returncode, nosuch.stderr.strip()) == (
        1, "Error response from daemon: network labnet not found")

    on_worker = run("network", "ls", host=worker.host)
    assert on_worker.returncode == 0, on_worker.stderr
    local_networks = sorted(r[1] for r in cli_rows(on_worker.stdout)[1:])
    assert local_networks == ["bridge", "docker_gwbridge", "host", "none"]
    made = run("network", "create", "-d", "overlay", "x", host=worker.host)
    assert (made.returncode, made.stderr.strip()) == (
        1, "Error response from daemon: Cannot create a multi-host network from a worker node. Please create "
           "the network from a manager node.")
