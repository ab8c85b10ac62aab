"""``/secrets`` and ``/configs``, and services that use them, against a real store (FakeManager).

Shapes are compared with what a real Swarm answered (engineapi_ref/secret.json, config.json...);
the words, status codes and limits are the ones a Docker 20.10 Swarm gave on this machine
(docs/engineapi.md, "Secrets and configs"). Every refusal is checked for nothing written.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any
from urllib.parse import quote

import pytest
from test_engineapi_nodes import Client, FakeManager, ref, serve, shape

from manager.state.store import MAX_CONFIG_BYTES, MAX_SECRET_BYTES


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def filters(value: dict[str, Any]) -> str:
    return "?filters=" + quote(json.dumps(value))


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    return m


async def create(client: Client, kind: str, name: str, data: str = "hunter2", **extra: Any) -> str:
    body = json.dumps({"Name": name, "Labels": {}, "Data": b64(data), **extra}).encode()
    resp = await client.post(f"/v1.47/{kind}s/create", data=io.BytesIO(body),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert list(answer) == ["ID"] and len(answer["ID"]) == 25
    return str(answer["ID"])


async def refused(client: Client, method: str, path: str, status: int, message: str, **kw: Any) -> None:
    if "json" in kw:  # as a stream: aiohttp warns about large bodies given as bytes
        kw = {"data": io.BytesIO(json.dumps(kw.pop("json")).encode()),
              "headers": {"Content-Type": "application/json"}, **kw}
    resp = await client.request(method, path, **kw)
    assert (resp.status, await resp.json()) == (status, {"message": message})


def service_body(name: str, secrets: list[Any] | None = None,
                 configs: list[Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": "nginx:1.25", "Init": False, "DNSConfig": {}}
    if secrets is not None:
        container["Secrets"] = secrets
    if configs is not None:
        container["Configs"] = configs
    return {"Name": name, "Labels": {}, "TaskTemplate": {"ContainerSpec": container, "ForceUpdate": 0},
            "Mode": {"Replicated": {"Replicas": 1}}}


def file(name: str, mode: int = 0o444) -> dict[str, Any]:
    return {"Name": name, "UID": "0", "GID": "0", "Mode": mode}


# ---- secrets and configs ---------------------------------------------------------------------


def test_inspect_shapes_are_swarms_and_a_secret_never_shows_its_data(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, "secret", "db_pass")
        cid = await create(client, "config", "app_conf", "listen 80;\nworker_processes 2;\n")
        secret = await (await client.get("/v1.47/secrets/db_pass")).json()
        want = ref("secret.json")
        assert shape(secret) == shape(want) and secret["Spec"] == {"Name": "db_pass", "Labels": {}}
        assert secret["ID"] == sid and secret["CreatedAt"] == secret["UpdatedAt"]
        config = await (await client.get(f"/v1.47/configs/{cid}")).json()
        assert shape(config) == shape(ref("config.json"))
        assert config["Spec"] == ref("config.json")["Spec"]  # same data, same base64
        listed = await (await client.get("/v1.47/secrets")).json()
        assert shape(listed) == shape(ref("secrets.json")[1:2]) and "Data" not in listed[0]["Spec"]
        assert shape(await (await client.get("/v1.47/configs")).json()) == shape(ref("configs.json")[:1])
        text = await (await client.get("/v1.47/secrets")).text()
        text += await (await client.get(f"/secrets/{sid}")).text()
        assert b64("hunter2") not in text and "hunter2" not in text

    serve(manager, check)


def test_lookup_by_id_name_and_prefix_as_docker(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, "secret", "db_pass")
        for key in (sid, "db_pass", "DB_PASS", sid[:6]):
            resp = await client.get(f"/secrets/{key}")
            assert resp.status == 200 and (await resp.json())["ID"] == sid
        await refused(client, "GET", "/v1.47/secrets/nosuch", 404, ref("err-secret-unknown.json")["message"])
        await refused(client, "GET", "/v1.47/configs/nosuch", 404, ref("err-config-unknown.json")["message"])
        other = await create(client, "secret", "other")
        common = next(i for i in range(25) if sid[i] != other[i])
        if common:
            await refused(client, "GET", f"/secrets/{sid[:common]}", 400,
                          f"secret {sid[:common]} is ambiguous (2 matches found)")

    serve(manager, check)


def test_list_filters_as_swarmkit(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        a = await create(client, "secret", "sx_a", Labels={"env": "lab"})
        ab = await create(client, "secret", "sx_ab", Labels={"env": "prod", "x": ""})
        other = await create(client, "secret", "other")

        async def names(query: str, kind: str = "secret") -> list[str]:
            resp = await client.get(f"/v1.47/{kind}s{query}")
            assert resp.status == 200, await resp.text()
            return [s["Spec"]["Name"] for s in await resp.json()]

        by_id = sorted([(a, "sx_a"), (ab, "sx_ab"), (other, "other")])
        assert await names("") == [n for _, n in by_id]  # sorted by ID, as swarmkit lists them
        assert sorted(await names(filters({"name": {"SX_a": True}}))) == ["sx_a", "sx_ab"]  # prefix
        assert await names(filters({"names": {"sx_a": True}})) == ["sx_a"]  # exact
        assert await names(filters({"id": [other[:5]]})) == ["other"]
        assert sorted(await names(filters({"names": ["sx_a"], "id": [other]}))) == ["other", "sx_a"]  # any
        assert sorted(await names(filters({"label": ["env"]}))) == ["sx_a", "sx_ab"]
        assert await names(filters({"label": ["env=lab"]})) == ["sx_a"]
        assert await names(filters({"label": ["x="]})) == ["sx_ab"]
        assert await names(filters({"name": ["sx"], "label": ["env=prod"]})) == ["sx_ab"]
        await refused(client, "GET", "/secrets" + filters({"foo": ["x"]}), 400, "Invalid filter 'foo'")
        await refused(client, "GET", "/configs" + filters({"foo": ["x"]}), 400, "Invalid filter 'foo'")
        assert await names("", "config") == []

    serve(manager, check)


@pytest.mark.parametrize(("kind", "limit"), [("secret", MAX_SECRET_BYTES), ("config", MAX_CONFIG_BYTES)])
def test_size_limits_and_create_refusals(manager: FakeManager, kind: str, limit: int) -> None:
    async def check(client: Client) -> None:
        path = f"/v1.47/{kind}s/create"
        rpc = "rpc error: code = InvalidArgument desc = "
        too_big = rpc + f"{kind} data must be larger than 0 and less than {limit} bytes"
        bad_name = rpc + ("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end "
                          "character must be [a-zA-Z0-9]")
        cases: list[tuple[Any, int, str]] = [
            ({"Name": "big", "Data": b64(b"x" * limit)}, 400, too_big),
            ({"Name": "empty", "Data": ""}, 400, too_big),
            ({"Name": "nodata"}, 400, too_big),
            ({"Data": b64("x")}, 400, "rpc error: code = InvalidArgument desc = name must be provided"),
            ({"Name": "-bad", "Data": b64("x")}, 400, bad_name),
            ({"Name": "b64", "Data": "not base64!"}, 400, "illegal base64 data at input byte 3"),
            ('{"Name": x}', 400, "invalid character 'x' looking for beginning of value"),
            ({"Name": "lbl", "Labels": {"a": 1}, "Data": b64("x")}, 400,
             f"json: cannot unmarshal number into Go struct field {kind.title()}Spec.Labels of type string"),
        ]
        for body, status, message in cases:
            kw = {"data": body} if isinstance(body, str) else {"json": body}
            await refused(client, "POST", path, status, message, **kw)
        assert manager.writes == [] and manager.store.count(kind) == 0
        await create(client, kind, "fits", "x" * (limit - 1))
        # Names ignore case, as swarmkit's name index does; the words are the recording's.
        exists = ref("err-secret-create-exists.json")["message"].replace("secret db_pass", f"{kind} FITS")
        await refused(client, "POST", path, 409, exists, json={"Name": "FITS", "Data": b64("again")})
        assert manager.store.count(kind) == 1

    serve(manager, check)


def test_secret_drivers_and_templating(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        await refused(client, "POST", "/secrets/create", 400,
                      "rpc error: code = InvalidArgument desc = secret driver must have a name",
                      json={"Name": "ext", "Driver": {"Name": ""}, "Data": b64("x")})
        await refused(client, "POST", "/secrets/create", 500,
                      'rpc error: code = Unknown desc = plugin "vault" not found',
                      json={"Name": "ext", "Driver": {"Name": "vault"}})
        assert manager.writes == []
        # Any template driver is taken at create (the agent refuses unknown ones when it expands).
        await create(client, "secret", "tpl", "pw-{{.Service.Name}}", Templating={"Name": "golang"})
        await create(client, "config", "tfoo", "x", Templating={"Name": "foo"})
        secret = await (await client.get("/secrets/tpl")).json()
        assert secret["Spec"] == {"Name": "tpl", "Labels": {}, "Templating": {"Name": "golang"}}
        config = await (await client.get("/configs/tfoo")).json()
        assert list(config["Spec"]) == ["Name", "Labels", "Data", "Templating"]

    serve(manager, check)


@pytest.mark.parametrize("kind", ["secret", "config"])
def test_update_changes_labels_only(manager: FakeManager, kind: str) -> None:
    async def check(client: Client) -> None:
        oid = await create(client, kind, "sx_a", "aaa", Labels={"env": "lab"})
        manager.writes.clear()
        version = manager.store.get(kind, oid).version
        url = f"/v1.47/{kind}s/{oid}/update"
        only_labels = "rpc error: code = InvalidArgument desc = only updates to Labels are allowed"
        for query in ("", "?version=abc", "?version=-1"):
            await refused(client, "POST", url + query, 400, f"invalid {kind} version",
                          json={"Name": "sx_a", "Labels": {}})
        for spec in ({"Name": "sx_a", "Data": b64("zzz")}, {"Name": "sx_b"}, {}):
            await refused(client, "POST", f"{url}?version={version}", 400, only_labels, json=spec)
        await refused(client, "POST", f"/{kind}s/nosuch/update?version=1", 404, f"{kind} nosuch not found",
                      json={"Name": "nosuch"})
        assert manager.writes == []
        # The same data (what `docker stack deploy` resends) with new labels: taken; 200, no body.
        resp = await client.post(f"{url}?version={version}", json={"Name": "sx_a", "Labels": {"k": "v"},
                                                                   "Data": b64("aaa")})
        assert resp.status == 200 and await resp.read() == b""
        got = await (await client.get(f"/{kind}s/sx_a")).json()
        assert got["Spec"]["Labels"] == {"k": "v"} and got["Version"]["Index"] > version
        assert got["UpdatedAt"] >= got["CreatedAt"]
        assert manager.store.get(kind, oid).data() == b"aaa"
        # Stale: Swarm's 500; stale and a data change: the labels rule is told first.
        await refused(client, "POST", f"{url}?version={version}", 500,
                      "rpc error: code = Unknown desc = update out of sequence", json={"Name": "sx_a"})
        await refused(client, "POST", f"{url}?version={version}", 400, only_labels,
                      json={"Name": "sx_a", "Data": b64("qq")})
        # By name; an empty Data is no data; null labels clear them.
        version = manager.store.get(kind, oid).version
        resp = await client.post(f"/{kind}s/sx_a/update?version={version}",
                                 json={"Name": "sx_a", "Data": "", "Labels": None})
        assert resp.status == 200
        assert (await (await client.get(f"/{kind}s/{oid}")).json())["Spec"]["Labels"] == {}

    serve(manager, check)


# ---- services that use them ------------------------------------------------------------------


def test_a_service_using_them_blocks_their_removal_with_swarms_words(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, "secret", "db_pass")
        cid = await create(client, "config", "index_html", "<h1>hi</h1>\n")
        refs = [{"File": file("db_pass"), "SecretID": sid, "SecretName": "db_pass"}]
        crefs = [{"File": file("/www/index.html"), "ConfigID": cid, "ConfigName": "index_html"}]
        for body in (service_body("secweb", refs, crefs), service_body("filesvc", refs)):
            resp = await client.post("/services/create", json=body)
            assert resp.status == 201, await resp.text()
        # Service names in swarmkit's order: by service ID.
        users = sorted(manager.store.find("service"), key=lambda s: s.id)
        in_use = ", ".join(s.name for s in users)
        await refused(client, "DELETE", "/v1.47/secrets/db_pass", 400,
                      f"rpc error: code = InvalidArgument desc = secret 'db_pass' is in use by the following "
                      f"services: {in_use}")
        await refused(client, "DELETE", "/v1.47/configs/index_html", 400,
                      ref("err-config-rm-in-use.json")["message"])
        await refused(client, "DELETE", "/v1.47/secrets/nosuch", 404, "secret nosuch not found")
        assert manager.store.count("secret") == 1 and manager.store.count("config") == 1
        stored = manager.store.lookup("service", "secweb").spec["TaskTemplate"]["ContainerSpec"]
        recorded = ref("service-secweb.json")["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]
        assert stored["Secrets"] == [recorded | {"SecretID": sid}]  # what the CLI sent, as stored
        for name in ("secweb", "filesvc"):
            assert (await client.delete(f"/services/{name}")).status == 200
        resp = await client.delete("/v1.47/secrets/db_pass")
        assert resp.status == 204 and manager.store.count("secret") == 0
        assert (await client.delete(f"/v1.47/configs/{cid[:8]}")).status == 204

    serve(manager, check)


def test_service_references_are_checked_as_swarmkit(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        a = await create(client, "secret", "sx_a")
        cfg = await create(client, "config", "sx_cfg")

        def s(ref_id: str, name: str, target: Any = "t", **kw: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"SecretID": ref_id, "SecretName": name, **kw}
            if target is not None:
                out["File"] = file(target)
            return out

        def c(ref_id: str, name: str, target: str = "/c") -> dict[str, Any]:
            return {"ConfigID": ref_id, "ConfigName": name, "File": file(target)}

        rpc = "rpc error: code = InvalidArgument desc = "
        cases: list[tuple[dict[str, Any], int, str]] = [
            (service_body("x", [{"SecretName": "sx_a", "File": file("a")}]), 400,
             rpc + "malformed secret reference"),
            (service_body("x", [{"SecretID": a, "File": file("a")}]), 400,
             rpc + "malformed secret reference"),
            (service_body("x", [s(a, "sx_a", None)]), 400,
             rpc + "malformed secret reference, no target provided"),
            (service_body("x", [s(a, "sx_a", "")]), 400,
             rpc + "malformed file secret reference, invalid target file name provided"),
            (service_body("x", [s(a, "sx_a"), s("x", "sx_ab")]), 400,
             rpc + "secret references 'sx_a' and 'sx_ab' have a conflicting target: 't'"),
            (service_body("x", [s("nosuchid", "nosuch")]), 400, rpc + "secret not found: nosuch"),
            (service_body("x", [s("nosuchid", "n1"), s(a, "wrongname", "u")]), 400,
             rpc + "secrets not found: n1, wrongname"),
            (service_body("x", [s("nosuchid", "n1")], [c("nosuch", "c1")]), 400,
             rpc + "secret not found: n1"),
            (service_body("x", None, [{"ConfigID": cfg, "ConfigName": "sx_cfg"}]), 400,
             "invalid Config: either File or Runtime should be set"),
            (service_body("x", None, [c(cfg, "sx_cfg") | {"Runtime": {}}]), 400,
             "invalid Config: cannot specify both File and Runtime"),
            (service_body("x", None, [c(cfg, "sx_cfg"), c(cfg, "sx_cfg")]), 400,
             rpc + "config references 'sx_cfg' and 'sx_cfg' have a conflicting target: '/c'"),
            (service_body("x", None, [c("zz", "c1"), c("zy", "c2", "/d")]), 400,
             rpc + "configs not found: c1, c2"),
            (service_body("x", [{"SecretID": 5}]), 400, "json: cannot unmarshal number into Go struct field "
             "SecretReference.TaskTemplate.ContainerSpec.Secrets.SecretID of type string"),
            (service_body("x", [s(a, "sx_a") | {"File": {"Name": "x", "Mode": "0444"}}]), 400,
             "json: cannot unmarshal string into Go struct field "
             "SecretReferenceFileTarget.TaskTemplate.ContainerSpec.Secrets.File.Mode of type fs.FileMode"),
        ]
        for body, status, message in cases:
            await refused(client, "POST", "/v1.47/services/create", status, message, json=body)
        assert manager.store.count("service") == 0
        # A secret and a config may share a target; File is stored as given (no defaults filled).
        body = service_body("ok", [{"SecretID": a, "SecretName": "sx_a", "File": {"Name": "/c"}}],
                            [c(cfg, "sx_cfg")])
        resp = await client.post("/services/create", json=body)
        assert resp.status == 201, await resp.text()
        stored = manager.store.lookup("service", "ok")
        assert stored.spec["TaskTemplate"]["ContainerSpec"]["Secrets"] == [
            {"SecretID": a, "SecretName": "sx_a", "File": {"Name": "/c"}}]
        # An update's references are checked before its version, mode and name (swarmkit's order),
        # and even when it asks for a rollback.
        spec = json.loads(json.dumps(stored.spec))
        spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] = "nosuch"
        stale = stored.version - 1
        global_mode = spec | {"Mode": {"Global": {}}}
        for query, update in ((f"?version={stored.version}", spec), (f"?version={stale}", spec),
                              (f"?version={stored.version}", global_mode),
                              (f"?version={stored.version}&rollback=previous", spec)):
            await refused(client, "POST", "/v1.47/services/ok/update" + query, 400,
                          rpc + "secret not found: sx_a", json=update)
        assert manager.store.lookup("service", "ok").version == stored.version

    serve(manager, check)
