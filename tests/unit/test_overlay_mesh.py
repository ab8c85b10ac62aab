"""The routing mesh: its pure rules, then two nodes' meshes on loopback relaying to real listeners.

The shell part runs two overlays and meshes in one process on two 127.x addresses (the network
databases synced by hand, as in test_overlay_shell.py): a node with no task answers on the
published port through a tunnel to the other node's task, requests go round robin, a task that
is withdrawn gets no new connection, and host-mode ports are served only where their task runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from deploy.commands.status import unpublished_ports
from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.logs import LogStore
from nodeagent.images.redis import RedisServer
from nodeagent.images.web import NGINX, count_visit, redis_target
from nodeagent.networkdb.core import Endpoint
from nodeagent.networkdb.shell import NetworkDBConfig, NetworkDBShell
from nodeagent.overlay.attach import attachments, endpoint_for
from nodeagent.overlay.mesh import (
    MeshBalancer,
    host_port_status,
    host_routes,
    ingress_attachment,
    ingress_routes,
    listener_changes,
    published_ports,
)
from nodeagent.overlay.mesh_shell import Mesh
from nodeagent.overlay.shell import Overlay

pytestmark = pytest.mark.unit

INGRESS = {"ID": "ingressid", "Spec": {"Name": "ingress", "Ingress": True},
           "DriverState": {"Name": "overlay",
                           "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4096"}},
           "IPAMOptions": {"Configs": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]}}  # fmt: skip


def _ports(*ports: tuple[int, int, str, str]) -> list[dict[str, Any]]:
    return [{"TargetPort": t, "PublishedPort": p, "Protocol": proto, "PublishMode": mode}
            for p, t, proto, mode in ports]  # fmt: skip


def _task(task_id: str, addr: str, ports: list[dict[str, Any]], service: str = "web") -> dict[str, Any]:
    return {"ID": task_id, "ServiceID": f"svc-{service}", "ServiceAnnotations": {"Name": service},
            "NetworksAttachments": [{"Network": INGRESS, "Addresses": [f"{addr}/24"]}] if addr else [],
            "Endpoint": {"Spec": {"Mode": "vip"}, "Ports": ports,
                         "VirtualIPs": [{"NetworkID": "ingressid", "Addr": "10.0.0.2/24"}]}}  # fmt: skip


def _endpoint(task_id: str, addr: str, node: str, ports: tuple[tuple[int, int, str], ...],
              network: str = "ingressid") -> Endpoint:
    return Endpoint(network, task_id, node, addr, "10.0.0.2", "web", "svc-web", (), "vip",
                    ((80, "127.0.0.1", 1000),), ports)  # fmt: skip


# Pure rules -------------------------------------------------------------------------------------

def test_published_ports_read_the_tasks_endpoint_and_skip_what_is_not_a_port() -> None:
    junk: list[Any] = [{"TargetPort": 80}, {"TargetPort": "x", "PublishedPort": 1}, "junk"]
    task = _task("t1", "10.0.0.5", [*_ports((8080, 80, "tcp", "ingress"), (9000, 90, "udp", "host")), *junk])
    assert [(p.published, p.target, p.protocol, p.mode) for p in published_ports(task)] == [
        (8080, 80, "tcp", "ingress"), (9000, 90, "udp", "host")]
    assert published_ports({"ID": "t2"}) == []


def test_a_tasks_ingress_endpoint_carries_its_ingress_ports_and_survives_the_wire() -> None:
    task = _task("t1", "10.0.0.5", _ports((8080, 80, "tcp", "ingress"), (5514, 514, "udp", "ingress"),
                                          (9000, 90, "tcp", "host")))  # fmt: skip
    [attachment] = attachments(task)
    endpoint = endpoint_for(task, attachment, "n1", ((80, "127.0.0.1", 4000),))
    assert endpoint.ports == ((8080, 80, "tcp"), (5514, 514, "udp"))  # host mode is not the mesh's
    assert Endpoint.from_json(endpoint.to_json()) == endpoint
    # An entry written by a node without ports still reads (no "ports" key).
    old = endpoint.to_json().replace(',"ports":[[8080,80,"tcp"],[5514,514,"udp"]]', "")
    assert '"ports"' not in old and Endpoint.from_json(old).ports == ()


def test_the_ingress_network_as_the_session_sends_it_becomes_the_nodes_attachment() -> None:
    attachment = ingress_attachment(INGRESS)
    assert attachment is not None
    assert (attachment.network_id, attachment.name, attachment.vni, attachment.ingress) == (
        "ingressid", "ingress", 4096, True)
    assert str(attachment.subnet) == "10.0.0.0/24" and attachment.addr == ""
    assert ingress_attachment({"ID": "x", "DriverState": {"Options": {}}}) is None
    assert ingress_attachment({**INGRESS, "ID": ""}) is None


def test_ingress_routes_group_the_tasks_by_published_port_in_a_stable_order() -> None:
    endpoints = [
        _endpoint("t3", "10.0.0.9", "n2", ((8080, 80, "tcp"),)),
        _endpoint("t1", "10.0.0.10", "n1", ((8080, 80, "tcp"), (5514, 514, "udp"))),
        _endpoint("t2", "10.0.0.7", "n3", ((8080, 80, "tcp"), (9090, 9000, "tcp"))),
        _endpoint("other", "10.0.1.3", "n1", ((8080, 80, "tcp"),), network="front"),
        _endpoint("noports", "10.0.0.11", "n1", ()),
    ]
    routes = ingress_routes("ingressid", endpoints)
    assert sorted(routes) == [8080, 9090]
    assert [b.endpoint.task_id for b in routes[8080]] == ["t2", "t3", "t1"]  # by address: .7, .9, .10
    assert [(b.endpoint.task_id, b.target) for b in routes[9090]] == [("t2", 9000)]
    udp = ingress_routes("ingressid", endpoints, "udp")
    assert [(port, [b.endpoint.task_id for b in bs]) for port, bs in udp.items()] == [(5514, ["t1"])]
    assert ingress_routes("ingressid", []) == {}


def test_host_routes_are_the_local_tasks_host_mode_ports_only() -> None:
    task = _task("h1", "", _ports((8080, 80, "tcp", "host"), (8081, 81, "tcp", "ingress"),
                                  (5000, 50, "udp", "host")))  # fmt: skip
    local = {"h1": (_endpoint("h1", "", "n1", ()), published_ports(task))}
    routes = host_routes(local)
    assert list(routes) == [8080] and routes[8080][0].target == 80


def test_a_running_tasks_port_status_lists_its_host_mode_ports_as_swarm_does() -> None:
    task = _task("h1", "", _ports((8080, 80, "tcp", "host"), (8081, 81, "tcp", "ingress"),
                                  (5000, 50, "udp", "host")))  # fmt: skip
    assert host_port_status(task) == {"Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"},
        {"Protocol": "udp", "TargetPort": 50, "PublishedPort": 5000, "PublishMode": "host"}]}
    assert host_port_status(_task("i1", "", _ports((8081, 81, "tcp", "ingress")))) == {}


def test_listeners_follow_the_wanted_ports() -> None:
    assert listener_changes({80, 8080}, {8080, 30000}) == ([30000], [80])
    assert listener_changes([], []) == ([], [])


def test_the_balancer_goes_round_robin_per_port_and_gives_the_rest_as_fall_backs() -> None:
    balancer: MeshBalancer[str] = MeshBalancer()
    picks = [balancer.rotation(8080, ["a", "b", "c"]) for _ in range(4)]
    assert picks == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert balancer.rotation(80, ["x", "y"]) == ["x", "y"]  # each port has its own turn
    assert balancer.rotation(8080, ["a", "b"]) == ["b", "a"]  # fewer choices: still in turn
    assert balancer.rotation(8080, []) == []


def test_status_notes_the_service_ports_the_nodes_do_not_publish_on_the_host() -> None:
    services = [
        {"Spec": {"Name": "web"}, "Endpoint": {"Ports": _ports((8080, 80, "tcp", "ingress"))}},
        {"Spec": {"Name": "auto"}, "Endpoint": {"Ports": _ports((30001, 80, "tcp", "ingress"))}},
        {"Spec": {"Name": "syslog"}, "Endpoint": {"Ports": _ports((5514, 514, "udp", "host"))}},
        {"Spec": {"Name": "none"}, "Endpoint": {"Spec": {}}},
    ]
    notes = unpublished_ports(services, ((80, 80), (8080, 8080), (30000, 30000)))
    assert notes == [
        "Note: service auto publishes port 30001/tcp (ingress mode), which the nodes do not publish on the "
        "host (80,8080,30000): reachable inside the cluster's network only; `swarmlet up --publish` chooses "
        "the host's ports",
        "Note: service syslog publishes port 5514/udp (host mode), which the nodes do not publish on the "
        "host (80,8080,30000): reachable inside the cluster's network only; `swarmlet up --publish` chooses "
        "the host's ports",
    ]
    assert unpublished_ports(services[:1], ((8080, 8080),)) == []


# Two nodes on loopback --------------------------------------------------------------------------

def _hosts() -> tuple[str, str, int, int]:
    """Two loopback addresses, a free data path port and a free published port on both."""
    rng = random.Random()
    prefix = f"127.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}"
    h1, h2 = f"{prefix}.31", f"{prefix}.32"
    with socket.socket() as a, socket.socket() as b:
        a.bind((h1, 0))
        b.bind((h1, 0))
        return h1, h2, int(a.getsockname()[1]), int(b.getsockname()[1])


def _sync(a: NetworkDBShell, b: NetworkDBShell) -> None:
    for x, y in ((a, b), (b, a), (a, b)):
        x.db.node_alive(y.db.name)
        y.db.node_alive(x.db.name)
        push = x.db.handle_sync(y.db.name, [], reply=False)
        assert push is not None
        y.db.handle_sync(x.db.name, push.entries, reply=True)
    a.flush()
    b.flush()


async def _web(host: str, name: str, port: bool = False) -> asyncio.Server:
    """A listener answering its ``name`` (and with ``port``, the port the connection reached)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = (f"{name} {writer.get_extra_info('sockname')[1]}" if port else name).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, 0)


