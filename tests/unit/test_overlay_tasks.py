"""The emulated runtime and the overlay: tasks join when prepared, are published when running (or
healthy), leave when they exit; busybox's wget and nslookup go through the task's network."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Mapping
from typing import Any

import pytest

from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.logs import LogStore

pytestmark = pytest.mark.unit


class FakeNetwork:
    """A task's network: ``web`` is 10.0.1.2 and answers HTTP; 10.0.2.9 has no route."""

    def __init__(self, port: int) -> None:
        self.port = port

    def resolve(self, name: str) -> list[str]:
        return {"web": ["10.0.1.2"], "10.0.2.9": ["10.0.2.9"]}.get(name, [])

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host == "10.0.2.9":
            raise OSError(errno.EHOSTUNREACH, "No route to host")
        if port != 80:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        return await asyncio.open_connection("127.0.0.1", self.port)


class FakeOverlay:
    def __init__(self, port: int) -> None:
        self.calls: list[tuple[str, str]] = []
        self.port = port

    def join(self, task: Mapping[str, Any]) -> FakeNetwork:
        self.calls.append(("join", str(task["ID"])))
        return FakeNetwork(self.port)

    def publish(self, task: Mapping[str, Any], ports: Mapping[int, int]) -> None:
        self.calls.append(("publish", str(task["ID"])))

    def withdraw(self, task_id: str) -> bool:
        self.calls.append(("withdraw", task_id))
        return ("publish", task_id) in self.calls

    def detach(self, task_id: str) -> None:
        self.calls.append(("detach", task_id))


async def _http(path_body: dict[str, bytes]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1].decode()
        body = path_body.get(line)
        status = b"200 OK" if body is not None else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\n\r\n" + (body or b""))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def test_busybox_wget_and_nslookup_go_through_the_tasks_network_with_busybox_words() -> None:
    async def main() -> None:
        server = await _http({"/": b"<p>hello from web</p>\n"})
        overlay = FakeOverlay(server.sockets[0].getsockname()[1])
        logs = LogStore(time.time_ns)
        executor = EmulatedExecutor(node_id="n1", hostname="worker1", listen_host="127.0.0.1", logs=logs,
                                    overlay=overlay)  # fmt: skip
        script = ("wget -qO- http://web/; wget -qO- http://web/missing; wget -qO- http://nosuch/; "
                  "wget -qO- http://10.0.2.9/; wget -q -O - http://web:81/; nslookup web; nslookup nosuch")
        task = {"ID": "c1", "Spec": {"ContainerSpec": {"Image": "busybox", "Command": ["sh", "-c", script]}}}
        controller = executor.controller(task)
        await controller.prepare()
        await controller.start()
        with pytest.raises(Exception, match="exit"):
            await asyncio.wait_for(controller.wait(), 10)  # nslookup nosuch: exit 1
        await controller.remove()
        server.close()
        log = logs.get("c1")
        assert log is not None
        lines = [(line.stream, line.text) for line in log.select()]
        assert ("stdout", "<p>hello from web</p>") in lines
        assert ("stderr", "wget: server returned error: HTTP/1.1 404 Not Found") in lines
        assert ("stderr", "wget: bad address 'nosuch'") in lines
        assert ("stderr", "wget: can't connect to remote host (10.0.2.9): No route to host") in lines
        assert ("stderr", "wget: can't connect to remote host (10.0.1.2): Connection refused") in lines
        out = [text for stream, text in lines if stream == "stdout"]
        assert out[out.index("Non-authoritative answer:") + 1:][:2] == ["Name:\tweb", "Address: 10.0.1.2"]
        assert "** server can't find nosuch: NXDOMAIN" in out
        assert overlay.calls[0] == ("join", "c1") and ("publish", "c1") in overlay.calls
        assert overlay.calls[-1] == ("detach", "c1")

    asyncio.run(main())


def test_a_task_with_a_healthcheck_is_published_only_once_healthy() -> None:
    async def main() -> None:
        overlay = FakeOverlay(0)
        executor = EmulatedExecutor(node_id="n1", hostname="worker1", listen_host="127.0.0.1",
                                    logs=LogStore(time.time_ns), overlay=overlay)  # fmt: skip
        health = {"Test": ["CMD-SHELL", "curl -f http://localhost/"], "Interval": 30_000_000, "Retries": 3}
        task = {"ID": "w1", "Spec": {"ContainerSpec": {"Image": "nginx", "Healthcheck": health}}}
        controller = executor.controller(task)
        await controller.prepare()
        await controller.start()
        assert overlay.calls == [("join", "w1")]  # running, not yet healthy
        waiting = asyncio.create_task(controller.wait())
        deadline = time.monotonic() + 5
        while ("publish", "w1") not in overlay.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ("publish", "w1") in overlay.calls
        await controller.shutdown(grace=0.5)
        await asyncio.wait_for(waiting, 5)
        assert overlay.calls[-1] == ("detach", "w1")

    asyncio.run(main())
