"""What `swarmlet metrics` prints of a Prometheus answer: pure (no I/O, no clock).

Prometheus's HTTP API answers a query with a result type and series (``/api/v1/query``,
``/api/v1/query_range``). An instant vector becomes a table, one row per series: a NODE column
(the hostname behind the series' ``instance``, when known), one column per label, and the value
as Prometheus wrote it. A range (a matrix) becomes one small chart per series: a sparkline of
block characters over the range, a gap where the series had no sample, with its minimum,
maximum and last value.

Nodes are found by DNS (deploy/prometheus.yml), so a series' ``instance`` is the node's address
on the cluster network, ``172.x.y.z:9323``; :func:`hostnames` maps it to the node's hostname from
the node's own ``swarmlet_node_info`` series, also for a node no longer scraped (stopped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from deploy.backends.base import natural_key

__all__ = [
    "BLOCKS",
    "HOSTNAMES_QUERY",
    "Series",
    "chart_lines",
    "default_step",
    "format_duration",
    "hostnames",
    "parse_duration",
    "parse_step",
    "series_name",
    "sparkline",
    "vector_table",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
BLOCKS = "▁▂▃▄▅▆▇█"
"""The sparkline's eight levels, lowest first."""

Series = tuple[dict[str, str], list[tuple[float, float]]]
"""A series of a matrix: its labels and its (time, value) samples."""


def parse_duration(text: str) -> float:
    """A Prometheus duration (``5m``, ``1h30m``, ``90s``, ``500ms``) in seconds; ValueError if bad."""
    text = text.strip()
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: use Prometheus's units, e.g. 30s, 5m, 1h30m")
    if total <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    return total


def parse_step(text: str) -> float:
    """``--step``: a duration (``15s``) or a number of seconds (``0.5``, as the API takes it)."""
    try:
        value = float(text)
    except ValueError:
        return parse_duration(text)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"invalid step {text!r}: it must be a positive number of seconds or a duration")
    return value


def format_duration(seconds: float) -> str:
    """Seconds as Prometheus writes a duration: 300 -> ``5m``, 5400 -> ``1h30m``, 0.5 -> ``500ms``."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000),
                       ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def default_step(range_seconds: float, points: int = 60) -> float:
    """A step that gives about ``points`` samples over the range, at least the 1 s scrape interval,
    in whole seconds."""
    return float(max(1, math.ceil(range_seconds / points)))


HOSTNAMES_QUERY = "max by (instance, hostname) (max_over_time(timestamp(swarmlet_node_info)[1h:10s]))"
"""Each (instance, hostname) pair of the last hour, with the time of its latest sample: the
subquery's last step sees the newest sample itself, so the time is exact."""


def hostnames(seen: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """instance -> hostname, from the answer to :data:`HOSTNAMES_QUERY`.

    A node's address can pass to another node (a container that restarts may get another
    address, and its old one can go to the next container): the hostname seen last wins."""
    latest: dict[str, tuple[float, str]] = {}
    for item in seen:
        metric = item.get("metric") or {}
        if "instance" not in metric or "hostname" not in metric:
            continue
        when = _number((item.get("value") or [0, "nan"])[1])
        instance, hostname = str(metric["instance"]), str(metric["hostname"])
        if instance not in latest or when > latest[instance][0]:
            latest[instance] = (when, hostname)
    return {instance: hostname for instance, (_, hostname) in latest.items()}


def _row_key(labels: Mapping[str, str], node: str) -> tuple[object, ...]:
    return (natural_key(node), sorted(labels.items()))


def vector_table(
    result: Sequence[Mapping[str, Any]], names: Mapping[str, str]
) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) for an instant vector: NODE when some series' instance is a known node,
    then NAME (the metric name, when a series has one), the labels in name order, and VALUE."""
    labelled = [(dict(item.get("metric") or {}), item.get("value") or [0, ""]) for item in result]
    keys = sorted({k for labels, _ in labelled for k in labels if k != "__name__"})
    with_node = any(labels.get("instance") in names for labels, _ in labelled)
    with_name = any("__name__" in labels for labels, _ in labelled)
    columns = (["NODE"] if with_node else []) + (["NAME"] if with_name else [])
    columns += [k.upper() for k in keys] + ["VALUE"]
    rows = []
    for labels, value in labelled:
        node = names.get(labels.get("instance", ""), "")
        row = ([node or "-"] if with_node else []) + ([labels.get("__name__", "")] if with_name else [])
        row += [labels.get(k, "") for k in keys] + [str(value[1])]
        rows.append((_row_key(labels, node), row))
    rows.sort(key=lambda r: r[0])
    return columns, [row for _, row in rows]


def series_name(labels: Mapping[str, str]) -> str:
    """A series as PromQL writes it: ``up{instance="172.20.0.3:9323", job="nodes"}``."""
    name = labels.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}" if inner or not name else name


def _number(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


def sparkline(samples: Sequence[tuple[float, float]], start: float, end: float, width: int) -> str:
    """``width`` characters over [start, end]: each the mean of the samples that fall in its slice,
    scaled between the series' minimum and maximum; a space where there is no sample (or only NaN).

    A constant series is drawn full height when positive, lowest when zero or less, so that
    ``up`` at 1 and ``up`` at 0 look like what they are."""
    width = max(1, width)
    span = max(end - start, 1e-9)
    sums = [0.0] * width
    counts = [0] * width
    for t, v in samples:
        if math.isnan(v) or math.isinf(v):
            continue
        i = min(width - 1, max(0, int((t - start) / span * width)))
        sums[i] += v
        counts[i] += 1
    means = [sums[i] / counts[i] if counts[i] else None for i in range(width)]
    present = [m for m in means if m is not None]
    if not present:
        return " " * width
    lo, hi = min(present), max(present)
    top = len(BLOCKS) - 1
    out = []
    for m in means:
        if m is None:
            out.append(" ")
        elif hi == lo:
            out.append(BLOCKS[top] if hi > 0 else BLOCKS[0])
        else:
            out.append(BLOCKS[round((m - lo) / (hi - lo) * top)])
    return "".join(out)


def _short(value: float) -> str:
    """A value for the chart's legend: up to 4 significant digits, as Go's %g would write it."""
    return f"{value:.4g}"


def chart_lines(
    series: Sequence[Mapping[str, Any]], start: float, end: float, width: int, names: Mapping[str, str]
) -> list[str]:
    """The lines of a range chart: per series, its name (and node), then its sparkline with the
    minimum, maximum and last value over the range. Series in node, then label order."""
    parsed = []
    for item in series:
        labels = dict(item.get("metric") or {})
        samples = [(float(t), _number(v)) for t, v in item.get("values") or []]
        parsed.append((labels, samples))
    parsed.sort(key=lambda p: _row_key(p[0], names.get(p[0].get("instance", ""), "")))
    lines = []
    for labels, samples in parsed:
        node = names.get(labels.get("instance", ""))
        lines.append(series_name(labels) + (f"  node {node}" if node else ""))
        finite = [v for _, v in samples if not (math.isnan(v) or math.isinf(v))]
        if finite:
            legend = f"min {_short(min(finite))}  max {_short(max(finite))}  last {_short(samples[-1][1])}"
        else:
            legend = "no finite value"
        lines.append(f"  {sparkline(samples, start, end, width)}  {legend}")
    return lines
