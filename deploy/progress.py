"""The progress `swarmlet up` shows while it works: a line per step, and on a terminal a spinner
line for the step under way.

It replaces rich's Progress on that path: importing rich (console and progress) cost `up` about
0.1 s of CPU before compose started, on the cores the nodes start on. A step's line is printed
once, when it ends (with its elapsed time); on a terminal the step under way is redrawn in place
until then.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TextIO

__all__ = ["Steps"]

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_REDRAW_S = 0.125
"""Seconds between two redraws of the spinner line (terminal only)."""


@dataclass
class _Task:
    description: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Steps:
    """Steps with a description each; ``print`` adds a line of its own.

    Used as a context manager: on leaving, steps not yet ended end with their last words."""

    def __init__(self, out: TextIO | None = None, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self._tasks: list[_Task] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def __enter__(self) -> Steps:
        if self.live:
            self._thread = threading.Thread(target=self._redraw_loop, name="steps", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        for index, task in enumerate(self._tasks):
            if task.ended is None:
                self.finish(index)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._clear()

    def add_task(self, description: str) -> int:
        """A new step, under way from now; its handle."""
        with self._lock:
            self._tasks.append(_Task(description))
            self._draw()
            return len(self._tasks) - 1

    def update(self, task: int, description: str) -> None:
        """New words for a step under way."""
        with self._lock:
            self._tasks[task].description = description
            self._draw()

    def finish(self, task: int, description: str | None = None) -> None:
        """End a step: its line, with its last words and how long it took, is printed once."""
        with self._lock:
            step = self._tasks[task]
            if step.ended is not None:
                return
            step.ended = time.monotonic()
            step.description = description or step.description
            self._clear()
            self.out.write(f"  {step.description}  {_elapsed(step.ended - step.started)}\n")
            self._draw()

    def print(self, line: str) -> None:
        """A line of its own, above the spinner."""
        with self._lock:
            self._clear()
            self.out.write(line + "\n")
            self._draw()

    def _current(self) -> _Task | None:
        return next((t for t in reversed(self._tasks) if t.ended is None), None)

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[2K")
            self._drawn = False
        self.out.flush()

    def _draw(self) -> None:
        task = self._current()
        if not self.live or task is None:
            self.out.flush()
            return
        spent = time.monotonic() - task.started
        frame = _SPINNER[int(spent / _REDRAW_S) % len(_SPINNER)]
        line = f"{frame} {task.description}  {_elapsed(spent)}"
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn in place
        self.out.write("\r\x1b[2K" + line[:width])
        self.out.flush()
        self._drawn = True

    def _redraw_loop(self) -> None:
        while not self._stop.wait(_REDRAW_S):
            with self._lock:
                self._draw()
