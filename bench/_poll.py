"""What the compose benchmarks share: timing how long until a probe of the cluster says yes.

Imported by the scripts in this folder (``python bench/NAME.py`` puts the folder on sys.path).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["seconds_until"]


def seconds_until(probe: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Call ``probe`` every ``interval`` s until it returns something true; the seconds that took.

    A probe that raises counts as "not yet" (a manager may be restarting, busy or electing);
    ``TimeoutError`` after ``timeout`` s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if probe():
                return time.monotonic() - start
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"not within {timeout} s")