@dataclass
class _TwoMeshes:
    """Two nodes' overlays and routing meshes, carrying the ingress network, and listeners on n2."""

    h1: str
    h2: str
    data_port: int
    published: int
    ndb1: NetworkDBShell
    ndb2: NetworkDBShell
    o1: Overlay
    o2: Overlay
    m1: Mesh
    m2: Mesh
    servers: list[asyncio.Server]
    """One listener on n2 per name given, answering it (see :func:`_web`)."""


@contextlib.asynccontextmanager
async def _two_meshes(*names: str, linger: float, port: bool = False) -> AsyncIterator[_TwoMeshes]:
    """:class:`_TwoMeshes`, started; the meshes and overlays stopped and the listeners closed at the end."""
    h1, h2, data_port, published = _hosts()
    ndb1 = NetworkDBShell("n1", NetworkDBConfig(), random.Random(1))
    ndb2 = NetworkDBShell("n2", NetworkDBConfig(), random.Random(2))
    o1 = Overlay(node_id="n1", host=h1, ndb=ndb1, port=data_port)
    o2 = Overlay(node_id="n2", host=h2, ndb=ndb2, port=data_port)
    m1, m2 = Mesh(o1, linger=linger), Mesh(o2, linger=linger)
    servers = [await _web(h2, name, port=port) for name in names]
    for part in (o1, o2, m1, m2):
        await part.start()
    try:
        m1.configure(INGRESS)
        m2.configure(INGRESS)
        yield _TwoMeshes(h1, h2, data_port, published, ndb1, ndb2, o1, o2, m1, m2, servers)
    finally:
        for part in (m1, m2, o1, o2):
            await part.stop()
        for server in servers:
            server.close()


