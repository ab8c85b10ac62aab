"""Pure timeout arithmetic for SWIM and Lifeguard, after memberlist's util.go and suspicion.go.

Every function here is a plain formula with a table test; times are seconds.
"""

from __future__ import annotations

import math

__all__ = [
    "push_pull_scale",
    "remaining_suspicion_time",
    "retransmit_limit",
    "scale_timeout",
    "suspicion_confirmations",
    "suspicion_timeout",
]

# memberlist stops stretching the push-pull interval below this many nodes.
_PUSH_PULL_SCALE_THRESHOLD = 32


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """The least time a suspect is given before it is declared dead.

    ``mult * max(1, log10(n)) * interval``: a larger cluster takes longer to spread a refutation,
    so the timeout grows with the logarithm of its size (but never below ``mult`` intervals).
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return mult * node_scale * interval


def suspicion_confirmations(mult: int, n: int) -> int:
    """How many independent confirmations bring a suspicion down to its minimum timeout.

    ``mult - 2``, or 0 when the cluster is too small to supply that many other accusers
    (every member but the suspect and ourselves).
    """
    k = mult - 2
    if n - 2 < k:
        return 0
    return max(0, k)


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_: float, max_: float) -> float:
    """Lifeguard's dynamic suspicion timeout, minus the time already spent suspecting.

    With ``n`` of the ``k`` wanted independent confirmations in hand, the timeout falls from
    ``max_`` towards ``min_`` along ``log(n + 1) / log(k + 1)``: the first confirmations count the
    most, because each is evidence from a node that probed on its own. The result may be negative
    (the timeout has passed).
    """
    if k < 1:
        return min_ - elapsed
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_ - frac * (max_ - min_)
    timeout = max(raw, min_)
    return timeout - elapsed


def retransmit_limit(mult: int, n: int) -> int:
    """How many times each gossiped message is sent: ``mult * ceil(log10(n + 1))``.

    Order log N transmissions per node are enough for an epidemic to reach every node with high
    probability, and keep the cost per message bounded.
    """
    node_scale = math.ceil(math.log10(n + 1.0))
    return mult * node_scale


def push_pull_scale(interval: float, n: int) -> float:
    """The push-pull interval stretched for large clusters (memberlist's pushPullScale).

    Up to 32 nodes the interval stands; above, it grows by one interval for every doubling, so
    the total full-state traffic grows as N log N rather than N squared.
    """
    if n <= _PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1.0
    return interval * multiplier


def scale_timeout(timeout: float, health: int) -> float:
    """A timeout stretched by Lifeguard's local health score: ``timeout * (health + 1)``.

    A node that misses acks may be the slow one; waiting longer stops it from accusing others.
    """
    return timeout * (health + 1)
