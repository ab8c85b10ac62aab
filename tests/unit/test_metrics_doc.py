"""docs/metrics.md cannot drift: every metric the code registers is in its table, and nothing else.

The code is read, not run: every call of a Prometheus metric constructor in ``nodeagent/`` and
``manager/`` whose first argument names a ``swarmlet_`` or ``swarm_`` metric (an f-string becomes
a pattern), with the type the constructor makes; counters are exposed with ``_total``. A live
registry with the metric classes that build without a cluster then checks the documented types
against what prometheus_client really exposes.
"""

from __future__ import annotations

import ast
import pathlib
import re
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from manager.component.runner import ComponentMetrics
from manager.state.raft.shell import RaftMetrics
from manager.state.store import Store
from manager.swarm_metrics import SwarmManagerMetrics
from nodeagent.looplag import LoopLag
from nodeagent.metrics import FaultMetrics, GossipMetrics, node_info, node_manager

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
_NAME = re.compile(r"^swarm(let)?_[a-z0-9_]+$")
_TYPES = {
    "Counter": "counter", "c": "counter", "CounterMetricFamily": "counter",
    "Gauge": "gauge", "g": "gauge", "GaugeMetricFamily": "gauge",
    "Histogram": "histogram", "HistogramMetricFamily": "histogram",
    "Summary": "summary", "SummaryMetricFamily": "summary",
}  # fmt: skip


def documented() -> dict[str, str]:
    """name -> type, from the rows of the "Every metric" table."""
    text = DOC.read_text()
    section = text.split("## Every metric", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \| (\w+) \|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} is documented twice"
            rows[m.group(1)] = m.group(2)
    return rows


def _exposed(name: str, kind: str) -> str:
    if kind == "counter" and not name.endswith("_total"):
        return name + "_total"
    return name


def registered_in_code() -> tuple[dict[str, str], list[tuple[re.Pattern[str], str, str]]]:
    """Literal names (exposed form) -> type, and f-string patterns with their type and place."""
    names: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], str, str]] = []
    for path in sorted([*ROOT.joinpath("nodeagent").rglob("*.py"), *ROOT.joinpath("manager").rglob("*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            kind = _TYPES.get(fname)
            first = node.args[0]
            if kind is None:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and _NAME.match(first.value):
                names[_exposed(first.value, kind)] = kind
            elif isinstance(first, ast.JoinedStr):
                parts = [re.escape(str(v.value)) if isinstance(v, ast.Constant) else "[a-z0-9_]+"
                         for v in first.values]
                pattern = "".join(parts)
                if pattern.startswith("swarm"):
                    patterns.append((re.compile(f"^{pattern}$"), kind, where))
    return names, patterns


def test_every_registered_metric_is_documented_with_its_type() -> None:
    docs = documented()
    names, patterns = registered_in_code()
    assert len(names) > 30, "the scan found too few metrics: has the code's shape changed?"
    missing = sorted(set(names) - set(docs))
    assert not missing, f"registered but not in docs/metrics.md: {missing}"
    wrong = {n: (docs[n], k) for n, k in names.items() if docs[n] != k}
    assert not wrong, f"documented type differs from the code's (doc, code): {wrong}"
    for pattern, kind, where in patterns:
        matched = [n for n in docs if pattern.match(n)]
        assert matched, f"{where}: no documented metric matches {pattern.pattern}"
        assert all(docs[n] == kind for n in matched), f"{where}: {matched} are not all {kind}s"


def test_nothing_is_documented_that_the_code_does_not_register() -> None:
    names, patterns = registered_in_code()
    extra = [n for n in documented() if n not in names and not any(p.match(n) for p, _, _ in patterns)]
    assert not extra, f"in docs/metrics.md but registered nowhere: {extra}"


def test_documented_types_are_what_the_registry_exposes() -> None:
    registry = CollectorRegistry()
    node_info(registry, node_id="n", hostname="h", role="manager", version="0")
    node_manager(registry, "manager")
    GossipMetrics(registry)
    FaultMetrics(registry)
    LoopLag(registry)
    RaftMetrics(registry)
    ComponentMetrics(registry)
    registry.register(SwarmManagerMetrics(SimpleNamespace(store=Store(), shell=None)))
    docs = documented()
    seen = {}
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        seen[name] = family.type
    assert len(seen) > 25
    for name, kind in seen.items():
        assert docs.get(name) == kind, f"{name}: the registry exposes a {kind}, the doc says {docs.get(name)}"
