"""Two nodes' overlays in one process on loopback: tunnels, VXLAN datagrams, DNS, isolation.

The network databases are synced by hand (gossip is not running here); the data plane is real:
UDP and TCP sockets on two 127.x addresses, one port for both, as 4789 on real nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from nodeagent.networkdb.core import NetworkDBConfig
from nodeagent.networkdb.shell import NetworkDBShell
from nodeagent.overlay.frames import decode_frame
from nodeagent.overlay.shell import Overlay

pytestmark = pytest.mark.unit


def _network(net_id: str, name: str, vni: int, subnet: str) -> dict[str, Any]:
    return {"ID": net_id, "Spec": {"Name": name},
            "DriverState": {"Name": "overlay",
                            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(vni)}},
            "IPAMOptions": {"Configs": [{"Subnet": subnet}]}}  # fmt: skip


NET_A = _network("neta", "front", 4097, "10.0.1.0/24")
NET_B = _network("netb", "back", 4098, "10.0.2.0/24")


def _task(task_id: str, service: str, net: dict[str, Any], addr: str, vip: str = "") -> dict[str, Any]:
    return {"ID": task_id, "ServiceID": f"svc-{service}", "ServiceAnnotations": {"Name": service},
            "Spec": {"Networks": [{"Target": net["ID"], "Aliases": [f"{service}-alias"]}]},
            "NetworksAttachments": [{"Network": net, "Addresses": [addr]}],
            "Endpoint": {"Spec": {"Mode": "vip"},
                         "VirtualIPs": [{"NetworkID": net["ID"], "Addr": vip}] if vip else []}}  # fmt: skip


def _hosts() -> tuple[str, str, int]:
    rng = random.Random()
    prefix = f"127.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}"
    h1, h2 = f"{prefix}.11", f"{prefix}.12"
    with socket.socket() as s:
        s.bind((h1, 0))
        return h1, h2, int(s.getsockname()[1])


def _sync(a: NetworkDBShell, b: NetworkDBShell) -> None:
    for x, y in ((a, b), (b, a), (a, b)):
        x.db.node_alive(y.db.name)
        y.db.node_alive(x.db.name)
        push = x.db.handle_sync(y.db.name, [], reply=False)
        assert push is not None
        y.db.handle_sync(x.db.name, push.entries, reply=True)


async def _web(host: str, body: bytes) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, 0)


@dataclass
class _TwoNodes:
    """Two started overlays; on node 2 the task w1 of service ``web`` (VIP 10.0.1.2) answers
    "page of web.1" on port 80, on node 1 the task c1 is its client, both on NET_A."""

    h1: str
    h2: str
    port: int
    ndb1: NetworkDBShell
    ndb2: NetworkDBShell
    o1: Overlay
    o2: Overlay
    web_net: Any
    """w1's attachment to NET_A on node 2."""
    client: Any
    """c1's attachment to NET_A on node 1."""


@contextlib.asynccontextmanager
async def _web_on_two_nodes() -> AsyncIterator[_TwoNodes]:
    """:class:`_TwoNodes`, their network databases synced; every socket closed at the end."""
    h1, h2, port = _hosts()
    ndb1 = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
    ndb2 = NetworkDBShell("n2", NetworkDBConfig(), random.Random(2))
    o1 = Overlay(node_id="n1", host=h1, ndb=ndb1, port=port)
    o2 = Overlay(node_id="n2", host=h2, ndb=ndb2, port=port)
    await o1.start()
    await o2.start()
    web = await _web(h2, b"page of web.1")
    try:
        web_task = _task("w1", "web", NET_A, "10.0.1.3/24", "10.0.1.2/24")
        web_net = o2.join(web_task)
        o2.publish(web_task, {80: web.sockets[0].getsockname()[1]})
        client = o1.join(_task("c1", "client", NET_A, "10.0.1.4/24"))
        _sync(ndb1, ndb2)
        yield _TwoNodes(h1, h2, port, ndb1, ndb2, o1, o2, web_net, client)
    finally:
        web.close()
        await o1.stop()
        await o2.stop()


