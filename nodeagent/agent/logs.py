"""Task logs kept on the node: bounded, in memory, read by tail and since, followed live.

Every line a task's emulated process writes goes into that task's :class:`TaskLog` with the
time it was written. A log keeps its last ``max_lines`` lines, and the node keeps the logs of its
last ``max_tasks`` tasks, so a node running for days holds a bounded amount; older lines are gone
as a rotated json-file log's are. Readers (the ``TaskLogs`` gRPC method) take a snapshot, then,
to follow, a queue that gets each new line until the task's log is closed (it ended) or they
stop reading.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["LogLine", "LogStore", "TaskLog", "format_time_ns"]

MAX_LINES = 1000
"""Lines kept per task."""
MAX_TASKS = 200
"""Tasks whose logs a node keeps (the oldest go first)."""
_FOLLOW_QUEUE = 1000


@dataclass(frozen=True)
class LogLine:
    """One line a task wrote."""

    task_id: str
    stream: str  # "stdout" | "stderr"
    time_ns: int  # Unix nanoseconds
    text: str  # without its newline
    timestamp: str = ""  # RFC 3339 with nanoseconds when the reader asked for timestamps

    def render(self) -> str:
        """The line as ``docker service logs`` prints it: "<timestamp> text" or "text"."""
        return f"{self.timestamp} {self.text}" if self.timestamp else self.text


def format_time_ns(time_ns: int) -> str:
    """RFC 3339 with nine fractional digits, as Docker's log timestamps."""
    import datetime

    seconds, nanos = divmod(time_ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


class TaskLog:
    """One task's lines (the last ``max_lines``) and its live readers."""

    def __init__(self, task_id: str, max_lines: int = MAX_LINES) -> None:
        """An empty, open log."""
        self.task_id = task_id
        self.lines: deque[LogLine] = deque(maxlen=max_lines)
        self.closed = False
        self._readers: list[asyncio.Queue[LogLine | None]] = []

    def write(self, stream: str, text: str, time_ns: int) -> None:
        """Append a line and hand it to every follower (a follower too slow to keep up loses it)."""
        line = LogLine(self.task_id, stream, time_ns, text)
        self.lines.append(line)
        for q in self._readers:
            if q.qsize() < _FOLLOW_QUEUE:
                q.put_nowait(line)

    def close(self) -> None:
        """The task ended: followers finish after the lines they have."""
        self.closed = True
        for q in self._readers:
            q.put_nowait(None)

    def select(self, tail: int = 0, since_ns: int = 0) -> list[LogLine]:
        """The lines written at or after ``since_ns``, the last ``tail`` of them (tail <= 0: all)."""
        picked = [line for line in self.lines if line.time_ns >= since_ns]
        return picked[-tail:] if tail > 0 else picked

    async def read(self, *, follow: bool, tail: int = 0, since_ns: int = 0) -> AsyncIterator[LogLine]:
        """The selected lines, then (with ``follow``) new ones until the log is closed."""
        queue: asyncio.Queue[LogLine | None] | None = None
        if follow and not self.closed:
            queue = asyncio.Queue()
            self._readers.append(queue)
        try:
            for line in self.select(tail, since_ns):
                yield line
            while queue is not None:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            if queue is not None and queue in self._readers:
                self._readers.remove(queue)


class LogStore:
    """The logs of this node's recent tasks."""

    def __init__(self, clock_ns: Callable[[], int], max_tasks: int = MAX_TASKS,
                 max_lines: int = MAX_LINES) -> None:
        """``clock_ns()`` stamps each line (``time.time_ns`` in the agent)."""
        self.clock_ns = clock_ns
        self.max_tasks = max_tasks
        self.max_lines = max_lines
        self._logs: OrderedDict[str, TaskLog] = OrderedDict()

    def log(self, task_id: str) -> TaskLog:
        """The task's log, made on first use (the oldest task's log goes when too many are kept)."""
        found = self._logs.get(task_id)
        if found is None:
            found = TaskLog(task_id, self.max_lines)
            self._logs[task_id] = found
            while len(self._logs) > self.max_tasks:
                _, old = self._logs.popitem(last=False)
                old.close()
        return found

    def get(self, task_id: str) -> TaskLog | None:
        """The task's log if this node has one."""
        return self._logs.get(task_id)

    def writer(self, task_id: str, stream: str) -> Callable[[str], None]:
        """A function that writes one line to the task's ``stream``."""
        log = self.log(task_id)

        def write(text: str) -> None:
            for part in text.splitlines() or [""]:
                log.write(stream, part, self.clock_ns())

        return write
