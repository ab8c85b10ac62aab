"""``GET /services/{id}/logs`` and ``/tasks/{id}/logs``: the tasks' output, in Docker's stream framing.

A task's log lines live on the node that ran it; a :class:`TaskLogSource` fetches them (the
agent's side is its own piece of work; tests use a fake). This module merges the tasks' lines
and writes them as moby's ``WriteLogStream`` does:

* multiplexed (unless the service's ContainerSpec has TTY): each write is an 8-byte header,
  the stream (1 stdout, 2 stderr, 3 the daemon's own errors), three zero bytes and the length
  as a big-endian uint32, then the bytes;
* with ``details``, the line starts with the attributes, sorted by key, URL-escaped,
  ``key=value`` joined by commas, then a space. The CLI reads ``com.docker.swarm.node.id``,
  ``.service.id`` and ``.task.id`` from them to print ``web.1.ab12cd34ef56@node1    | `` (so
  ``docker service logs`` always asks for details);
* with ``timestamps``, the line starts with the time in RFC 3339 with nine fraction digits.

A task that cannot be read (its node is gone) is a line ``Error grabbing logs: ...`` on stream 3,
written after every other task's lines: the docker CLI stops reading at the first stream-3 frame,
and Swarm's log broker too reports the nodes it could not reach once the others are done. A task
its (reachable) node keeps no log for (the agent restarted since, or dropped it) has no lines and
no error, as a container that is gone has no logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote_plus

from aiohttp import web

from nodeagent.engineapi import ApiError

__all__ = [
    "AgentLogSource",
    "LogLine",
    "LogQuery",
    "LogTarget",
    "NoLogSource",
    "TaskLogSource",
    "detail_prefix",
    "frame",
    "parse_log_query",
    "stream_logs",
]

STDOUT, STDERR, SYSERR = 1, 2, 3
_CONTEXT = "com.docker.swarm"


@dataclass(frozen=True)
class LogLine:
    """One line a task wrote: its bytes (newline included), stream and time."""

    data: bytes
    stream: str = "stdout"  # or "stderr"
    timestamp: float = 0.0  # seconds since the epoch
    attrs: tuple[tuple[str, str], ...] = field(default=())  # the log driver's own attributes


class TaskLogSource(Protocol):
    """Where a task's log lines come from: the node that runs (or ran) it."""

    def task_logs(
        self, node_id: str, task_id: str, *, follow: bool, tail: int | None, since: float | None,
        timestamps: bool,
    ) -> AsyncIterator[LogLine]:
        """The task's lines, oldest first; with ``follow``, then new ones until cancelled."""
        ...


class NoLogSource:
    """No agent can be asked yet: every task's logs are an error line, as for an unreachable node."""

    def task_logs(
        self, node_id: str, task_id: str, *, follow: bool, tail: int | None, since: float | None,
        timestamps: bool,
    ) -> AsyncIterator[LogLine]:
        """Raise at once: swarmlet's agents do not serve logs yet."""
        return self._none(node_id)

    async def _none(self, node_id: str) -> AsyncIterator[LogLine]:
        raise ConnectionError(f"swarmlet cannot fetch task logs from node {node_id} yet")
        yield LogLine(b"")  # pragma: no cover - makes this an async generator


class Membership(Protocol):
    """What the log source needs of gossip: the members, each with a name and an address."""

    def members(self) -> Sequence[object]:
        """Every member this node knows of."""
        ...


class AgentLogSource:
    """Task logs from the agents: each node serves its tasks' lines on its gossip port.

    The node's address comes from this manager's gossip membership, so a node that gossip
    considers gone is "unreachable" here too, as a real Swarm cannot reach a lost node's logs.
    """

    def __init__(self, gossip: Membership) -> None:
        """``gossip`` is the node's membership (``members()``)."""
        self.gossip = gossip

    def task_logs(
        self, node_id: str, task_id: str, *, follow: bool, tail: int | None, since: float | None,
        timestamps: bool,
    ) -> AsyncIterator[LogLine]:
        """The task's lines from its node, converted to the route's :class:`LogLine`."""
        return self._lines(node_id, task_id, follow=follow, tail=tail, since=since)

    async def _lines(
        self, node_id: str, task_id: str, *, follow: bool, tail: int | None, since: float | None
    ) -> AsyncIterator[LogLine]:
        from nodeagent.agent.taskservice import node_gossip_address, task_logs

        address = node_gossip_address(self.gossip, node_id)
        if address is None:
            raise ConnectionError(f"node {node_id} is not reachable")
        since_ns = round(since * 1e9) if since else 0
        async for line in task_logs(address, task_id, follow=follow, tail=tail or 0, since_ns=since_ns):
            yield LogLine((line.text + "\n").encode(), line.stream, line.time_ns / 1e9)


