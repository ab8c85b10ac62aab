"""``swarmlet explain`` against a real Swarm's answers: the objects a real Swarm returned (nodes,
tasks, and its pending tasks) read back as store objects give the very summary that Swarm wrote
into each pending task's Status.Err, and each node's line names the filter and the fix."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from deploy.commands.explain import _pick, from_api
from manager.scheduler.explain import explain

REF = pathlib.Path(__file__).parent / "engineapi_ref"


def _load(name: str) -> Any:
    return json.loads((REF / name).read_text())


@pytest.mark.parametrize(
    ("recorded", "filter_name", "fix_words"),
    [
        ("task-pending-constraint.json", "constraints", "docker node update --label-add"),
        ("task-pending-bigcpu.json", "resources", "CPU"),
        ("task-pending-bigmem.json", "resources", "memory"),
    ],
)
def test_explain_gives_swarms_own_reason_for_recorded_pending_tasks(
    recorded: str, filter_name: str, fix_words: str
) -> None:
    nodes = [from_api("node", n) for n in _load("nodes.json")]
    tasks = [from_api("task", t) for t in _load("tasks.json")]
    pending = _load(recorded)
    report = explain(from_api("task", pending), nodes, tasks, {})
    assert report.err == pending["Status"]["Err"]
    (node,) = report.nodes
    assert node.charged_to == filter_name
    failed = [c for c in node.checks if not c.passed]
    assert failed and fix_words.lower() in failed[0].fix.lower()
    assert "Swarm says: " + pending["Status"]["Err"] in report.render()


def test_from_api_keeps_the_other_fields_as_extra() -> None:
    task = from_api("task", _load("task-running.json"))
    assert task.id == "7zftjdzyutd7c55n7gyzbqqp0" and task.version == 538
    assert task.extra["DesiredState"] == "running" and task.extra["Slot"] == 1
    assert task.status["State"] == "running" and "ContainerSpec" in task.spec


def test_pick_finds_services_by_name_or_prefix_and_tasks_by_prefix() -> None:
    web = from_api("service", {"ID": "abc123", "Spec": {"Name": "web"}})
    api = from_api("service", {"ID": "abd456", "Spec": {"Name": "api"}})
    task = from_api("task", {"ID": "xyz789", "Spec": {}})
    assert _pick("web", [web, api], [task]) is web
    assert _pick("abd", [web, api], [task]) is api
    assert _pick("xy", [web, api], [task]) is task
    assert _pick("ab", [web, api], [task]) == "service prefix ab is ambiguous: abc123, abd456"
    assert _pick("nope", [web, api], [task]) == "no such service or task: nope"
