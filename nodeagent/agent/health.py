"""Healthchecks: ContainerSpec.Healthcheck run as Docker runs it, against the emulated container.

The test is ``["CMD", argv...]`` or ``["CMD-SHELL", "script"]`` (``["NONE"]`` turns it off). It
runs in the emulated shell (:mod:`nodeagent.images.shell`) with three more commands, the ones
healthchecks use: ``curl``, ``wget`` and ``redis-cli``, which dial the task's own listeners
(``localhost:80`` is the task's port 80, wherever it really listens). Timing as Docker: a check
every Interval (30 s by default), each cut at Timeout (30 s) and counted as failed then; during
StartPeriod a failure does not count; Retries (3) failures in a row make the container
unhealthy, and the task then fails with moby's words, "unhealthy container".

:class:`HealthState` is the pure counting part.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nodeagent.images.base import TaskEnv
from nodeagent.images.shell import Command, run_argv, run_script

__all__ = ["HEALTH_COMMANDS", "HealthConfig", "HealthState", "run_check"]

_NS = 1_000_000_000
_LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")


@dataclass(frozen=True)
class HealthConfig:
    """A healthcheck with Docker's defaults filled in (seconds)."""

    test: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0

    @staticmethod
    def from_spec(spec: Mapping[str, Any] | None, scale: float = 1.0) -> HealthConfig | None:
        """From ContainerSpec.Healthcheck (nanoseconds); None when there is no check to run."""
        if not isinstance(spec, Mapping):
            return None
        test = tuple(str(t) for t in spec.get("Test") or ())
        if not test or test[0] == "NONE" or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
            return None

        def seconds(key: str, default: float) -> float:
            value = spec.get(key)
            return float(value) / _NS * scale if isinstance(value, int) and value > 0 else default * scale

        retries = spec.get("Retries")
        return HealthConfig(
            test=test,
            interval=seconds("Interval", 30.0),
            timeout=seconds("Timeout", 30.0),
            retries=retries if isinstance(retries, int) and retries > 0 else 3,
            start_period=seconds("StartPeriod", 0.0),
        )


@dataclass
class HealthState:
    """Docker's health status: starting -> healthy | unhealthy, from each check's outcome."""

    retries: int
    start_period: float
    status: str = "starting"
    failing_streak: int = 0

    def record(self, ok: bool, since_start: float) -> str:
        """Count one check that ended ``since_start`` seconds after the container started."""
        if ok:
            self.failing_streak = 0
            self.status = "healthy"
        elif since_start < self.start_period and self.status != "healthy":
            pass  # the start period forgives failures until the first success
        else:
            self.failing_streak += 1
            if self.failing_streak >= self.retries:
                self.status = "unhealthy"
        return self.status


async def _connect(env: TaskEnv, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if host in _LOCAL:
        mapped = env.port_for(port)
        if mapped is None:
            raise ConnectionRefusedError(f"nothing listens on port {port}")
        host, port = env.listen_host, mapped
    return await asyncio.open_connection(host, port)


async def _http_get(env: TaskEnv, url: str) -> tuple[int, bytes]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    reader, writer = await _connect(env, parts.hostname or "", parts.port or 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: curl\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = head.split(b" ", 2)
    return (int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0), body


async def _curl(argv: list[str], env: TaskEnv) -> int:
    fail = any(a in ("-f", "--fail") or (a.startswith("-") and not a.startswith("--") and "f" in a)
               for a in argv[1:])  # fmt: skip
    urls = [a for a in argv[1:] if not a.startswith("-")]
    if not urls:
        env.stderr("curl: no URL specified")
        return 2
    try:
        code, _ = await _http_get(env, urls[-1])
    except OSError:
        return 7  # curl: (7) Failed to connect
    return 22 if fail and code >= 400 else 0


async def _wget(argv: list[str], env: TaskEnv) -> int:
    urls = [a for a in argv[1:] if not a.startswith("-") and a != "-"]
    if not urls:
        return 1
    try:
        code, _ = await _http_get(env, urls[-1])
    except OSError:
        env.stderr("wget: can't connect to remote host")
        return 1
    return 1 if code >= 400 or code == 0 else 0


async def _redis_cli(argv: list[str], env: TaskEnv) -> int:
    host, port, i = "127.0.0.1", 6379, 1
    words: list[str] = []
    while i < len(argv):
        if argv[i] == "-h" and i + 1 < len(argv):
            host, i = argv[i + 1], i + 2
        elif argv[i] == "-p" and i + 1 < len(argv) and argv[i + 1].isdigit():
            port, i = int(argv[i + 1]), i + 2
        else:
            words, i = [*words, argv[i]], i + 1
    words = words or ["PING"]
    try:
        reader, writer = await _connect(env, host, port)
    except OSError:
        env.stderr(f"Could not connect to Redis at {host}:{port}: Connection refused")
        return 1
    encoded = [w.encode() for w in words]
    writer.write(b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded))
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    return 1 if reply.startswith(b"-") or not reply else 0


async def _db_ping(env: TaskEnv, host: str, port: int) -> bool:
    """Whether the emulated database at host:port answers PING (nodeagent/images/database.py)."""
    try:
        reader, writer = await _connect(env, host, port)
    except OSError:
        return False
    writer.write(b"PING\n")
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    return reply.strip() == b"PONG"


def _option(argv: list[str], flag: str, default: str) -> str:
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return default


async def _pg_isready(argv: list[str], env: TaskEnv) -> int:
    """pg_isready [-h host] [-p port] [-q]: 0 accepting connections, 2 no response."""
    host, port = _option(argv, "-h", "localhost"), _option(argv, "-p", "5432")
    ok = port.isdigit() and await _db_ping(env, host, int(port))
    if "-q" not in argv:
        env.stdout(f"{host}:{port} - {'accepting connections' if ok else 'no response'}")
    return 0 if ok else 2


async def _mysqladmin(argv: list[str], env: TaskEnv) -> int:
    """mysqladmin ping [-h host] [-P port]: "mysqld is alive", else 1."""
    host, port = _option(argv, "-h", "localhost"), _option(argv, "-P", "3306")
    if port.isdigit() and await _db_ping(env, host, int(port)):
        env.stdout("mysqld is alive")
        return 0
    env.stderr(f"mysqladmin: connect to server at '{host}' failed")
    return 1


HEALTH_COMMANDS: dict[str, Command] = {"curl": _curl, "wget": _wget, "redis-cli": _redis_cli,
                                       "pg_isready": _pg_isready, "mysqladmin": _mysqladmin}  # fmt: skip
"""The commands a healthcheck may call besides the shell's builtins."""


async def run_check(config: HealthConfig, env: TaskEnv) -> bool:
    """Run the test once: True if it exited 0 within the timeout.

    What the test prints goes to the check's own output, never to the task's log (as Docker
    keeps it in the container's health log).
    """
    quiet: list[str] = []
    env = dataclasses.replace(env, stdout=quiet.append, stderr=quiet.append)  # same files and ports
    try:
        if config.test[0] == "CMD-SHELL":
            coro = run_script(config.test[1], env, extra=HEALTH_COMMANDS, stdout=quiet.append)
        else:
            coro = run_argv(list(config.test[1:]), env, extra=HEALTH_COMMANDS, stdout=quiet.append)
        code = await asyncio.wait_for(coro, config.timeout)
    except (TimeoutError, OSError):
        return False
    return code == 0
