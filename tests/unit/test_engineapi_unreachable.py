"""The managers a manager's Engine API shows Unreachable: Raft's view, worked out at most every 10 ms.

``GET /nodes`` asks ``RuntimeManager.unreachable()`` on every request (it is part of the key of
the answer kept between requests); the answer is reused for ``_GONE_FRESH_S`` (scaled by the
time scale), then worked out again from Raft's last contacts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from manager.engineapi import RuntimeManager
from manager.state.store import Store


@dataclass
class _Conf:
    voters: tuple[str, ...] = ("m1", "m2", "m3")
    learners: tuple[str, ...] = ()


@dataclass
class _Node:
    conf: _Conf = field(default_factory=_Conf)


@dataclass
class _Shell:
    """What gone_managers reads of a Raft shell: a leader that heard from some peers."""

    last_contact: dict[str, float]
    is_leader: bool = True
    leader_id: str = "m1"
    node: _Node = field(default_factory=_Node)

    def election_seconds(self) -> float:
        return 1.0


@dataclass
class _Runtime:
    shell: Any
    store: Store = field(default_factory=Store)
    node_id: str = "m1"
    time_scale: float = 1.0
    faults: Any = None


def test_unreachable_is_reused_for_10_ms_then_worked_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    # One clock for the memo (manager.engineapi) and Raft's contacts (manager.controlapi.server).
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    shell = _Shell(last_contact={"m2": 99.9, "m3": 98.0})  # m3 silent for 2 s: gone
    view = RuntimeManager(_Runtime(shell))
    assert view.unreachable() == frozenset({"m3"})
    shell.last_contact["m3"] = 100.0  # m3 answers again
    clock[0] += 0.005
    assert view.unreachable() == frozenset({"m3"})  # within the 10 ms: the same answer
    clock[0] += 0.006
    assert view.unreachable() == frozenset()
    # A new Raft shell (the role restarted) is asked at once, whatever the time.
    view.runtime.shell = _Shell(last_contact={"m2": 50.0, "m3": 100.0})
    assert view.unreachable() == frozenset({"m2"})
    view.runtime.shell = None
    assert view.unreachable() == frozenset()
