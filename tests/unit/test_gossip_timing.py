"""Lifeguard and SWIM timeout arithmetic, as tables (values worked out from memberlist's formulas)."""

from __future__ import annotations

import math

import pytest

from nodeagent.gossip.timing import (
    push_pull_scale,
    remaining_suspicion_time,
    retransmit_limit,
    scale_timeout,
    suspicion_confirmations,
    suspicion_timeout,
)


@pytest.mark.parametrize(
    ("mult", "n", "interval", "expected"),
    [
        (4, 1, 1.0, 4.0),  # below 10 nodes the log10 scale is held at 1
        (4, 7, 1.0, 4.0),
        (4, 10, 1.0, 4.0),
        (4, 100, 1.0, 8.0),
        (4, 1000, 1.0, 12.0),  # memberlist's 12 s at 1,000 nodes
        (4, 10000, 1.0, 16.0),
        (3, 7, 0.15, 0.45),  # the emulator default's minimum
        (5, 0, 0.5, 2.5),
    ],
)
def test_suspicion_timeout(mult: int, n: int, interval: float, expected: float) -> None:
    assert suspicion_timeout(mult, n, interval) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mult", "n", "expected"),
    [(4, 1000, 2), (4, 4, 2), (4, 3, 0), (2, 7, 0), (1, 50, 0), (6, 10, 4), (6, 5, 0)],
)
def test_suspicion_confirmations(mult: int, n: int, expected: int) -> None:
    assert suspicion_confirmations(mult, n) == expected


@pytest.mark.parametrize(
    ("n", "k", "elapsed", "min_", "max_", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),  # no confirmation: the full maximum
        (3, 3, 0.0, 2.0, 30.0, 2.0),  # all confirmations: the minimum
        (1, 3, 0.0, 2.0, 30.0, 30.0 - math.log(2) / math.log(4) * 28.0),  # 16.0
        (2, 3, 0.0, 2.0, 30.0, 30.0 - math.log(3) / math.log(4) * 28.0),
        (1, 3, 5.0, 2.0, 30.0, 16.0 - 5.0),  # elapsed time is subtracted
        (3, 3, 25.0, 2.0, 30.0, -23.0),  # overdue: negative
        (5, 3, 0.0, 2.0, 30.0, 2.0),  # more than k never goes below the minimum
        (0, 0, 1.0, 2.0, 30.0, 1.0),  # k = 0: the minimum straight away
        (1, 2, 0.0, 12.0, 72.0, 72.0 - math.log(2) / math.log(3) * 60.0),  # 1,000 nodes, lan()
    ],
)
def test_remaining_suspicion_time(
    n: int, k: int, elapsed: float, min_: float, max_: float, expected: float
) -> None:
    assert remaining_suspicion_time(n, k, elapsed, min_, max_) == pytest.approx(expected)


def test_each_confirmation_shortens_the_timeout() -> None:
    times = [remaining_suspicion_time(n, 5, 0.0, 1.0, 6.0) for n in range(6)]
    assert times == sorted(times, reverse=True) and len(set(times)) == 6


@pytest.mark.parametrize(
    ("mult", "n", "expected"),
    [(4, 1, 4), (4, 7, 4), (4, 9, 4), (4, 10, 8), (4, 30, 8), (4, 1000, 16), (4, 10000, 20), (3, 100, 9)],
)
def test_retransmit_limit(mult: int, n: int, expected: int) -> None:
    assert retransmit_limit(mult, n) == expected


@pytest.mark.parametrize(
    ("interval", "n", "expected"),
    [(30.0, 1, 30.0), (30.0, 32, 30.0), (30.0, 33, 60.0), (30.0, 64, 60.0), (30.0, 65, 90.0),
     (30.0, 1000, 30.0 * 6), (30.0, 10000, 30.0 * 10)],
)
def test_push_pull_scale(interval: float, n: int, expected: float) -> None:
    assert push_pull_scale(interval, n) == pytest.approx(expected)


@pytest.mark.parametrize(("timeout", "health", "expected"), [(0.5, 0, 0.5), (0.5, 1, 1.0), (0.5, 7, 4.0)])
def test_scale_timeout(timeout: float, health: int, expected: float) -> None:
    assert scale_timeout(timeout, health) == pytest.approx(expected)
