"""redis: a key-value server speaking RESP (PING, ECHO, GET, SET, INCR, DEL, EXISTS, KEYS, ...).

Keys live in the task's memory and go with it, as a redis container without a volume loses
them. Errors read as Redis's own ("ERR unknown command 'FOO'..."), so redis-cli and client
libraries behave as they would against a real server. The parser is pure (:func:`parse_command`,
:func:`execute`) so tests feed it bytes without a socket.
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass

from nodeagent.images.base import ImageInfo, ListeningProcess, Process, TaskEnv, image_info

__all__ = ["REDIS", "RedisImage", "RedisServer", "encode", "execute", "parse_command"]

CONTAINER_PORT = 6379

Reply = str | int | bytes | None | list[bytes] | Exception


class _Incomplete(Exception):
    """More bytes are needed before a whole command can be read."""


def parse_command(buf: bytes) -> tuple[list[bytes], int]:
    """One command from ``buf``: (arguments, bytes used). Raises _Incomplete or ValueError.

    Both RESP arrays of bulk strings (what clients send) and inline commands (``PING\\r\\n``,
    what a person typing into telnet sends) are read.
    """
    if not buf:
        raise _Incomplete()
    if buf[:1] != b"*":
        end = buf.find(b"\n")
        if end < 0:
            raise _Incomplete()
        return buf[:end].strip().split(), end + 1
    end = buf.find(b"\r\n")
    if end < 0:
        raise _Incomplete()
    count = int(buf[1:end])
    pos, args = end + 2, []
    for _ in range(count):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete()
        if buf[pos : pos + 1] != b"$":
            raise ValueError("Protocol error: expected '$', got something else")
        size = int(buf[pos + 1 : end])
        start = end + 2
        if len(buf) < start + size + 2:
            raise _Incomplete()
        args.append(buf[start : start + size])
        pos = start + size + 2
    return args, pos


def encode(reply: Reply) -> bytes:
    """A reply in RESP: simple string (str), integer, bulk string (bytes), nil (None), array, error."""
    if isinstance(reply, Exception):
        return b"-" + str(reply).encode() + b"\r\n"
    if isinstance(reply, bool):
        reply = int(reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, str):
        return b"+" + reply.encode() + b"\r\n"
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)
    return b"$%d\r\n" % len(reply) + reply + b"\r\n"


def _wrong_args(name: bytes) -> Exception:
    return Exception(f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}' command")


def execute(data: dict[bytes, bytes], args: list[bytes]) -> Reply:
    """Run one command against ``data``; the reply to send."""
    if not args:
        return Exception("ERR empty command")
    name, rest = args[0].upper(), args[1:]
    arity = {b"PING": (0, 1), b"ECHO": (1, 1), b"GET": (1, 1), b"SET": (2, 5), b"INCR": (1, 1),
             b"DECR": (1, 1), b"INCRBY": (2, 2), b"DEL": (1, 999), b"EXISTS": (1, 999), b"KEYS": (1, 1),
             b"DBSIZE": (0, 0), b"FLUSHALL": (0, 1), b"QUIT": (0, 0), b"COMMAND": (0, 99),
             b"SELECT": (1, 1)}  # fmt: skip
    if name not in arity:
        shown = " ".join(f"'{a.decode(errors='replace')}'" for a in rest[:3])
        command = args[0].decode(errors="replace")
        return Exception(f"ERR unknown command '{command}', with args beginning with: {shown}")
    low, high = arity[name]
    if not low <= len(rest) <= high:
        return _wrong_args(name)
    if name == b"PING":
        return rest[0] if rest else "PONG"
    if name == b"ECHO":
        return rest[0]
    if name == b"GET":
        return data.get(rest[0])
    if name == b"SET":
        options = [o.upper() for o in rest[2:]]
        if (b"NX" in options and rest[0] in data) or (b"XX" in options and rest[0] not in data):
            return None
        data[rest[0]] = rest[1]
        return "OK"
    if name in (b"INCR", b"DECR", b"INCRBY"):
        try:
            step = int(rest[1]) if name == b"INCRBY" else (1 if name == b"INCR" else -1)
            value = int(data.get(rest[0], b"0")) + step
        except ValueError:
            return Exception("ERR value is not an integer or out of range")
        data[rest[0]] = str(value).encode()
        return value
    if name == b"DEL":
        return sum(1 for k in rest if data.pop(k, None) is not None)
    if name == b"EXISTS":
        return sum(1 for k in rest if k in data)
    if name == b"KEYS":
        pattern = rest[0].decode(errors="replace")
        return sorted(k for k in data if fnmatch.fnmatchcase(k.decode(errors="replace"), pattern))
    if name == b"DBSIZE":
        return len(data)
    if name == b"FLUSHALL":
        data.clear()
        return "OK"
    if name == b"COMMAND":
        return []
    return "OK"  # QUIT, SELECT


class RedisServer(ListeningProcess):
    """The server on an ephemeral port of the node's address (container port 6379)."""

    def __init__(self, env: TaskEnv) -> None:
        """An empty keyspace; the port from ``--port N`` in the args, if given."""
        super().__init__(env)
        self.data: dict[bytes, bytes] = {}
        self.container_port = CONTAINER_PORT
        argv = [*env.command, *env.args]
        for i, arg in enumerate(argv):
            if arg == "--port" and i + 1 < len(argv) and argv[i + 1].isdigit():
                self.container_port = int(argv[i + 1])

    async def start(self) -> None:
        """Bind and log Redis's ready line."""
        await self.listen(self.container_port, self._serve)
        self.env.stdout("* Ready to accept connections tcp")

    async def run(self) -> int:
        """Serve until SIGTERM, then say goodbye as Redis does and exit 0."""
        await self.terminated.wait()
        self.env.stdout("# Redis is now ready to exit, bye bye...")
        return 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while buf:
                    try:
                        args, used = parse_command(buf)
                    except _Incomplete:
                        break
                    except ValueError as exc:
                        writer.write(encode(Exception(f"ERR {exc}")))
                        buf = b""
                        break
                    buf = buf[used:]
                    writer.write(encode(execute(self.data, args)))
                    if args and args[0].upper() == b"QUIT":
                        await writer.drain()
                        return
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class RedisImage:
    """redis (any tag)."""

    names: tuple[str, ...] = ("redis",)
    size: int = 117_000_000

    def describe(self, repository: str, tag: str) -> ImageInfo:
        """The image as ``docker image ls`` lists it."""
        return image_info(repository, tag, self.size)

    def process(self, env: TaskEnv) -> Process:
        """A server for one task."""
        return RedisServer(env)


REDIS = RedisImage()