async def _get(host: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    return data.partition(b"\r\n\r\n")[2].decode()


async def _until(probe: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _serve_on_n2(two: Any) -> None:
    """Both web tasks (task-a, task-b) on n2, published through the ingress network, and both
    nodes' meshes serving the published port."""
    published = two.published
    ports = _ports((published, 80, "tcp", "ingress"))
    for i, (server, addr) in enumerate(zip(two.servers, ("10.0.0.5", "10.0.0.6"), strict=True)):
        task = _task(f"task-{'ab'[i]}", addr, ports)
        two.o2.join(task)
        two.o2.publish(task, {80: server.sockets[0].getsockname()[1]})
    _sync(two.ndb1, two.ndb2)
    await _until(lambda: two.m1.ports == [f"{published}/tcp"] and two.m2.ports == [f"{published}/tcp"])


def test_a_node_without_a_task_relays_round_robin_through_the_ingress_overlay() -> None:
    async def main() -> None:
        async with _two_meshes("task-a", "task-b", linger=5.0) as two:
            h1, h2, published, ndb1, ndb2 = two.h1, two.h2, two.published, two.ndb1, two.ndb2
            o2, m1, m2, servers = two.o2, two.m1, two.m2, two.servers
            await _serve_on_n2(two)
            # n1 runs no task: its answers come from n2's tasks through tunnels, in turn.
            answers = [await _get(h1, published) for _ in range(4)]
            assert answers == ["task-a", "task-b", "task-a", "task-b"]
            # Counted as each stream ends (both sides closed).
            await _until(lambda: o2.metrics.frames.labels(vni="4096", direction="rx")._value.get() >= 4)
            # task-a is being stopped: out of the balancer at once, on its own node...
            assert o2.withdraw("task-a") is True
            assert [await _get(h2, published) for _ in range(3)] == ["task-b"] * 3
            # ...and on n1 once the tables meet; until then a refused backend is skipped.
            servers[0].close()
            await servers[0].wait_closed()
            answers = [await _get(h1, published) for _ in range(3)]
            assert answers == ["task-b"] * 3
            _sync(ndb1, ndb2)
            assert [b.endpoint.task_id for b in m1.routes[published]] == ["task-b"]
            # Gossip takes n2 for dead a moment: n1 drops its entries, but the port lingers and
            # its connections still go to the backends last known, which answer.
            ndb1.db.node_dead("n2")
            ndb1.flush()
            assert m1.routes == {} and m1.ports == [f"{published}/tcp"]
            assert await _get(h1, published) == "task-b"
            ndb1.db.node_alive("n2")
            _sync(ndb1, ndb2)
            # The last tasks are withdrawn (the service was removed): the port closes at once on
            # every node, as Swarm's, not after the linger (a node declared dead's is kept).
            o2.detach("task-a")
            o2.detach("task-b")
            _sync(ndb1, ndb2)
            await _until(lambda: m1.ports == [] and m2.ports == [], timeout=1.0)
            # The node still carries ingress for itself (the mesh holds it).
            assert "ingressid" in ndb1.db.joined and "ingressid" in ndb2.db.joined

    asyncio.run(main())


def test_host_mode_ports_listen_only_where_the_task_runs() -> None:
    async def main() -> None:
        async with _two_meshes("host-task", linger=0.3) as two:
            h1, h2, published, ndb1, ndb2 = two.h1, two.h2, two.published, two.ndb1, two.ndb2
            o2, m1, m2, (server,) = two.o2, two.m1, two.m2, two.servers
            task = _task("h1", "", _ports((published, 80, "tcp", "host")))
            o2.join(task)
            o2.publish(task, {80: server.sockets[0].getsockname()[1]})
            _sync(ndb1, ndb2)
            await _until(lambda: m2.ports == [f"{published}/tcp"])
            assert await _get(h2, published) == "host-task"
            assert m1.ports == []
            with pytest.raises(OSError):
                await _get(h1, published)
            assert o2.withdraw("h1") is True  # host-mode ports count as a binding to take down first
            await _until(lambda: m2.ports == [])

    asyncio.run(main())


# Tasks being stopped and the visit counter ------------------------------------------------------

class _Overlay:
    """Records the order of what the task runtime asks of the data plane."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def join(self, task: Any) -> None:
        self.events.append("join")

    def publish(self, task: Any, ports: Any) -> None:
        self.events.append("publish")

    def withdraw(self, task_id: str) -> bool:
        self.events.append("withdraw")
        return True

    def detach(self, task_id: str) -> None:
        self.events.append("detach")


def test_a_stopping_task_leaves_the_balancer_first_and_finishes_its_open_request() -> None:
    async def main() -> None:
        events: list[str] = []
        executor = EmulatedExecutor(node_id="n1", hostname="worker1", listen_host="127.0.0.1",
                                    logs=LogStore(time.time_ns), overlay=_Overlay(events), time_scale=0.2)
        task = {"ID": "w1", "Annotations": {"Name": "web.1.w1"},
                "Spec": {"ContainerSpec": {"Image": "nginx", "StopGracePeriod": 5_000_000_000}}}
        controller = executor.controller(task)
        await controller.prepare()
        await controller.start()
        assert controller.env is not None
        port = controller.env.ports[80]
        # A request whose head is still arriving when the stop begins.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")
        await writer.drain()
        process = controller.process
        assert process is not None
        terminate = process.terminate

        def recorded() -> None:
            events.append("SIGTERM")
            terminate()

        process.terminate = recorded  # type: ignore[method-assign]
        waiting = asyncio.create_task(controller.wait())
        stopping = asyncio.create_task(controller.shutdown())
        await _until(lambda: "SIGTERM" in events)
        assert events[:3] == ["join", "publish", "withdraw"] and events[3] == "SIGTERM"
        with pytest.raises(OSError):  # no new connection once it is terminating
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"Host: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK") and b"web.1.w1" in answer
        await asyncio.wait_for(stopping, 5)
        await asyncio.wait_for(waiting, 5)
        assert controller.exit_code == 0  # it exited by itself, not killed at the grace period's end

    asyncio.run(main())


class _Net:
    """A task's network where the name ``redis`` (and its VIP) reach a local Redis."""

    def __init__(self, port: int | None) -> None:
        self.port = port

    def resolve(self, name: str) -> list[str]:
        return ["10.0.1.2"] if name == "redis" and self.port else []

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host not in ("redis", "10.0.1.2") or port != 6379 or self.port is None:
            raise ConnectionRefusedError(111, "Connection refused")
        return await asyncio.open_connection("127.0.0.1", self.port)


def test_the_web_page_counts_visits_in_redis_reached_by_name() -> None:
    async def main() -> None:
        logs = LogStore(time.time_ns)
        executor = EmulatedExecutor(node_id="n1", hostname="worker1", listen_host="127.0.0.1", logs=logs)
        redis_task = {"ID": "r1", "Spec": {"ContainerSpec": {"Image": "redis"}}}
        redis = executor.controller(redis_task)
        await redis.prepare()
        await redis.start()
        assert redis.env is not None and isinstance(redis.process, RedisServer)
        net = _Net(redis.env.ports[6379])
        web_task = {"ID": "w1", "Annotations": {"Name": "web.1.w1"},
                    "Spec": {"ContainerSpec": {"Image": "nginx", "Env": ["REDIS_HOST=redis"]}}}
        web = executor.controller(web_task)
        await web.prepare()
        assert web.env is not None
        web.env.network = net
        assert redis_target(web.env) == ("redis", 6379)
        await web.start()
        pages = [await _get("127.0.0.1", web.env.ports[80]) for _ in range(3)]
        assert [f"<p>Visits: {n}</p>" in page for n, page in enumerate(pages, 1)] == [True] * 3, pages
        assert redis.process.data[b"counter"] == b"3"
        assert await count_visit(web.env, "redis", 6379) == 4
        # No REDIS_HOST: a service called redis on the task's networks is found by name.
        web.env.env.pop("REDIS_HOST")
        assert redis_target(web.env) == ("redis", 6379)
        # Redis gone: the page still answers, and says so.
        net.port = 1
        web.env.env["REDIS_HOST"] = "redis"
        page = await _get("127.0.0.1", web.env.ports[80])
        assert "Visits: cannot connect to Redis, counter disabled" in page
        # Neither REDIS_HOST nor a redis service: no counter line at all.
        web.env.env.pop("REDIS_HOST")
        net.port = None
        assert redis_target(web.env) is None
        assert "Visits" not in await _get("127.0.0.1", web.env.ports[80])
        for controller in (web, redis):
            await controller.shutdown(grace=0.5)
            await controller.remove()
        assert NGINX.flavour == "nginx"

    asyncio.run(main())


def test_a_tunnel_hands_its_connection_to_a_listener_of_the_same_process() -> None:
    """The emulated images' listeners register; a tunnel to them is given to them, not dialled:
    the answers, the round robin and the overlay's byte counters are the same, and a listener
    that stopped serving refuses (the next task answers)."""
    from nodeagent.overlay.splice import register_listener, unregister_listener

    async def main() -> None:
        async with _two_meshes("task-a", "task-b", linger=0.3, port=True) as two:
            h1, h2, data_port, published = two.h1, two.h2, two.data_port, two.published
            o2, servers = two.o2, two.servers
            for server in servers:
                register_listener(server)
            try:
                await _serve_on_n2(two)
                # Through a tunnel (n1) and on the tasks' own node (n2): in turn, whole answers.
                # The task is given the tunnel's own connection, to n2's data path port (dialled, the
                # connection would reach its listener's port).
                tunnel = [f"task-a {data_port}", f"task-b {data_port}"]
                assert [await _get(h1, published) for _ in range(4)] == tunnel * 2
                assert [(await _get(h2, published)).split()[0] for _ in range(2)] == ["task-a", "task-b"]
                request, answer = len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), len(b"HTTP/1.1 200 OK\r\n")

                def counted() -> bool:
                    rx = o2.metrics.bytes.labels(vni="4096", direction="rx")._value.get()
                    tx = o2.metrics.bytes.labels(vni="4096", direction="tx")._value.get()
                    return bool(rx >= 4 * request and tx >= 4 * answer)

                await _until(counted)
                # task-a's listener stops serving (its task got SIGTERM) but the tables still name it.
                servers[0].close()
                assert [await _get(h1, published) for _ in range(2)] == [f"task-b {data_port}"] * 2
                # Connections already given to a listener are not the mesh's to close at stop.
                assert not o2._splices
            finally:
                for server in servers:
                    unregister_listener(server)

    asyncio.run(main())