def test_tasks_reach_each_other_across_nodes_on_their_network_only() -> None:
    async def main() -> None:
        async with _web_on_two_nodes() as two:
            h1, h2, port, ndb1, ndb2, o1, o2 = two.h1, two.h2, two.port, two.ndb1, two.ndb2, two.o1, two.o2
            web_net, client = two.web_net, two.client
            other = o1.join(_task("x1", "other", NET_B, "10.0.2.3/24"))
            _sync(ndb1, ndb2)
            assert set(ndb1.db.peers("neta")) == {"n1", "n2"}

            assert client.resolve("web") == ["10.0.1.2"]
            assert client.resolve("tasks.web") == ["10.0.1.3"]
            assert client.resolve("web-alias") == ["10.0.1.2"]
            for host in ("web", "10.0.1.3", "web-alias"):
                reader, writer = await client.connect(host, 80)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                await writer.drain()
                assert (await reader.read()).endswith(b"page of web.1")
                writer.close()
            with pytest.raises(ConnectionRefusedError):
                await client.connect("web", 81)  # nothing listens on the task's port 81

            # A second replica, on node 1: the VIP alternates between the two.
            web2 = await _web(h1, b"page of web.2")
            second = _task("w2", "web", NET_A, "10.0.1.5/24", "10.0.1.2/24")
            o1.join(second)
            o1.publish(second, {80: web2.sockets[0].getsockname()[1]})
            _sync(ndb1, ndb2)
            pages = []
            for _ in range(4):
                reader, writer = await client.connect("web", 80)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                pages.append((await reader.read()).rsplit(b"\r\n\r\n", 1)[-1])
                writer.close()
            assert set(pages[:2]) == {b"page of web.1", b"page of web.2"} and pages[2:] == pages[:2]
            o1.detach("w2")
            web2.close()

            # Another overlay: no names, no route, even by address.
            assert other.resolve("web") == []
            with pytest.raises(OSError) as info:
                await other.connect("10.0.1.3", 80)
            assert info.value.errno == errno.EHOSTUNREACH
            with pytest.raises(OSError):
                other.send_datagram("10.0.1.3", 53, b"x")

            # A datagram crosses as one VXLAN frame; the receiving task gets it.
            inbox = web_net.bind_datagram(5353)
            client.send_datagram("web", 5353, b"ping", sport=40000)
            got = await asyncio.wait_for(inbox.get(), 5)
            assert (got.vni, got.src, got.sport, got.dst) == (4097, "10.0.1.4", 40000, "10.0.1.3")
            assert got.payload == b"ping"
            frames = o1.metrics.frames.labels(vni="4097", direction="tx")._value.get()
            assert frames == 1
            assert o2.metrics.frames.labels(vni="4097", direction="rx")._value.get() >= 1

            # A frame with a VNI the node does not carry is dropped.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            from nodeagent.overlay.frames import Datagram, encode_frame

            sock.sendto(encode_frame(Datagram(4098, "10.0.2.3", 1, "10.0.1.3", 5353, b"bad")), (h2, port))
            sock.close()
            await asyncio.sleep(0.2)
            assert inbox.empty()

            # The task exits: it is withdrawn and the node leaves the network.
            o2.detach("w1")
            _sync(ndb1, ndb2)
            assert client.resolve("web") == []
            assert set(ndb1.db.peers("neta")) == {"n1"}

    asyncio.run(main())


def test_decode_frame_round_trip_is_what_goes_on_the_wire() -> None:
    async def main() -> None:
        h1, h2, port = _hosts()
        ndb1 = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
        ndb2 = NetworkDBShell("n2", NetworkDBConfig(), random.Random(2))
        o1 = Overlay(node_id="n1", host=h1, ndb=ndb1, port=port)
        await o1.start()
        sniffer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sniffer.bind((h2, port))  # stands where node 2's overlay would listen
        sniffer.settimeout(5)
        try:
            o2 = Overlay(node_id="n2", host=h2, ndb=ndb2, port=port)  # not started: the sniffer has the port
            task = _task("w1", "web", NET_A, "10.0.1.3/24")
            o2.join(task)
            o2.publish(task, {})
            client = o1.join(_task("c1", "client", NET_A, "10.0.1.4/24"))
            _sync(ndb1, ndb2)
            client.send_datagram("10.0.1.3", 9, b"hello")
            raw = await asyncio.get_running_loop().run_in_executor(None, sniffer.recv, 2048)
            assert raw[:8].hex() == "0800000000100100"  # VNI 4097
            d = decode_frame(raw)
            assert (d.src, d.dst, d.dport, d.payload) == ("10.0.1.4", "10.0.1.3", 9, b"hello")
        finally:
            sniffer.close()
            await o1.stop()

    asyncio.run(main())


