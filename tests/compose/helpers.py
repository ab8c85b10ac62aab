"""Helpers of the compose tests: run `swarmlet` as a user would, and wait for conditions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["status_json", "swarmlet", "wait_for"]


def swarmlet(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `swarmlet` command as a user would, from this tree."""
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args], capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"swarmlet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``probe`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as e:  # a manager may refuse while it restarts: keep asking
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def status_json() -> list[dict[str, Any]]:
    """`swarmlet status --json` as a list of node objects."""
    return list(json.loads(swarmlet("status", "--json", timeout=30).stdout))
