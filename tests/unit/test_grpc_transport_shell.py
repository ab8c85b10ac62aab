"""The gossip shell over the real transport, in one process on 127.0.0.1: membership, metrics,
user broadcasts, and the AgentAdmin service (link faults; bad rules change nothing)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from swarmlet.v1 import transport_pb2, transport_pb2_grpc

from nodeagent.gossip.codec import GossipCodec
from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import MemberEvent, UserMessage
from nodeagent.gossip.messages import NodeMeta
from nodeagent.gossip.shell import AgentAdminServicer, GossipShell
from nodeagent.metrics import FaultMetrics, GossipMetrics, MetricsServer, new_registry
from nodeagent.transport.faults import LinkFaults
from nodeagent.transport.grpc_transport import GrpcTransport

_stubs: Any = transport_pb2_grpc


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.registry: CollectorRegistry = new_registry()
        self.metrics = GossipMetrics(self.registry)
        self.faults = LinkFaults(on_fault=FaultMetrics(self.registry).acted)
        self.transport = GrpcTransport(listen_host="127.0.0.1", port=0, advertise_host="127.0.0.1",
                                       codec=GossipCodec(), faults=self.faults, observer=self.metrics)
        self.shell: GossipShell | None = None
        self.events: list[MemberEvent] = []
        self.messages: list[UserMessage] = []

    async def start(self, seed: int) -> None:
        admin = AgentAdminServicer(None, self.faults)
        self.transport.add_servicer(admin.register)
        await self.transport.start()
        meta = NodeMeta(node_id=self.name, role="worker", addr="127.0.0.1", labels=(("hostname", self.name),))
        self.shell = GossipShell(config=GossipConfig.default(), name=self.name, meta=meta,
                                 transport=self.transport, rng=random.Random(seed), metrics=self.metrics)
        admin.shell = self.shell
        self.shell.subscribe(self.events.append)
        self.shell.subscribe_messages(self.messages.append)
        await self.shell.start()

    def view(self) -> dict[str, str]:
        assert self.shell is not None
        return {m.name: m.state.value for m in self.shell.members()}

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def crash(self) -> None:
        assert self.shell is not None
        await self.shell.stop()
        await self.transport.stop(0)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


async def cluster(n: int) -> list[Node]:
    nodes = [Node(f"n{i}") for i in range(n)]
    for i, node in enumerate(nodes):
        await node.start(i)
    for node in nodes[1:]:
        assert node.shell is not None
        node.shell.join([nodes[0].transport.address])
    names = {node.name for node in nodes}
    await until(lambda: all(n.view() == dict.fromkeys(names, "alive") for n in nodes), 10, "convergence")
    return nodes


async def teardown(nodes: list[Node]) -> None:
    for node in nodes:
        await node.crash()


def test_a_crashed_member_is_marked_dead_and_the_metrics_say_so() -> None:
    async def body() -> None:
        nodes = await cluster(4)
        try:
            await nodes[3].crash()
            await until(lambda: all(n.view()["n3"] == "dead" for n in nodes[:3]), 10, "n3 dead everywhere")
            for node in nodes[:3]:
                assert node.sample("swarmlet_gossip_members", state="dead") == 1
                assert node.sample("swarmlet_gossip_members", state="alive") == 2
                assert node.sample("swarmlet_gossip_probes_total") > 0
                assert node.sample("swarmlet_gossip_probe_rtt_seconds_count") > 0
                assert node.sample("swarmlet_gossip_messages_total", direction="in", transport="packet") > 0
                assert node.sample("swarmlet_gossip_bytes_total", direction="out", transport="packet") > 0
                assert any(e.name == "n3" and e.state.value == "dead" for e in node.events)
            assert sum(n.sample("swarmlet_gossip_suspicions_raised_total") for n in nodes[:3]) >= 1
            assert sum(n.sample("swarmlet_gossip_probes_failed_total") for n in nodes[:3]) >= 1
        finally:
            await teardown(nodes[:3])

    run(body)


def test_a_graceful_leave_is_seen_as_left() -> None:
    async def body() -> None:
        nodes = await cluster(3)
        try:
            leaver = nodes[2]
            assert leaver.shell is not None
            await leaver.shell.leave(0.5)
            await leaver.crash()
            await until(lambda: all(n.view()["n2"] == "left" for n in nodes[:2]), 5, "n2 left everywhere")
        finally:
            await teardown(nodes[:2])

    run(body)


def test_user_broadcasts_reach_every_other_member_once() -> None:
    async def body() -> None:
        nodes = await cluster(3)
        try:
            assert nodes[0].shell is not None
            nodes[0].shell.broadcast("netdb", b"endpoint-1")
            await until(lambda: all(len(n.messages) == 1 for n in nodes[1:]), 5, "the broadcast")
            got = [(m.topic, m.payload, m.origin) for m in nodes[2].messages]
            assert got == [("netdb", b"endpoint-1", "n0")]
            with pytest.raises(ValueError):
                nodes[0].shell.broadcast("netdb", b"x" * 100_000)
        finally:
            await teardown(nodes)

    run(body)


def test_admin_service_sets_faults_shows_members_and_refuses_bad_rules() -> None:
    async def body() -> None:
        nodes = await cluster(2)
        target = nodes[0]
        try:
            async with grpc.aio.insecure_channel(target.transport.address) as channel:
                stub = _stubs.AgentAdminStub(channel)
                reply = await stub.Members(transport_pb2.MembersRequest(), timeout=2)
                assert reply.self == "n0"
                assert {(m.name, m.state, m.hostname) for m in reply.members} == {
                    ("n0", "alive", "n0"), ("n1", "alive", "n1")}
                rule = transport_pb2.LinkFaultRule(peers=[nodes[1].transport.address], drop=0.5)
                await stub.SetLinkFaults(transport_pb2.LinkFaults(rules=[rule]), timeout=2)
                bad = transport_pb2.LinkFaultRule(drop=2.0)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.SetLinkFaults(transport_pb2.LinkFaults(rules=[bad]), timeout=2)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "drop" in (info.value.details() or "")
                now = await stub.GetLinkFaults(transport_pb2.LinkFaults(), timeout=2)
                assert [(list(r.peers), r.drop) for r in now.rules] == [([nodes[1].transport.address], 0.5)]
        finally:
            await teardown(nodes)

    run(body)


def test_the_metrics_endpoint_serves_the_registry_and_refuses_the_rest() -> None:
    async def ask(port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer

    async def body() -> None:
        registry = new_registry()
        GossipMetrics(registry).members.labels(state="alive").set(4)
        server = MetricsServer(registry, "127.0.0.1", 0)
        await server.start()
        try:
            ok = await ask(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK")
            assert b'swarmlet_gossip_members{state="alive"} 4.0' in ok
            # HTTP/1.1 requires Host (RFC 9112 3.2): a request without it is a 400.
            nope = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            assert (await ask(server.port, nope)).startswith(b"HTTP/1.1 404")
            assert (await ask(server.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
                b"HTTP/1.1 405")
            assert (await ask(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 400")
            # A request that cannot be parsed has no HTTP version: the answer says 1.0.
            assert (await ask(server.port, b"\x00\x01garbage\r\n\r\n")).startswith(b"HTTP/1.0 400")
        finally:
            await server.stop()

    run(body)


def test_changed_metadata_reaches_the_other_members() -> None:
    async def body() -> None:
        nodes = await cluster(3)
        try:
            shell = nodes[1].shell
            assert shell is not None
            shell.set_meta(labels=(("hostname", "n1"), ("zone", "b")))

            def seen_everywhere() -> bool:
                for node in nodes:
                    assert node.shell is not None
                    [n1] = [m for m in node.shell.members() if m.name == "n1"]
                    if ("zone", "b") not in n1.meta.labels:
                        return False
                return True

            await until(seen_everywhere, 5, "the new labels")
            with pytest.raises(TypeError):
                shell.set_meta(colour="blue")
        finally:
            await teardown(nodes)

    run(body)
