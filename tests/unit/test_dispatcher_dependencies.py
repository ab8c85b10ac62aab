"""Secrets and configs in the assignments core: each goes to a node only while a task there uses it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from manager.dispatcher.assignments import NodeAssignments, payload_api, task_dependencies
from manager.dispatcher.tasks import _lookup, _to_pb
from manager.state.store import Create, Delete, Op, Store, Update, encode_batch
from manager.state.store.objects import StoredObject

pytestmark = pytest.mark.unit

T0 = "2026-11-29T00:40:00Z"


def run(store: Store, ops: list[Op]) -> None:
    result = store.apply(store.applied_index + 1, encode_batch(ops, now=T0))
    assert result.ok, result.error
    store.notify_watches()


def secret(secret_id: str, name: str, data: bytes, **spec: Any) -> Create:
    return Create(secret_id.split("-")[0], secret_id, {"Name": name, "Labels": {}, **spec,
                                                       "Data": base64.b64encode(data).decode()})  # fmt: skip


def task(
    task_id: str,
    node: str,
    state: str,
    secrets: tuple[str, ...] = (),
    configs: tuple[str, ...] = (),
    desired: str = "running",
) -> Create:
    container: dict[str, Any] = {"Image": "postgres:16"}
    if secrets:
        container["Secrets"] = [
            {"SecretID": s, "SecretName": s, "File": {"Name": s, "UID": "0", "GID": "0", "Mode": 292}}
            for s in secrets
        ]
    if configs:
        container["Configs"] = [
            {"ConfigID": c, "ConfigName": c, "File": {"Name": "/etc/" + c, "UID": "0", "GID": "0"}}
            for c in configs
        ]
    return Create("task", task_id, {"ContainerSpec": container}, {"State": state},
                  {"NodeID": node, "DesiredState": desired, "ServiceID": "s1", "Slot": 1})  # fmt: skip


def lines(changes: Any) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.id) for c in changes]


def setup() -> Store:
    store = Store()
    run(store, [secret("secret-a", "db_pass", b"s3cret"), secret("secret-b", "api_key", b"k"),
                secret("config-c", "app.conf", b"x=1", Templating={"Name": "golang"})])  # fmt: skip
    return store


def test_a_tasks_references_are_its_dependencies_in_order() -> None:
    store = setup()
    run(
        store,
        [task("t1", "A", "assigned", secrets=("secret-a", "secret-b", "secret-a"), configs=("config-c",))],
    )
    assert task_dependencies(store.get("task", "t1")) == [("secret", "secret-a"), ("secret", "secret-b"),
                                                          ("config", "config-c")]  # fmt: skip


def test_the_complete_set_sends_dependencies_before_the_tasks_and_only_to_their_node() -> None:
    store = setup()
    run(store, [task("t1", "A", "assigned", secrets=("secret-a",), configs=("config-c",)),
                task("t2", "B", "assigned", secrets=("secret-b",))])  # fmt: skip
    a = NodeAssignments("A", lookup=_lookup(store))
    assert lines(a.complete(store.find("task", node_id="A"))) == [
        ("update", "secret", "secret-a"), ("update", "config", "config-c"), ("update", "task", "t1"),
    ]  # fmt: skip
    b = NodeAssignments("B", lookup=_lookup(store))
    assert lines(b.complete(store.find("task", node_id="B"))) == [
        ("update", "secret", "secret-b"), ("update", "task", "t2"),
    ]  # fmt: skip


def test_a_secret_goes_to_node_A_only_while_a_task_on_A_uses_it() -> None:
    store = setup()
    watch = store.watch(["task"])
    a = NodeAssignments("A", lookup=_lookup(store))
    b = NodeAssignments("B", lookup=_lookup(store))
    assert a.complete([]) == [] and b.complete([]) == []
    # A task still pending is nobody's: nothing goes anywhere.
    run(store, [task("t1", "A", "pending", secrets=("secret-a",))])
    changes = watch.poll()
    assert a.incremental(changes) == [] and b.incremental(changes) == []
    # The scheduler assigns it to A: the secret first, then the task; B hears nothing.
    run(store, [Update("task", "t1", store.get("task", "t1").version, status={"State": "assigned"})])
    changes = watch.poll()
    assert lines(a.incremental(changes)) == [("update", "secret", "secret-a"), ("update", "task", "t1")]
    assert b.incremental(changes) == []
    # A second task on A using the same secret: the secret is not sent again.
    run(store, [task("t2", "A", "assigned", secrets=("secret-a",))])
    assert lines(a.incremental(watch.poll())) == [("update", "task", "t2")]
    # t1 runs, then fails (past running): t2 still uses the secret, so it stays.
    for state in ("running", "failed"):
        run(store, [Update("task", "t1", store.get("task", "t1").version, status={"State": state})])
        assert a.incremental(watch.poll()) == []
    assert ("secret", "secret-a") in a.sent
    # t2 is shut down by the agent (a status past running): the secret is withdrawn at once,
    # though the task itself stays in the set until the reaper deletes it.
    run(store, [Update("task", "t2", store.get("task", "t2").version, status={"State": "shutdown"})])
    assert lines(a.incremental(watch.poll())) == [("remove", "secret", "secret-a")]
    assert set(a.sent) == {("task", "t1"), ("task", "t2")}
    # Deleting the tasks removes them; nothing is left to withdraw.
    run(store, [Delete("task", "t1"), Delete("task", "t2")])
    assert lines(a.incremental(watch.poll())) == [("remove", "task", "t1"), ("remove", "task", "t2")]
    assert a.sent == {}


def test_a_task_that_moves_to_another_node_takes_its_secret_along() -> None:
    store = setup()
    run(store, [task("t1", "A", "assigned", secrets=("secret-a",))])
    watch = store.watch(["task"])
    a, b = NodeAssignments("A", lookup=_lookup(store)), NodeAssignments("B", lookup=_lookup(store))
    a.complete(store.find("task", node_id="A"))
    b.complete(store.find("task", node_id="B"))
    t1 = store.get("task", "t1")
    run(store, [Update("task", "t1", t1.version, extra={**t1.extra, "NodeID": "B"})])
    changes = watch.poll()
    assert lines(a.incremental(changes)) == [("remove", "task", "t1"), ("remove", "secret", "secret-a")]
    assert lines(b.incremental(changes)) == [("update", "secret", "secret-a"), ("update", "task", "t1")]


def test_a_dependency_that_is_gone_is_not_sent() -> None:
    store = setup()
    run(store, [task("t1", "A", "assigned", secrets=("secret-zz",))])
    a = NodeAssignments("A", lookup=_lookup(store))
    assert lines(a.complete(store.find("task", node_id="A"))) == [("update", "task", "t1")]


def test_the_payload_sent_is_ID_name_data_and_templating_only() -> None:
    store = setup()
    config: StoredObject = store.get("config", "config-c")
    assert payload_api(config) == {"ID": "config-c", "Spec": {"Name": "app.conf", "Data": "eD0x",
                                                              "Templating": {"Name": "golang"}}}  # fmt: skip
    run(store, [task("t1", "A", "assigned", secrets=("secret-a",))])
    a = NodeAssignments("A", lookup=_lookup(store))
    pb = [_to_pb(c) for c in a.complete(store.find("task", node_id="A"))]
    data = base64.b64encode(b"s3cret").decode()
    assert (pb[0].kind, json.loads(pb[0].object)) == (
        "secret", {"ID": "secret-a", "Spec": {"Name": "db_pass", "Data": data}},
    )  # fmt: skip
    assert pb[1].kind == "task" and json.loads(pb[1].object)["ID"] == "t1"
