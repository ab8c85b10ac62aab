"""The event loop's stalls: measured in swarmlet_event_loop_lag_seconds, the long ones logged."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from prometheus_client import CollectorRegistry

from nodeagent.looplag import LoopLag


def _count(registry: CollectorRegistry, le: str) -> float:
    value = registry.get_sample_value("swarmlet_event_loop_lag_seconds_bucket", {"le": le})
    assert value is not None
    return value


def test_a_stall_of_the_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval=0.01, warn_after=0.1)

    async def scenario() -> None:
        watching = asyncio.create_task(lag.run())
        await asyncio.sleep(0.1)  # a loop that keeps up
        time.sleep(0.3)  # synchronous work: nothing else on the loop runs meanwhile
        await asyncio.sleep(0.05)
        watching.cancel()

    with caplog.at_level(logging.WARNING, logger="nodeagent.looplag"):
        asyncio.run(scenario())
    assert lag.longest >= 0.2  # the stall, less at most one interval
    total = registry.get_sample_value("swarmlet_event_loop_lag_seconds_count")
    assert total is not None and total >= 5
    assert total - _count(registry, "0.1") >= 1  # the timer the stall delayed
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # one line per quiet period
    assert re.match(r"the event loop was held for \d+\.\d\d s: gossip, Raft and the APIs", warnings[0])


def test_warnings_come_at_most_once_per_quiet_period_and_count_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    lag = LoopLag(CollectorRegistry(), warn_after=0.2, quiet_for=10.0)
    with caplog.at_level(logging.WARNING, logger="nodeagent.looplag"):
        lag.observe(0.5, now=100.0)  # logged
        lag.observe(0.1, now=101.0)  # short: not a stall worth a line
        lag.observe(0.4, now=102.0)  # within the quiet period: counted, not logged
        lag.observe(0.3, now=103.0)
        lag.observe(0.25, now=111.0)  # logged, standing for the two before it
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "held for 0.50 s" in lines[0] and "more" not in lines[0]
    assert "held for 0.25 s" in lines[1]
    assert lines[1].endswith("(2 more such stall(s) since the last warning)")
    assert lag.longest == 0.5


def test_without_warn_after_stalls_are_measured_only(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, warn_after=None)  # the agent's start
    with caplog.at_level(logging.WARNING, logger="nodeagent.looplag"):
        lag.observe(0.9, now=1.0)
        lag.warn_after = 0.2  # the node is ready
        lag.observe(0.3, now=2.0)
    assert [r.getMessage()[:35] for r in caplog.records] == ["the event loop was held for 0.30 s:"]
    assert registry.get_sample_value("swarmlet_event_loop_lag_seconds_count") == 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval > 0"):
        LoopLag(CollectorRegistry(), interval=0)
