"""``swarmlet metrics 'PROMQL' [--range 5m] [--step S]``: ask the cluster's Prometheus.

Without ``--range``, an instant query (``/api/v1/query``): a vector is printed as a table (a
NODE column, a column per label, the value). With ``--range``, a range query over the last
DURATION (``/api/v1/query_range``), one sparkline per series. A query that is itself a range
(``up[1m]``) is drawn as a chart too. A query Prometheus refuses prints Prometheus's own error,
as its UI does; a cluster without a running Prometheus says so. Rendering is deploy/promql.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from deploy import promql
from deploy.addresses import prometheus_url as promql_url
from deploy.backends.base import read_state
from deploy.commands.status import console, error

__all__ = ["NOT_UP", "PrometheusError", "add_arguments", "query", "run"]

NOT_UP = "Prometheus is not up"
"""The start of the message when no Prometheus answers."""
_TIMEOUT = 10.0


class PrometheusError(Exception):
    """Prometheus refused the query; ``str(e)`` is its own text (``1:4: parse error: ...``)."""


class PrometheusDown(Exception):
    """Nothing answered at Prometheus's address."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet metrics``."""
    parser.add_argument("query", metavar="PROMQL", help="a PromQL expression, e.g. 'up' or "
                        "'sum by (state) (swarmlet_tasks)'")
    parser.add_argument("--range", metavar="DURATION", default=None,
                        help="a range query over the last DURATION (e.g. 30s, 5m, 1h), drawn as a chart")
    parser.add_argument("--step", metavar="STEP", default=None,
                        help="with --range: seconds between points, as a duration or a number "
                             "(default: about 60 points)")


def query(base: str, path: str, params: Mapping[str, str], timeout: float = _TIMEOUT) -> dict[str, Any]:
    """POST a query to Prometheus's HTTP API; its ``data`` on success.

    Raises :class:`PrometheusError` with Prometheus's own message when it refuses the query, and
    :class:`PrometheusDown` when nothing answers."""
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        try:
            payload = json.loads(e.read())
        except ValueError:
            raise PrometheusError(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PrometheusDown(f"{NOT_UP} at {base}: {reason}") from None
    except ValueError as e:
        raise PrometheusError(f"not a Prometheus answer: {e}") from None
    if payload.get("status") != "success":
        raise PrometheusError(str(payload.get("error") or payload))
    data = payload.get("data")
    return data if isinstance(data, dict) else {}


def _names(base: str) -> dict[str, str]:
    """instance -> hostname from the nodes' own swarmlet_node_info (empty if that fails)."""
    try:
        seen = query(base, "/api/v1/query", {"query": promql.HOSTNAMES_QUERY}).get("result") or []
    except (PrometheusError, PrometheusDown):
        return {}
    return promql.hostnames(seen)


def _base_url() -> str:
    """Where this cluster's Prometheus answers, from the state `swarmlet up` recorded: its block's
    Prometheus address. No docker call: a DOCKER_HOST pointing at a node does not get in the way."""
    state = read_state()
    layout = state.layout if state is not None else None
    if state is None or layout is None:
        raise PrometheusDown(f"{NOT_UP}: no cluster is up (`swarmlet up` starts one, with its Prometheus)")
    if state.backend != "compose":
        raise PrometheusDown(f"{NOT_UP}: the {state.backend} backend runs no Prometheus (each node's "
                             "/metrics answers on port 9323 of its address: `swarmlet up` lists them)")
    return promql_url(layout.block)


def _print_chart(result: list[Any], start: float, end: float, step: float | None, query_text: str,
                 base: str) -> None:
    out = console()
    width = max(10, min(120, (shutil.get_terminal_size((100, 24)).columns if out.is_terminal else 100) - 34))
    stamp = time.strftime("%H:%M:%S", time.localtime(start)), time.strftime("%H:%M:%S", time.localtime(end))
    spacing = f", step {promql.format_duration(step)}" if step else ""
    out.print(f"{query_text}: {len(result)} series, {stamp[0]} to {stamp[1]} "
              f"({promql.format_duration(end - start)}{spacing})", markup=False)
    # No wider than the points in the range, so that every character can have a sample to show.
    points = int((end - start) / step) + 1 if step else max(len(item.get("values") or []) for item in result)
    width = min(width, max(points, 1))
    for line in promql.chart_lines(result, start, end, width, _names(base)):
        out.print(line, markup=False)


def run(args: argparse.Namespace) -> int:
    """Query the cluster's Prometheus and print the answer; exit 1 on an error."""
    try:
        span = promql.parse_duration(args.range) if args.range is not None else None
        step = promql.parse_step(args.step) if args.step is not None else None
    except ValueError as e:
        return error(str(e))
    if step is not None and span is None:
        return error("--step goes with --range (an instant query has no step)")
    if not args.query.strip():
        return error("the query is empty: give a PromQL expression, e.g. 'up'")
    if span is not None:
        step = step or promql.default_step(span)
        if span / step > 11000:  # Prometheus's own limit on points per series
            return error(f"--step {promql.format_duration(step)} over {promql.format_duration(span)} "
                         "is more than 11,000 points per series: choose a larger --step")
    try:
        base = _base_url()
        if span is not None and step is not None:
            end = time.time()
            start = end - span
            data = query(base, "/api/v1/query_range", {"query": args.query, "start": f"{start:.3f}",
                                                        "end": f"{end:.3f}", "step": f"{step:g}"})
            result = data.get("result") or []
            if not result:
                console().print("Empty query result")
                return 0
            _print_chart(result, start, end, step, args.query, base)
            return 0
        data = query(base, "/api/v1/query", {"query": args.query})
    except PrometheusError as e:
        return error(f"Error executing query: {e}")
    except PrometheusDown as e:
        return error(str(e))
    kind = data.get("resultType")
    result = data.get("result")
    out = console()
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        out.print(str(result[1]), markup=False)
        return 0
    if not result:
        out.print("Empty query result")
        return 0
    if kind == "matrix":
        times = [float(t) for item in result for t, _ in item.get("values") or []]
        start, end = (min(times), max(times)) if times else (0.0, 1.0)
        _print_chart(result, start, end, None, args.query, base)
        return 0
    columns, rows = promql.vector_table(result, _names(base))
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 3, 0, 0))
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    return 0
