"""What a test does when something it needs is missing: skip outside CI, fail under CI=true.

On a developer's machine a missing Docker engine (or compose plugin, or image) is a reason to
skip the compose tests, and pytest's summary says which. On CI machines of this project's kind
there is always an engine, so a skip there would only hide a broken set-up behind a green run:
with CI=true (as CI services set it) the same tests fail instead, naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import pytest

__all__ = ["in_ci", "need", "verdict"]

_TRUE = ("true", "1", "yes")


def in_ci(env: Mapping[str, str] | None = None) -> bool:
    """Whether CI is set to true (also 1 or yes, in any case) in ``env`` (default: os.environ)."""
    value = (os.environ if env is None else env).get("CI", "")
    return value.strip().lower() in _TRUE


def verdict(problem: str, env: Mapping[str, str] | None = None) -> tuple[Literal["skip", "fail"], str]:
    """What to do about a missing ``problem`` (a one-line reason): ("skip" or "fail", the message)."""
    if in_ci(env):
        return "fail", f"CI=true, so this test may not skip; it cannot run: {problem}"
    return "skip", problem


def need(problem: str | None) -> None:
    """Nothing if ``problem`` is None; else skip with it as the reason, or fail under CI=true."""
    if problem is None:
        return
    action, message = verdict(problem)
    if action == "fail":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
