"""Emulated images: references, the registry, web pages, the shell, RESP, healthchecks, logs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import nodeagent.images as images
from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.health import HealthConfig, HealthState, run_check
from nodeagent.agent.logs import LogStore, TaskLog, format_time_ns
from nodeagent.agent.worker import StatusReporter, Worker
from nodeagent.images.base import ImageInfo, TaskEnv, WaitingProcess, image_info
from nodeagent.images.redis import RedisServer, encode, execute, parse_command
from nodeagent.images.shell import run_argv
from nodeagent.images.web import WebServer

pytestmark = pytest.mark.unit


def env(**kw: Any) -> tuple[TaskEnv, list[str], list[str]]:
    out: list[str] = []
    err: list[str] = []
    base: dict[str, Any] = dict(
        task_id="t1", task_name="web.2.t1", service_name="web", slot=2, node_id="n1", node_hostname="worker1",
        image="nginx:1.25", repository="nginx", tag="1.25", command=[], args=[], env={"NAME": "swarm"},
        files={}, listen_host="127.0.0.1", stdout=out.append, stderr=err.append, hostname="c0ffee000001",
    )  # fmt: skip
    base.update(kw)
    return TaskEnv(**base), out, err


@pytest.mark.parametrize(
    ("ref", "repository", "tag"),
    [
        ("nginx", "nginx", "latest"),
        ("nginx:1.25", "nginx", "1.25"),
        ("docker.io/library/nginx:1.25@sha256:" + "a" * 64, "nginx", "1.25"),
        ("traefik/whoami:v1.10", "traefik/whoami", "v1.10"),
        ("localhost:5000/team/app", "team/app", "latest"),
        ("Redis:7", "redis", "7"),
    ],
)
def test_references_are_normalised_as_docker_does(ref: str, repository: str, tag: str) -> None:
    assert images.parse_reference(ref) == (repository, tag)


def test_every_image_resolves_and_unknown_ones_are_web_servers() -> None:
    flavour = {ref: images.resolve(ref)[0] for ref in
               ("nginx:1.25", "httpd", "traefik/whoami", "busybox", "alpine:3.19", "redis:7", "lab/web:1",
                "lab/busybox")}  # fmt: skip
    assert flavour["nginx:1.25"].names == ("nginx",)
    assert flavour["traefik/whoami"].names[0] == "traefik/whoami"
    assert flavour["lab/busybox"].names == ("busybox",)  # a stand-in named after busybox is busybox
    assert flavour["lab/web:1"].names == ("*",)
    assert flavour["redis:7"].names == ("redis",)


def test_known_images_list_every_image_and_the_tags_tasks_used() -> None:
    listed = images.known_images(["nginx:1.25", "lab/web:1"])
    names = {(i.name, i.tag) for i in listed}
    assert {("nginx", "latest"), ("nginx", "1.25"), ("lab/web", "1"), ("redis", "latest"),
            ("busybox", "latest"), ("traefik/whoami", "latest")} <= names  # fmt: skip
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", i.id) and i.size > 0 and i.created > 0 for i in listed)
    assert image_info("nginx", "1.25", 1) == image_info("nginx", "1.25", 1)  # stable IDs


@dataclass(frozen=True)
class EchoImage:
    names: tuple[str, ...] = ("acme/echo",)

    def describe(self, repository: str, tag: str) -> ImageInfo:
        return image_info(repository, tag, 1)

    def process(self, env: TaskEnv) -> WaitingProcess:
        return WaitingProcess(env)


def test_an_image_registered_through_the_entry_point_group_is_used(
    installed_entry_point: Callable[[str, str, str], None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed_entry_point(images.ENTRY_POINT_GROUP, "echo", f"{__name__}:ECHO")
    try:
        images.providers(reload=True)
        assert images.resolve("acme/echo:2")[0] is ECHO
        assert ("acme/echo", "latest") in {(i.name, i.tag) for i in images.known_images()}
    finally:
        monkeypatch.undo()
        images.providers(reload=True)


ECHO = EchoImage()


async def _get(port: int, path: str = "/") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def test_web_servers_answer_a_page_naming_the_task_or_serve_mounted_files() -> None:
    async def main() -> None:
        root = "/usr/share/nginx/html"
        files = {f"{root}/about.html": b"<p>about</p>", f"{root}/x/index.html": b"x!"}
        e, out, _ = env(files=files)
        server = WebServer(e, "nginx", ("/usr/share/nginx/html",))
        await server.start()
        port = e.ports[80]
        code, body = await _get(port)
        assert code == 200 and "Welcome to nginx!" in body
        assert "image nginx:1.25, task web.2.t1, slot 2, node worker1" in body
        assert await _get(port, "/about.html") == (200, "<p>about</p>")
        assert await _get(port, "/x/") == (200, "x!")
        assert (await _get(port, "/nope"))[0] == 404
        assert any('"GET /nope HTTP/1.1" 404' in line for line in out)
        await server.close()

        w, _, _ = env(repository="traefik/whoami", tag="latest", args=["--port", "8080"])
        whoami = WebServer(w, "whoami", ())
        await whoami.start()
        code, body = await _get(w.ports[8080], "/hello")
        assert code == 200
        assert body.startswith("Hostname: c0ffee000001\nIP: 127.0.0.1\nRemoteAddr: 127.0.0.1:")
        assert "GET /hello HTTP/1.1\nHost: web\n" in body
        assert "Task: web.2.t1\nSlot: 2\nNode: worker1\n" in body
        await whoami.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("argv", "code", "stdout", "stderr"),
    [
        (["echo", "hello", "world"], 0, ["hello world"], []),
        (["sh", "-c", "exit 3"], 3, [], []),
        (["sh", "-c", "echo a; echo b && false || echo c"], 0, ["a", "b", "c"], []),
        (["sh", "-c", "false && echo never; echo $NAME ${NAME}"], 0, ["swarm swarm"], []),
        (["sh", "-c", "cat /run/secrets/pw"], 0, ["s3cret"], []),
        (["sh", "-c", "cat /nope"], 1, [], ["cat: can't open '/nope': No such file or directory"]),
        (["sh", "-c", "frobnicate"], 127, [], ["sh: frobnicate: not found"]),
        (["sh", "-c", "echo 'a;b' \"c d\"; exec echo done"], 0, ["a;b c d", "done"], []),
        (["sh", "-c", "exit 300"], 44, [], []),
        (["sleep", "0.01"], 0, [], []),
        (["true"], 0, [], []),
        (["/bin/false"], 1, [], []),
    ],
)
def test_the_shell_runs_builtins_lists_and_exit_codes(
    argv: list[str], code: int, stdout: list[str], stderr: list[str]
) -> None:
    e, out, err = env(files={"/run/secrets/pw": b"s3cret\n"})
    assert asyncio.run(run_argv(argv, e)) == code
    assert (out, err) == (stdout, stderr)


def test_resp_parsing_and_commands() -> None:
    assert parse_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == ([b"GET", b"k"], 20)
    assert parse_command(b"PING\r\n") == ([b"PING"], 6)
    data: dict[bytes, bytes] = {}
    assert encode(execute(data, [b"PING"])) == b"+PONG\r\n"
    assert encode(execute(data, [b"get", b"k"])) == b"$-1\r\n"
    assert encode(execute(data, [b"SET", b"k", b"v"])) == b"+OK\r\n"
    assert encode(execute(data, [b"GET", b"k"])) == b"$1\r\nv\r\n"
    assert encode(execute(data, [b"INCR", b"n"])) == b":1\r\n"
    assert encode(execute(data, [b"INCR", b"n"])) == b":2\r\n"
    assert encode(execute(data, [b"INCR", b"k"])) == b"-ERR value is not an integer or out of range\r\n"
    assert encode(execute(data, [b"DEL", b"k", b"zz"])) == b":1\r\n"
    assert encode(execute(data, [b"GET"])) == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert encode(execute(data, [b"FOO", b"x"])).startswith(b"-ERR unknown command 'FOO'")


def test_the_redis_server_answers_clients_over_tcp() -> None:
    async def main() -> None:
        e, out, _ = env(repository="redis", tag="7")
        server = RedisServer(e)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", e.ports[6379])
        writer.write(b"*3\r\n$3\r\nSET\r\n$7\r\ncounter\r\n$2\r\n41\r\n*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\nPING\r\n")
        await writer.drain()
        replies = [await reader.readline() for _ in range(3)]
        assert replies == [b"+OK\r\n", b":42\r\n", b"+PONG\r\n"]
        writer.close()
        assert "* Ready to accept connections tcp" in out
        await server.close()

    asyncio.run(main())


def test_health_state_counts_failures_after_the_start_period() -> None:
    state = HealthState(retries=3, start_period=10.0)
    assert state.record(False, 1.0) == "starting"
    assert state.record(False, 2.0) == "starting" and state.failing_streak == 0
    assert state.record(True, 3.0) == "healthy"
    assert [state.record(False, t) for t in (4.0, 5.0, 6.0)] == ["healthy", "healthy", "unhealthy"]
    assert HealthConfig.from_spec({"Test": ["NONE"]}) is None
    config = HealthConfig.from_spec({"Test": ["CMD", "true"], "Interval": 2_000_000_000})
    assert config == HealthConfig(("CMD", "true"), 2.0, 30.0, 3, 0.0)


def test_healthcheck_commands_dial_the_tasks_own_listeners() -> None:
    async def main() -> None:
        e, _, _ = env()
        server = WebServer(e, "nginx", ())
        await server.start()
        redis_env, _, _ = env()
        redis = RedisServer(redis_env)
        await redis.start()
        ok = HealthConfig(("CMD-SHELL", "curl -f http://localhost/ || exit 1"), timeout=2)
        assert await run_check(ok, e)
        assert await run_check(HealthConfig(("CMD", "wget", "-q", "--spider", "http://localhost:80/")), e)
        assert not await run_check(HealthConfig(("CMD-SHELL", "curl -f http://localhost/missing")), e)
        assert not await run_check(HealthConfig(("CMD-SHELL", "curl -f http://localhost:8080/")), e)
        assert await run_check(HealthConfig(("CMD", "redis-cli", "ping")), redis_env)
        assert not await run_check(HealthConfig(("CMD", "redis-cli", "ping")), e)
        await server.close()
        await redis.close()

    asyncio.run(main())


def test_an_unhealthy_task_fails_as_docker_reports_it() -> None:
    async def main() -> None:
        logs = LogStore(time.time_ns)
        executor = EmulatedExecutor(node_id="n1", hostname="worker1", listen_host="127.0.0.1", logs=logs)
        reports: list[tuple[str, dict[str, Any]]] = []

        async def send(batch: list[tuple[str, dict[str, Any]]]) -> None:
            reports.extend(batch)

        reporter = StatusReporter(send, 0.01)
        worker = Worker(executor, reporter, lambda: "2026-01-01T00:00:00Z")
        job = asyncio.create_task(reporter.run())
        health = {"Test": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"],
                  "Interval": 20_000_000, "Timeout": 500_000_000, "Retries": 2}  # fmt: skip
        worker.apply(True, [{
            "ID": "h1", "Version": {"Index": 5}, "DesiredState": "running", "NodeID": "n1", "Slot": 1,
            "Spec": {"ContainerSpec": {"Image": "nginx", "Healthcheck": health}},
            "Status": {"State": "assigned"},
        }], [])  # fmt: skip
        deadline = time.monotonic() + 5
        while not any(s["State"] == "failed" for _, s in reports) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        final = reports[-1][1]
        assert final["State"] == "failed" and final["Err"] == "unhealthy container"
        assert final["Message"] == "started"
        # The container is then stopped, as the agent stops a failed task's container.
        deadline = time.monotonic() + 5
        while worker.runners["h1"].controller.facts().pid and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not worker.runners["h1"].controller.facts().pid
        job.cancel()

    asyncio.run(main())


def test_task_logs_are_bounded_and_read_by_tail_since_and_follow() -> None:
    async def main() -> None:
        log = TaskLog("t", max_lines=3)
        for i in range(5):
            log.write("stdout", f"line {i}", 1_000 + i)
        assert [line.text for line in log.select()] == ["line 2", "line 3", "line 4"]
        assert [line.text for line in log.select(tail=1)] == ["line 4"]
        assert [line.text for line in log.select(since_ns=1_004)] == ["line 4"]
        got: list[str] = []

        async def follow() -> None:
            async for line in log.read(follow=True, tail=1):
                got.append(line.text)

        reader = asyncio.create_task(follow())
        await asyncio.sleep(0.01)
        log.write("stderr", "late", 2_000)
        log.close()
        await asyncio.wait_for(reader, 1)
        assert got == ["line 4", "late"]

    asyncio.run(main())
    store = LogStore(lambda: 7, max_tasks=2)
    for task_id in ("a", "b", "c"):
        store.writer(task_id, "stdout")("x\ny")
    assert store.get("a") is None and [line.text for line in store.log("c").lines] == ["x", "y"]
    assert format_time_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
