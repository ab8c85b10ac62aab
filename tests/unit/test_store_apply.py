"""The store applies batches atomically, with optimistic concurrency and Swarm's rules and words."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from manager.state.store import (
    MAX_CONFIG_BYTES,
    MAX_SECRET_BYTES,
    Ambiguous,
    Create,
    Delete,
    InUse,
    InvalidObject,
    NameConflict,
    NotFound,
    Op,
    Store,
    StoreError,
    Update,
    UpdateOutOfSequence,
    default_cluster_spec,
    encode_batch,
)

T0 = "2026-11-22T10:44:27.364128Z"
T1 = "2026-11-22T10:45:00Z"


def run(store: Store, ops: list[Op], now: str = T0) -> StoreError | None:
    """Apply ``ops`` as the next entry; returns the error that rejected it, or None."""
    result = store.apply(store.applied_index + 1, encode_batch(ops, now=now))
    assert result.ok == (result.error is None)
    return result.error


def node_spec(role: str = "worker", availability: str = "active") -> dict[str, Any]:
    return {"Role": role, "Availability": availability, "Labels": {}}


def service_spec(name: str, **more: Any) -> dict[str, Any]:
    return {"Name": name, "Labels": {}, "Mode": {"Replicated": {"Replicas": 1}}, **more}


def payload(name: str, data: bytes = b"s3cr3t\n", **labels: str) -> dict[str, Any]:
    return {"Name": name, "Labels": labels, "Data": base64.b64encode(data).decode()}


def test_version_is_the_index_of_the_entry_that_last_wrote_the_object() -> None:
    store = Store()
    assert (
        run(store, [Create("node", "n1", node_spec()), Create("cluster", "c1", default_cluster_spec())])
        is None
    )
    node = store.get("node", "n1")
    assert (node.version, node.created_at, node.updated_at) == (1, T0, T0)
    store.apply(2, b"")  # a new leader's empty entry: counts as applied, writes nothing
    spec = copy.deepcopy(node.spec)
    spec["Availability"] = "drain"
    assert run(store, [Update("node", "n1", 1, spec=spec)], now=T1) is None
    node = store.get("node", "n1")
    assert (node.version, node.created_at, node.updated_at) == (3, T0, T1)
    assert node.spec["Availability"] == "drain"
    assert store.get("cluster", "c1").version == 1  # untouched objects keep their version


def test_update_leaves_the_parts_it_does_not_carry() -> None:
    store = Store()
    run(store, [Create("node", "n1", node_spec(), {"State": "unknown"}, {"Description": {"Hostname": "w1"}})])
    run(store, [Update("node", "n1", 1, status={"State": "ready", "Addr": "10.0.0.3"})])
    node = store.get("node", "n1")
    assert node.spec == node_spec()
    assert node.status == {"State": "ready", "Addr": "10.0.0.3"}
    assert node.extra == {"Description": {"Hostname": "w1"}}


def test_stale_version_fails_and_the_whole_batch_changes_nothing() -> None:
    store = Store()
    run(store, [Create("service", "s1", service_spec("web"))])
    run(store, [Update("service", "s1", 1, spec=service_spec("web", Labels={"a": "1"}))])
    before = store.snapshot()
    error = run(
        store,
        [Create("service", "s2", service_spec("api")), Update("service", "s1", 1, spec=service_spec("web"))],
    )
    assert isinstance(error, UpdateOutOfSequence)
    assert str(error) == "update out of sequence" and error.code == "out_of_sequence"
    assert store.applied_index == 3  # rejected, yet applied: every manager rejects it alike
    assert store.find("service", name="api") == []
    assert store.snapshot() == before.replace(b'"index":2', b'"index":3')
    assert isinstance(run(store, [Delete("service", "s1", version=1)]), UpdateOutOfSequence)
    assert run(store, [Delete("service", "s1", version=2)]) is None
    assert store.count("service") == 0


def test_missing_object_and_taken_id() -> None:
    store = Store()
    error = run(store, [Update("node", "nope", 1, status={"State": "down"})])
    assert isinstance(error, NotFound) and str(error) == "node nope not found" and error.code == "not_found"
    run(store, [Create("node", "n1", node_spec())])
    error = run(store, [Create("node", "n1", node_spec())])
    assert isinstance(error, NameConflict) and error.code == "conflict"


def test_an_object_is_written_at_most_once_per_batch() -> None:
    store = Store()
    error = run(
        store, [Create("node", "n1", node_spec()), Update("node", "n1", 1, status={"State": "ready"})]
    )
    assert isinstance(error, InvalidObject)
    assert store.count("node") == 0


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "service",
            service_spec("web"),
            "name conflicts with an existing object: service web already exists",
        ),
        ("network", {"Name": "web", "Driver": "overlay"}, "network with name web already exists"),
        ("secret", payload("web"), "secret web already exists"),
        ("config", payload("web"), "config web already exists"),
    ],
)
def test_names_are_unique_per_kind_ignoring_case(kind: str, spec: dict[str, Any], message: str) -> None:
    store = Store()
    assert run(store, [Create(kind, "a1", spec)]) is None
    error = run(store, [Create(kind, "a2", {**spec, "Name": "WEB"})])
    assert isinstance(error, NameConflict) and str(error).lower() == message.lower()
    other = "secret" if kind != "secret" else "config"
    assert run(store, [Create(other, "b1", payload("web"))]) is None  # another kind may use the name
    # Removing the holder frees the name, even within the same batch.
    assert run(store, [Delete(kind, "a1"), Create(kind, "a3", {**spec, "Name": "web"})]) is None
    assert store.lookup(kind, "web").id == "a3"


def test_names_conflict_within_one_batch() -> None:
    store = Store()
    error = run(
        store, [Create("service", "s1", service_spec("web")), Create("service", "s2", service_spec("web"))]
    )
    assert isinstance(error, NameConflict)
    assert store.count("service") == 0


@pytest.mark.parametrize(("kind", "limit"), [("secret", 512000), ("config", 1024000)])
def test_payload_size_limit_uses_swarms_message(kind: str, limit: int) -> None:
    # The limits a Docker 20.10 Swarm applied: 511999 bytes taken, 512000 refused (configs 1024000).
    assert limit == {"secret": MAX_SECRET_BYTES, "config": MAX_CONFIG_BYTES}[kind]
    store = Store()
    assert run(store, [Create(kind, "ok", payload("big", b"x" * (limit - 1)))]) is None
    for name, data in (("bigger", b"x" * limit), ("empty", b"")):
        error = run(store, [Create(kind, name, payload(name, data))])
        assert str(error) == f"{kind} data must be larger than 0 and less than {limit} bytes"
    error = run(store, [Create(kind, "nodata", {"Name": "nodata"})])
    assert str(error) == f"{kind} data must be larger than 0 and less than {limit} bytes"
    error = run(store, [Create(kind, "bad", {"Name": "x", "Data": "not base64!"})])
    assert isinstance(error, InvalidObject)
    assert store.count(kind) == 1


def test_a_secret_driver_needs_a_name_and_templating_is_kept() -> None:
    store = Store()
    error = run(store, [Create("secret", "d1", {"Name": "ext", "Driver": {"Name": ""}})])
    assert str(error) == "secret driver must have a name"
    spec = {**payload("tpl", b"{{.Service.Name}}"), "Templating": {"Name": "golang"}}
    assert run(store, [Create("config", "t1", spec)]) is None
    assert store.get("config", "t1").spec["Templating"] == {"Name": "golang"}
    # An empty Data in an update is no data (swarmkit sees nil), so it is a labels-only update.
    version = store.get("config", "t1").version
    relabel = {"Name": "tpl", "Data": "", "Labels": {"a": "b"}}
    assert run(store, [Update("config", "t1", version, spec=relabel)]) is None
    assert store.get("config", "t1").spec["Data"] == spec["Data"]


def test_secrets_and_configs_are_immutable_except_labels() -> None:
    store = Store()
    run(
        store, [Create("secret", "s1", payload("pw", b"one")), Create("config", "c1", payload("cfg", b"one"))]
    )
    for kind, id_, name in (("secret", "s1", "pw"), ("config", "c1", "cfg")):
        error = run(store, [Update(kind, id_, 1, spec=payload(name, b"two"))])
        assert str(error) == "only updates to Labels are allowed"
        error = run(store, [Update(kind, id_, 1, spec=payload(name + "2", b"one"))])
        assert str(error) == "only updates to Labels are allowed"
        # `docker stack deploy` resends the same data with new labels: allowed.
        assert run(store, [Update(kind, id_, 1, spec=payload(name, b"one", stack="demo"))]) is None
        obj = store.get(kind, id_)
        version = obj.version
        # Without Data, the data stays what it was.
        assert run(store, [Update(kind, id_, version, spec={"Name": name, "Labels": {}})]) is None
        obj = store.get(kind, id_)
        assert obj.spec["Data"] == base64.b64encode(b"one").decode() and obj.spec["Labels"] == {}


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("web", True),
        ("demo_front", True),
        ("a-b", True),
        ("-web", False),
        ("my.web", False),
        ("x" * 64, False),
    ],
)
def test_service_names_follow_swarm(name: str, ok: bool) -> None:
    store = Store()
    error = run(store, [Create("service", "s1", service_spec(name))])
    assert (error is None) == ok
    if not ok:
        assert isinstance(error, InvalidObject)


def test_services_cannot_be_renamed_nor_scaled_below_zero() -> None:
    store = Store()
    run(store, [Create("service", "s1", service_spec("web"))])
    error = run(store, [Update("service", "s1", 1, spec=service_spec("web2"))])
    assert str(error) == "renaming services is not supported"
    error = run(
        store,
        [Update("service", "s1", 1, spec={**service_spec("web"), "Mode": {"Replicated": {"Replicas": -1}}})],
    )
    assert str(error) == "Number of replicas must be non-negative"
    assert store.get("service", "s1").version == 1


def test_node_spec_uses_the_daemons_words() -> None:
    store = Store()
    error = run(store, [Create("node", "n1", node_spec(role="boss"))])
    assert str(error) == 'invalid Role: "boss"'
    error = run(store, [Create("node", "n1", node_spec(availability="away"))])
    assert str(error) == 'invalid Availability: "away"'
    error = run(store, [Create("node", "n1", node_spec(), {"State": "sleeping"})])
    assert isinstance(error, InvalidObject)
    assert store.count("node") == 0


def test_secret_in_use_by_a_service_cannot_be_removed() -> None:
    store = Store()
    template = {"ContainerSpec": {"Image": "nginx", "Secrets": [{"SecretID": "sec1", "SecretName": "pw"}]}}
    run(
        store,
        [
            Create("secret", "sec1", payload("pw")),
            Create("service", "svc1", service_spec("web", TaskTemplate=template)),
        ],
    )
    run(store, [Create("service", "svc2", service_spec("api", TaskTemplate=template))])
    error = run(store, [Delete("secret", "sec1")])
    # Services are named in ID order: svc1 (web), then svc2 (api).
    assert str(error) == "secret 'pw' is in use by the following services: web, api"
    assert store.get("secret", "sec1").version == 1
    run(store, [Delete("service", "svc2")])
    assert (
        str(run(store, [Delete("secret", "sec1")])) == "secret 'pw' is in use by the following service: web"
    )
    assert run(store, [Delete("service", "svc1"), Delete("secret", "sec1")]) is None


def test_a_service_can_only_use_secrets_and_configs_that_exist() -> None:
    # swarmkit checks this in the write's transaction; so does the store, whoever writes.
    store = Store()
    secrets = [{"SecretID": "sec1", "SecretName": "pw"}, {"SecretID": "nope", "SecretName": "gone"}]
    configs = [{"ConfigID": "cfg1", "ConfigName": "other-name"}]
    template = {"ContainerSpec": {"Image": "nginx", "Secrets": secrets, "Configs": configs}}
    run(store, [Create("secret", "sec1", payload("pw")), Create("config", "cfg1", payload("cfg"))])
    error = run(store, [Create("service", "svc1", service_spec("web", TaskTemplate=template))])
    assert str(error) == "secret not found: gone"
    template["ContainerSpec"]["Secrets"] = secrets[:1]
    error = run(store, [Create("service", "svc1", service_spec("web", TaskTemplate=template))])
    assert str(error) == "config not found: other-name"  # the name must be the config's
    template["ContainerSpec"]["Configs"] = [{"ConfigID": "cfg1", "ConfigName": "cfg"}]
    assert run(store, [Create("service", "svc1", service_spec("web", TaskTemplate=template))]) is None
    template["ContainerSpec"]["Secrets"] = secrets
    error = run(store, [Update("service", "svc1", store.get("service", "svc1").version,
                               spec=service_spec("web", TaskTemplate=template))])
    assert str(error) == "secret not found: gone" and store.count("service") == 1


def test_network_in_use_cannot_be_removed() -> None:
    store = Store()
    run(store, [Create("network", "net1", {"Name": "front", "Driver": "overlay"})])
    run(
        store,
        [Create("service", "svc1", service_spec("web", TaskTemplate={"Networks": [{"Target": "net1"}]}))],
    )
    error = run(store, [Delete("network", "net1")])
    assert isinstance(error, InUse) and str(error) == "network net1 is in use by service svc1"
    task_extra = {
        "ServiceID": "svc1",
        "DesiredState": "running",
        "NetworksAttachments": [{"Network": {"ID": "net1"}}],
    }
    run(store, [Delete("service", "svc1"), Create("task", "t1", {}, {"State": "running"}, task_extra)])
    assert str(run(store, [Delete("network", "net1")])) == "network net1 is in use by task t1"
    run(store, [Update("task", "t1", store.get("task", "t1").version, status={"State": "shutdown"})])
    assert run(store, [Delete("network", "net1")]) is None


def test_check_predicts_apply_and_changes_nothing() -> None:
    store = Store()
    run(store, [Create("service", "s1", service_spec("web"))])
    before = store.snapshot()
    with pytest.raises(NameConflict):
        store.check([Create("service", "s2", service_spec("web"))])
    with pytest.raises(UpdateOutOfSequence):
        store.check([Update("service", "s1", 7, spec=service_spec("web"))])
    with pytest.raises(InvalidObject):
        store.check([Create("widget", "w1", {})])
    store.check(
        [Create("service", "s2", service_spec("api")), Update("service", "s1", 1, spec=service_spec("web"))]
    )
    assert store.snapshot() == before and store.applied_index == 1


def test_stored_objects_are_read_only_and_deepcopy_gives_a_mutable_copy() -> None:
    store = Store()
    run(store, [Create("service", "s1", service_spec("web", Labels={"a": "1"}))])
    obj = store.get("service", "s1")
    with pytest.raises(TypeError):
        obj.spec["Name"] = "evil"
    with pytest.raises(TypeError):
        obj.spec["Labels"].update(b="2")
    with pytest.raises(TypeError):
        obj.spec["Mode"]["Replicated"]["Replicas"] = 5
    spec = copy.deepcopy(obj.spec)
    spec["Mode"]["Replicated"]["Replicas"] = 5
    assert store.get("service", "s1").spec["Mode"]["Replicated"]["Replicas"] == 1
    api = obj.to_api()
    api["Spec"]["Name"] = "changed"  # to_api hands out a copy the API layer may edit
    assert store.get("service", "s1").spec["Name"] == "web"


def test_lookup_by_id_name_or_unique_prefix_in_dockers_words() -> None:
    store = Store()
    run(
        store,
        [
            Create("service", "abc123", service_spec("web")),
            Create("service", "abd456", service_spec("api")),
            Create("service", "web", service_spec("other")),  # an ID equal to another's name
            Create("node", "n1", node_spec(), extra={"Description": {"Hostname": "worker1"}}),
            Create("node", "n2", node_spec(), extra={"Description": {"Hostname": "worker1"}}),
        ],
    )
    assert store.lookup("service", "abc123").spec["Name"] == "web"
    assert store.lookup("service", "web").spec["Name"] == "other"  # a full ID wins over a name
    assert store.lookup("service", "API").id == "abd456"
    assert store.lookup("service", "abd").id == "abd456"
    with pytest.raises(Ambiguous, match=r"^service ab is ambiguous \(2 matches found\)$"):
        store.lookup("service", "ab")
    with pytest.raises(NotFound, match=r"^service zzz not found$"):
        store.lookup("service", "zzz")
    with pytest.raises(Ambiguous, match=r"^node worker1 is ambiguous \(2 matches found\)$"):
        store.lookup("node", "worker1")
    assert [o.id for o in store.find("service")] == ["abc123", "abd456", "web"]
    assert [o.id for o in store.find("node", filters=lambda n: n.id.endswith("2"))] == ["n2"]


def test_api_shapes() -> None:
    store = Store()
    run(
        store,
        [
            Create("secret", "s1", payload("pw")),
            Create("config", "c1", payload("cfg", b"data")),
            Create(
                "node",
                "n1",
                node_spec("manager"),
                {"State": "ready", "Addr": "10.0.0.1"},
                {
                    "Description": {"Hostname": "m1"},
                    "ManagerStatus": {"Leader": True, "Reachability": "reachable"},
                },
            ),
            Create("service", "svc", service_spec("web"), extra={"Endpoint": {"Spec": {"Mode": "vip"}}}),
            Create("network", "net", {"Name": "front", "Driver": "overlay", "Attachable": True}),
        ],
    )
    secret = store.get("secret", "s1").to_api()
    assert "Data" not in secret["Spec"] and secret["Version"] == {"Index": 1}
    assert store.get("config", "c1").to_api()["Spec"]["Data"] == base64.b64encode(b"data").decode()
    assert store.get("config", "c1").data() == b"data" and store.get("secret", "s1").data() == b"s3cr3t\n"
    node = store.get("node", "n1").to_api()
    assert node["Status"]["State"] == "ready" and node["ManagerStatus"]["Leader"] is True
    assert node["Description"]["Hostname"] == "m1" and node["CreatedAt"] == T0
    service = store.get("service", "svc").to_api()
    assert "Status" not in service and service["Endpoint"] == {"Spec": {"Mode": "vip"}}
    net = store.get("network", "net").to_api()
    assert (net["Name"], net["Id"], net["Scope"], net["Attachable"]) == ("front", "net", "swarm", True)


def test_replayed_or_old_index_is_refused_without_effect() -> None:
    store = Store()
    data = encode_batch([Create("node", "n1", node_spec())], now=T0)
    assert store.apply(5, data).ok  # gaps are fine: entries the store never sees
    result = store.apply(5, data)
    assert not result.ok and result.changes == [] and store.applied_index == 5
    assert store.count("node") == 1


def test_odd_shapes_in_loosely_checked_specs_do_not_stop_apply() -> None:
    store = Store()
    run(
        store,
        [
            Create("network", "net1", {"Name": "front"}),
            Create("secret", "sec1", payload("pw")),
            Create("service", "svc1", service_spec("web", TaskTemplate={"Networks": 5, "ContainerSpec": []})),
            Create("task", "t1", {"Networks": "x"}, {}, {"NetworksAttachments": {"a": 1}}),
        ],
    )
    assert run(store, [Delete("network", "net1"), Delete("secret", "sec1")]) is None
