"""The overlay between real processes: a busybox task on worker1 fetches a web task's page on worker2.

One manager and two workers run as ``python -m nodeagent``. Tasks are written as the scheduler
and allocator would leave them (NodeID, NetworksAttachments, the service's Endpoint with its VIP)
through the leader's write path. The web task's node publishes it in the network database over
gossip; worker1's busybox task resolves ``web`` to the VIP with its node's embedded DNS and
``wget`` reaches the page through the tunnel, tagged with VNI 4097. A task on another overlay
(VNI 4098) gets neither the name nor a route to the web task's address. When worker2 leaves,
worker1's network database drops its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _procs_manager import START_S, Cluster, NodeProc, free_port, wait_until
from _store_writes import assigned_task, node_tasks, service, write_ops

from manager.controlapi import list_nodes
from manager.state.store import Create
from nodeagent.agent.taskservice import task_logs

pytestmark = pytest.mark.local

WEB, CLIENT, OTHER = "taskovweb00000000000000001", "taskovcli00000000000000001", "taskovoth00000000000000001"


def _network(net_id: str, name: str, vni: int, subnet: str) -> dict[str, Any]:
    return {"ID": net_id,
            "Spec": {"Name": name, "DriverConfiguration": {"Name": "overlay"}, "Scope": "swarm"},
            "DriverState": {"Name": "overlay",
                            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(vni)}},
            "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": [{"Subnet": subnet}]}}  # fmt: skip


FRONT = _network("netfront00000000000000001", "front", 4097, "10.0.1.0/24")
BACK = _network("netback000000000000000001", "back", 4098, "10.0.2.0/24")


def _on_network(task: Create, net: dict[str, Any], addr: str, vip: str = "") -> Create:
    extra = dict(task.extra)
    extra["NetworksAttachments"] = [{"Network": net, "Addresses": [addr]}]
    extra["Endpoint"] = {"Spec": {"Mode": "vip"},
                         "VirtualIPs": [{"NetworkID": net["ID"], "Addr": vip}] if vip else []}  # fmt: skip
    spec = dict(task.spec)
    spec["Networks"] = [{"Target": net["ID"]}]
    return Create("task", task.id, spec, task.status, extra)


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    (manager,) = c.add_managers(1)
    for name in ("worker1", "worker2"):
        # The nodes' gossip ports differ here (one machine): name the manager's as the seed.
        c.add_worker(name).args += ["--gossip-join", _gossip_addr(manager)]
    for node in c.nodes.values():
        # 4789 may be held on every address by a real Swarm on this machine (the kernel's VXLAN).
        node.args += ["--data-path-port", str(free_port(node.host))]
    try:
        yield c
    finally:
        c.stop_all()


def _gossip_addr(node: NodeProc) -> str:
    return f"{node.host}:{node.args[node.args.index('--gossip-port') + 1]}"


def _logs(node: NodeProc, task_id: str) -> list[str]:
    async def read() -> list[str]:
        return [line.render() async for line in task_logs(_gossip_addr(node), task_id, follow=False, tail=100,
                                                          timestamps=False)]  # fmt: skip

    try:
        return asyncio.run(read())
    except Exception:
        return []


def _metrics(node: NodeProc) -> str:
    port = node.args[node.args.index("--metrics-port") + 1]
    return str(urllib.request.urlopen(f"http://{node.host}:{port}/metrics", timeout=5).read().decode())


@pytest.mark.slow
def test_a_task_fetches_another_nodes_web_task_by_name_and_another_overlay_cannot(cluster: Cluster) -> None:
    c = cluster
    c.start_all()
    manager, worker1, worker2 = c.nodes["manager1"], c.nodes["worker1"], c.nodes["worker2"]
    try:
        rows = wait_until(
            lambda: (r := {r.hostname: r.id for r in list_nodes(manager.target, timeout=1.0)
                           if r.status == "Ready"}).keys() >= {"worker1", "worker2"} and r,
            START_S, 0.1, "both workers Ready",
        )  # fmt: skip
        web = service("svcovweb00000000000000001", "web", {"Image": "nginx:1.25", "StopGracePeriod": 10**9})
        fetch = "sleep 1; wget -qO- http://web/; sleep 1; wget -qO- http://web/; sleep 1; wget -qO- http://web/"
        cli = service("svcovcli00000000000000001", "client",
                      {"Image": "busybox", "Command": ["sh", "-c", fetch + "; sleep 600"],
                       "StopGracePeriod": 10**9})  # fmt: skip
        probe = "sleep 3; wget -qO- http://web/; wget -qO- http://10.0.1.3/; nslookup web; sleep 600"
        oth = service("svcovoth00000000000000001", "other",
                      {"Image": "busybox", "Command": ["sh", "-c", probe],
                       "StopGracePeriod": 10**9})  # fmt: skip
        write_ops(manager.target, [web, cli, oth])
        write_ops(manager.target, [_on_network(assigned_task(WEB, web, 1, rows["worker2"]), FRONT,
                                               "10.0.1.3/24", "10.0.1.2/24")])  # fmt: skip
        wait_until(lambda: node_tasks(manager.target)[WEB]["Status"]["State"] == "running", 20, 0.1,
                   "the web task running on worker2")  # fmt: skip
        write_ops(manager.target, [
            _on_network(assigned_task(CLIENT, cli, 1, rows["worker1"]), FRONT, "10.0.1.4/24"),
            _on_network(assigned_task(OTHER, oth, 1, rows["worker1"]), BACK, "10.0.2.3/24"),
        ])  # fmt: skip

        page = wait_until(lambda: [x for x in _logs(worker1, CLIENT) if "task web.1." in x], 20, 0.2,
                          "the web task's page in the busybox task's log")  # fmt: skip
        assert "image nginx:1.25" in page[0] and "node worker2" in page[0]
        other = wait_until(lambda: (lines := _logs(worker1, OTHER)) and any("NXDOMAIN" in x for x in lines)
                           and lines, 20, 0.2, "the other overlay's attempts")  # fmt: skip
        text = "\n".join(other)
        print("client:", *_logs(worker1, CLIENT), "other:", *other, sep="\n")  # shown with -s
        assert "wget: bad address 'web'" in text
        assert "wget: can't connect to remote host (10.0.1.3): No route to host" in other
        assert "task web.1." not in text

        # The web task's node served the tunnel, counted under VNI 4097; nothing for 4098.
        served = _metrics(worker2)
        assert 'swarmlet_overlay_bytes_total{direction="rx",vni="4097"}' in served
        assert 'vni="4098"' not in served

        # worker2 stops (SIGTERM: it leaves gossip): worker1 drops its entries (the web task's
        # endpoint, worker2's peer entry) and keeps its own two tasks'. A SIGKILL takes gossip's
        # failure detection, whose timing varies a lot on a busy machine; the simulator covers
        # deaths (tests/sim/test_networkdb_sim.py).
        assert 'swarmlet_networkdb_entries{table="endpoints"} 3.0' in _metrics(worker1)
        worker2.kill(signal.SIGTERM)
        wait_until(lambda: 'swarmlet_networkdb_entries{table="endpoints"} 2.0' in _metrics(worker1), 30, 0.2,
                   "worker2's endpoints dropped on worker1")  # fmt: skip
    except BaseException:
        for node in (worker1, manager):
            with contextlib.suppress(OSError):
                lines = _metrics(node).splitlines()
                print(node.name, *[x for x in lines if "gossip_members" in x or "networkdb" in x])
        print(c.logs())
        raise