def test_a_name_is_reached_on_the_network_that_answered_even_with_overlapping_subnets() -> None:
    async def main() -> None:
        h1, _, port = _hosts()
        ndb = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
        overlay = Overlay(node_id="n1", host=h1, ndb=ndb, port=port)
        await overlay.start()
        web = await _web(h1, b"on net c")
        try:
            net_c = _network("netc", "same-subnet", 4099, "10.0.1.0/24")  # Swarm accepts the overlap
            task = _task("w1", "web", net_c, "10.0.1.3/24", "10.0.1.2/24")
            overlay.join(task)
            overlay.publish(task, {80: web.sockets[0].getsockname()[1]})
            client_task = _task("c1", "client", NET_A, "10.0.1.4/24")
            client_task["NetworksAttachments"].append({"Network": net_c, "Addresses": ["10.0.1.5/24"]})
            client = overlay.join(client_task)
            reader, writer = await client.connect("web", 80)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            assert (await reader.read()).endswith(b"on net c")
            writer.close()
            with pytest.raises(OSError):  # by address, the first attached network (A) holds no such task
                await client.connect("10.0.1.3", 80)
        finally:
            web.close()
            await overlay.stop()

    asyncio.run(main())


def _node_credentials(ca: Any, node_id: str, role: str = "worker") -> Any:
    import datetime

    from cryptography.hazmat.primitives import serialization

    from nodeagent import tls

    key_pem = tls.new_key()
    key = serialization.load_pem_private_key(key_pem, None)
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue(key.public_key(), node_id=node_id, role=role, cluster_id="cluster1",
                    expiry=datetime.timedelta(days=1), now=now)  # fmt: skip
    return tls.NodeCredentials(cert, key_pem, ca.cert_pem)


def test_tunnels_take_mutual_tls_and_refuse_plaintext_and_nodes_off_the_network() -> None:
    import datetime

    from manager.ca.authority import new_root
    from nodeagent import tls
    from nodeagent.overlay.tunnel import PREFACE, OpenRequest

    ca = new_root(datetime.datetime.now(datetime.UTC))

    async def main() -> None:
        async with _web_on_two_nodes() as two:
            h2, port, o1, o2, client = two.h2, two.port, two.o1, two.o2, two.client
            # One process holds one node's credentials: both ends present n1's worker certificate.
            tls.set_credentials(_node_credentials(ca, "n1"))
            for _ in range(3):
                reader, writer = await client.connect("web", 80)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await reader.read()).endswith(b"page of web.1")
                writer.close()
            (served,) = o2._served
            assert served.transport is not None and served.transport.get_extra_info("ssl_object") is not None
            assert served.peer_node == "n1"

            # Plaintext, as an agent without TLS would speak: dropped before any answer.
            reader, writer = await asyncio.open_connection(h2, port)
            writer.write(PREFACE + bytes([1]) + (1).to_bytes(4, "big") + (16).to_bytes(4, "big")
                         + OpenRequest(4097, "10.0.1.3", 80, "10.0.1.4", 0).encode())  # fmt: skip
            answer = await asyncio.wait_for(reader.read(), 10)
            assert answer == b"" or answer[:1] == b"\x15"  # nothing, or a TLS alert: never OPENED
            writer.close()

            # A certificate of the swarm, but for a node that carries none of the networks (a
            # node removed from the swarm): its streams are refused.
            for conn in list(o1._tunnels.values()):
                conn.close()
            await asyncio.sleep(0.1)
            tls.set_credentials(_node_credentials(ca, "n9"))
            with pytest.raises(OSError) as info:
                await client.connect("web", 80)
            assert info.value.errno == errno.EHOSTUNREACH

    tls.set_enabled(True)
    try:
        asyncio.run(main())
    finally:
        tls.set_credentials(None)
        tls.set_enabled(False)
