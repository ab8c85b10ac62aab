"""busybox's ``wget`` and ``nslookup`` for a task's own commands, through the node's overlay.

``wget -qO- http://web/`` resolves ``web`` with the node's embedded DNS (on the task's networks
only), connects over the overlay (to the VIP, balanced, or to a task address) and prints the body;
``nslookup web`` prints what the DNS answers, as busybox prints it. ``localhost`` is the task's own
listeners. Errors use busybox's words ("wget: bad address 'x'", "wget: can't connect to remote
host (10.0.2.3): No route to host", "wget: server returned error: HTTP/1.1 404 Not Found"), exit 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from nodeagent.images.base import TaskEnv

__all__ = ["NET_COMMANDS"]

_LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
_DNS_SERVER = "127.0.0.11"  # Docker's embedded DNS, as a container's resolv.conf names it


async def _open(env: TaskEnv, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if host in _LOCAL:
        mapped = env.port_for(port)
        if mapped is None:
            raise ConnectionRefusedError(111, "Connection refused")
        return await asyncio.open_connection(env.listen_host, mapped)
    if env.network is None:
        raise OSError(101, "Network is unreachable")
    return await env.network.connect(host, port)


def _resolve(env: TaskEnv, host: str) -> list[str]:
    if host in _LOCAL:
        return ["127.0.0.1"]
    return env.network.resolve(host) if env.network is not None else []


async def _wget(argv: list[str], env: TaskEnv) -> int:
    quiet, to_stdout, url, timeout = False, False, "", 30.0
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and not a.startswith("--") and len(a) > 1:
            flags = a[1:]
            quiet = quiet or "q" in flags
            if "O" in flags:
                value = flags.split("O", 1)[1] or (args[i + 1] if i + 1 < len(args) else "")
                to_stdout = value == "-"
                if not flags.split("O", 1)[1]:
                    i += 1
            if "T" in flags and i + 1 < len(args):
                timeout = float(args[i + 1])
                i += 1
        elif not a.startswith("-"):
            url = a
        i += 1
    if not url:
        env.stderr("BusyBox v1.36.1 multi-call binary.\n\nUsage: wget [-cqS] [-O FILE] URL")
        return 1
    parts = urlsplit(url if "://" in url else "http://" + url)
    host, port = parts.hostname or "", parts.port or 80
    addrs = _resolve(env, host)
    if not addrs:
        env.stderr(f"wget: bad address '{host}'")
        return 1
    if not quiet:
        env.stderr(f"Connecting to {parts.netloc} ({addrs[0]}:{port})")
    try:
        reader, writer = await asyncio.wait_for(_open(env, host, port), timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: Wget\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except TimeoutError:
        env.stderr("wget: download timed out")
        return 1
    except OSError as exc:
        env.stderr(f"wget: can't connect to remote host ({addrs[0]}): {exc.strerror or exc}")
        return 1
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    fields = status.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) >= 400:
        env.stderr(f"wget: server returned error: {status}")
        return 1
    if to_stdout:
        for line in body.decode(errors="replace").splitlines():
            env.stdout(line)
    elif not quiet:
        env.stderr("saving to 'index.html'")
        env.stderr(f"index.html           100% |********************************| {len(body)}  0:00:00 ETA")
        env.stderr("'index.html' saved")
    return 0


async def _nslookup(argv: list[str], env: TaskEnv) -> int:
    names = [a for a in argv[1:] if not a.startswith("-")]
    if not names:
        env.stderr("Usage: nslookup [-type=QUERY_TYPE] [-debug] HOST [DNS_SERVER]")
        return 1
    name = names[0]
    env.stdout(f"Server:\t\t{_DNS_SERVER}")
    env.stdout(f"Address:\t{_DNS_SERVER}:53")
    env.stdout("")
    addrs = _resolve(env, name)
    if not addrs:
        env.stdout(f"** server can't find {name}: NXDOMAIN")
        env.stdout("")
        return 1
    env.stdout("Non-authoritative answer:")
    for addr in addrs:
        env.stdout(f"Name:\t{name}")
        env.stdout(f"Address: {addr}")
    env.stdout("")
    return 0


NET_COMMANDS: dict[str, Callable[[list[str], TaskEnv], Awaitable[int]]] = {
    "wget": _wget, "nslookup": _nslookup,
}
"""The commands a task's own shell gets on top of busybox's builtins."""