@dataclass(frozen=True)
class LogQuery:
    """The query of a logs request, read as moby reads it."""

    follow: bool = False
    tail: int | None = None  # None: all
    since: float | None = None
    timestamps: bool = False
    details: bool = False
    stdout: bool = False
    stderr: bool = False


@dataclass(frozen=True)
class LogTarget:
    """One task whose logs are wanted, with the IDs its lines are labelled with."""

    task_id: str
    node_id: str
    service_id: str


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").strip().lower()
    return value not in ("", "0", "no", "false", "none")


def parse_log_query(request: web.Request) -> LogQuery:
    """``follow``, ``tail`` (a number or ``all``), ``since``, ``timestamps``, ``details``, streams."""
    raw_tail = request.query.get("tail", "all").strip()
    tail: int | None = None
    if raw_tail not in ("", "all"):
        try:
            tail = int(raw_tail)
        except ValueError:
            tail = None  # moby: anything but a number means all
        if tail is not None and tail < 0:
            tail = None
    since: float | None = None
    raw_since = request.query.get("since", "").strip()
    if raw_since and raw_since != "0":
        try:
            since = float(raw_since)
        except ValueError:
            reason = f'strconv.ParseInt: parsing "{raw_since}": invalid syntax'
            raise ApiError.bad_request(f'parsing time "{raw_since}": {reason}') from None
    query = LogQuery(
        follow=_flag(request, "follow"), tail=tail, since=since, timestamps=_flag(request, "timestamps"),
        details=_flag(request, "details"), stdout=_flag(request, "stdout"), stderr=_flag(request, "stderr"),
    )
    if not (query.stdout or query.stderr):
        # moby's router returns a plain error here (no errdefs kind): Docker answers it 500.
        raise ApiError(500, "Bad parameters: you must choose at least one stream")
    return query


def frame(stream: int, data: bytes) -> bytes:
    """One write in Docker's multiplexed framing (stdcopy): 8-byte header, then ``data``."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def detail_prefix(attrs: Sequence[tuple[str, str]]) -> bytes:
    """The ``details`` attributes as moby writes them: sorted, escaped, comma-joined."""
    pairs = sorted(attrs, key=lambda kv: kv[0])
    return ",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()


def _rfc3339_nano(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    nanos = round((ts - int(ts)) * 1e9) % 1_000_000_000
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def render_line(line: LogLine, target: LogTarget, query: LogQuery) -> bytes:
    """The bytes of one line as the daemon writes them (before framing)."""
    data = line.data
    if query.details:
        attrs = [*line.attrs, (f"{_CONTEXT}.node.id", target.node_id),
                 (f"{_CONTEXT}.service.id", target.service_id), (f"{_CONTEXT}.task.id", target.task_id)]
        data = detail_prefix(attrs) + b" " + data
    if query.timestamps:
        data = _rfc3339_nano(line.timestamp).encode() + b" " + data
    return data


async def stream_logs(request: web.Request, source: TaskLogSource, targets: Sequence[LogTarget],
                      query: LogQuery, *, tty: bool) -> web.StreamResponse:
    """Answer 200 and write every target's lines as they come, merged; end when all have ended."""
    content_type = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await response.prepare(request)
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=1024)
    errors: list[bytes] = []

    async def pump(target: LogTarget) -> None:
        try:
            async for line in source.task_logs(target.node_id, target.task_id, follow=query.follow,
                                               tail=query.tail, since=query.since,
                                               timestamps=query.timestamps):
                wanted = query.stderr if line.stream == "stderr" else query.stdout
                if wanted:
                    stream = STDERR if line.stream == "stderr" else STDOUT
                    await queue.put((stream, render_line(line, target, query)))
        except LookupError:
            pass  # the node answers but keeps no log for the task: nothing to show
        except Exception as exc:  # one node failing must not end the others' logs
            errors.append(f"Error grabbing logs: {exc}\n".encode())
        finally:
            await queue.put(None)

    pumps = [asyncio.create_task(pump(t)) for t in targets]
    try:
        remaining = len(pumps)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            stream, data = item
            await response.write(data if tty else frame(stream, data))
        for data in errors:
            await response.write(data if tty else frame(SYSERR, data))
    finally:
        for task in pumps:
            task.cancel()
        for task in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await response.write_eof()
    return response
