"""A capture on UDP 4789 decodes as VXLAN with tshark: VNI, Docker's MACs, inner IPv4/UDP, checksums.

Two overlays run in this process on two 127.x addresses at the real port 4789 (another port,
decoded as VXLAN with ``-d``, when a real Swarm on this machine holds 4789) and one sends
datagrams to the other while tshark captures on the loopback interface. Skipped when tshark is
not installed or may not capture (``apt-get install -y tshark``, run as root).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from needs import need

from nodeagent.networkdb.core import NetworkDBConfig
from nodeagent.networkdb.shell import NetworkDBShell
from nodeagent.overlay.frames import VXLAN_PORT
from nodeagent.overlay.shell import Overlay

pytestmark = pytest.mark.local

NET = {"ID": "netcap", "Spec": {"Name": "cap"},
       "DriverState": {"Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"}},
       "IPAMOptions": {"Configs": [{"Subnet": "10.0.1.0/24"}]}}  # fmt: skip


def _task(task_id: str, addr: str) -> dict[str, object]:
    return {"ID": task_id, "ServiceAnnotations": {"Name": task_id},
            "NetworksAttachments": [{"Network": NET, "Addresses": [addr]}]}  # fmt: skip


async def _send(h1: str, h2: str, port: int, count: int) -> None:
    ndb1 = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
    ndb2 = NetworkDBShell("n2", NetworkDBConfig(), random.Random(2))
    o1 = Overlay(node_id="n1", host=h1, ndb=ndb1, port=port)
    o2 = Overlay(node_id="n2", host=h2, ndb=ndb2, port=port)
    await o1.start()
    await o2.start()
    try:
        server = o2.join(_task("srv", "10.0.1.3/24"))
        o2.publish(_task("srv", "10.0.1.3/24"), {})
        inbox = server.bind_datagram(5000)
        client = o1.join(_task("cli", "10.0.1.4/24"))
        for x, y in ((ndb1, ndb2), (ndb2, ndb1), (ndb1, ndb2)):
            x.db.node_alive(y.db.name)
            y.db.node_alive(x.db.name)
            push = x.db.handle_sync(y.db.name, [], reply=False)
            assert push is not None
            y.db.handle_sync(x.db.name, push.entries, reply=True)
        for i in range(count):
            client.send_datagram("10.0.1.3", 5000, f"hello {i}".encode(), sport=40000 + i)
        for _ in range(count):
            await asyncio.wait_for(inbox.get(), 5)
    finally:
        await o1.stop()
        await o2.stop()


def _port(h1: str, h2: str) -> int:
    """4789, unless something holds it (a real Swarm's kernel VXLAN socket binds it on 0.0.0.0)."""
    try:
        for host in (h1, h2):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((host, VXLAN_PORT))
        return VXLAN_PORT
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((h1, 0))
            return int(s.getsockname()[1])


def test_a_capture_on_4789_decodes_as_vxlan_with_tshark(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    need(None if tshark else "tshark is not installed (apt-get install -y tshark)")
    assert tshark is not None
    prefix = f"127.{random.randrange(1, 250)}.{random.randrange(1, 250)}"
    h1, h2 = f"{prefix}.21", f"{prefix}.22"
    port = _port(h1, h2)
    pcap = tmp_path / "overlay.pcap"
    said = tmp_path / "tshark.err"
    with said.open("wb") as err:
        capture = subprocess.Popen([tshark, "-i", "lo", "-f", f"udp port {port} and host {h2}", "-c", "3",
                                    "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    deadline = time.monotonic() + 30
    while "Capture started" not in said.read_text() and capture.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.1)  # tshark says so once the capture really runs
    if "Capture started" not in said.read_text():
        capture.kill()
        need(f"tshark cannot capture: {said.read_text()[-200:]}")
    try:
        asyncio.run(_send(h1, h2, port, 3))
        capture.wait(timeout=20)
    finally:
        if capture.poll() is None:
            capture.kill()
    fields = ["vxlan.flags", "vxlan.vni", "eth.src", "eth.dst", "ip.src", "ip.dst", "ip.checksum.status",
              "udp.srcport", "udp.dstport", "udp.checksum.status", "data.data"]
    options = ["-d", f"udp.port=={port},vxlan", "-o", "ip.check_checksum:TRUE",
               "-o", "udp.check_checksum:TRUE"]
    out = subprocess.run([tshark, "-r", str(pcap), *options, "-T", "fields", "-E", "separator=|",
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.strip().splitlines()]
    print(out)
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert row["vxlan.flags"] in ("0x0800", "0x08000000")  # the I flag, by tshark's version
        assert row["vxlan.vni"] == "4097"
        # The outer (loopback) Ethernet header first, then the inner one with Docker's MACs.
        assert row["eth.src"].split(",")[-1] == "02:42:0a:00:01:04"
        assert row["eth.dst"].split(",")[-1] == "02:42:0a:00:01:03"
        assert row["ip.src"].split(",") == [h1, "10.0.1.4"] and row["ip.dst"].split(",") == [h2, "10.0.1.3"]
        assert row["ip.checksum.status"].split(",")[-1] == "1"  # 1: good (the inner header's)
        assert row["udp.dstport"].split(",") == [str(port), "5000"]
        assert row["udp.srcport"].split(",")[-1] == str(40000 + i)
        assert row["udp.checksum.status"].split(",")[-1] == "1"
        assert bytes.fromhex(row["data.data"]) == f"hello {i}".encode()
