"""The node's Engine API (nodeagent/engineapi/): routing, version prefix, errors, Go-style bodies.

Each test serves the aiohttp app with aiohttp's own test client (loopback, no cluster). The
expected words and codes are Docker's, from ../shared/ref/real-swarm (copied into
engineapi_ref/) and from asking a Docker 20.10 engine the same requests.
"""

from __future__ import annotations

import asyncio
import io
import json
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nodeagent.engineapi import (
    NOT_IN_SWARM,
    NOT_MANAGER_WORKER,
    ApiError,
    EngineApiServer,
    NodeFacts,
    Route,
    SwarmInfo,
    decode,
    parse_filters,
    rfc3339_nano,
)
from nodeagent.engineapi.gojson import BOOL, INT64, STRING, UINT64, GoJSONError, map_of, slice_of, struct
from nodeagent.engineapi.server import ALREADY_IN_SWARM, check_api_version

REF = pathlib.Path(__file__).parent / "engineapi_ref"
FACTS = NodeFacts(node_id="n" * 25, hostname="manager1", engine_version="0.1.0")


def ref(name: str) -> Any:
    return json.loads((REF / name).read_text())


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first element): what must match."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


Check = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def serve(server: EngineApiServer, check: Check) -> None:
    async def main() -> None:
        async with TestClient(TestServer(server.app)) as client:
            await check(client)

    asyncio.run(main())


class FakeCluster:
    """A manager's ClusterApi with one route."""

    def __init__(self) -> None:
        self.calls = 0

    async def nodes(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if request.query.get("fail"):
            raise ApiError.not_found("node nosuch not found")
        return web.json_response([])

    def routes(self) -> list[Route]:
        return [("GET", "/nodes", self.nodes)]

    def swarm_info(self, base: SwarmInfo) -> SwarmInfo:
        return SwarmInfo("active", base.node_id, base.node_addr, True, nodes=3, managers=1)


def node_server(state: str = "inactive") -> EngineApiServer:
    return EngineApiServer(
        FACTS, lambda: SwarmInfo(state, "n" * 25 if state != "inactive" else "", "127.0.0.1"), "127.0.0.1", 0
    )


def test_ping_headers_and_both_methods() -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        for method in ("GET", "HEAD"):
            for path in ("/_ping", "/v1.47/_ping", "/v1.24/_ping"):
                resp = await client.request(method, path)
                assert resp.status == 200
                assert resp.headers["Api-Version"] == "1.47"
                assert resp.headers["Ostype"] == "linux"
                assert resp.headers["Docker-Experimental"] == "false"
                assert resp.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
                assert resp.headers["Pragma"] == "no-cache"
                assert resp.headers["Swarm"] == "active/worker"
                assert await resp.text() == ("OK" if method == "GET" else "")

    serve(node_server("active"), check)


@pytest.mark.parametrize(
    ("state", "header"), [("inactive", "inactive"), ("pending", "pending"), ("active", "active/worker")]
)
def test_ping_swarm_header_follows_the_node(state: str, header: str) -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get("/_ping")
        assert resp.headers["Swarm"] == header

    serve(node_server(state), check)


def test_version_matches_dockers_shape() -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get("/v1.47/version")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        body = await resp.json()
        assert shape(body) == shape(ref("version.json")) | {
            "Components": [shape(ref("version.json"))["Components"][0]]
        }
        assert body["ApiVersion"] == "1.47" and body["MinAPIVersion"] == "1.24"
        assert body["Os"] == "linux" and body["Version"] == "0.1.0"

    serve(node_server(), check)


def test_info_swarm_section_not_in_swarm_is_dockers() -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        body = await (await client.get("/info")).json()
        # Exactly what `docker info --format '{{json .Swarm}}'` printed with no swarm.
        assert body["Swarm"] == {
            "NodeID": "",
            "NodeAddr": "127.0.0.1",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        }
        assert body["Name"] == "manager1" and body["ID"] == "n" * 25
        assert body["SystemTime"].endswith("Z")

    serve(node_server(), check)


@pytest.mark.parametrize(("state", "message"), [("inactive", NOT_IN_SWARM), ("active", NOT_MANAGER_WORKER)])
def test_cluster_routes_off_managers_are_swarms_503(state: str, message: str) -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        for method, path in (
            ("GET", "/v1.47/nodes"),
            ("GET", "/swarm"),
            ("POST", "/v1.41/nodes/x/update"),
            ("DELETE", "/nodes/abc"),
            ("GET", "/services"),
            ("GET", "/tasks"),
        ):
            resp = await client.request(method, path)
            assert resp.status == 503, path
            assert await resp.json() == {"message": message}

    serve(node_server(state), check)
    assert ref("err-nodes-not-in-swarm.json") == {"message": NOT_IN_SWARM}


def test_a_manager_attaches_its_routes_and_info() -> None:
    server = node_server("active")
    cluster = FakeCluster()
    server.attach(cluster)

    async def check(client: TestClient[web.Request, web.Application]) -> None:
        assert (await client.get("/v1.47/nodes")).status == 200
        resp = await client.get("/nodes?fail=1")
        assert (resp.status, await resp.json()) == (404, {"message": "node nosuch not found"})
        # A cluster route this manager does not serve yet says so.
        resp = await client.get("/services")
        assert resp.status == 501
        assert "does not serve GET /services" in (await resp.json())["message"]
        ping = await client.get("/_ping")
        assert ping.headers["Swarm"] == "active/manager"
        info = (await (await client.get("/info")).json())["Swarm"]
        assert info["ControlAvailable"] is True and info["Nodes"] == 3

    serve(server, check)
    assert cluster.calls == 2
    server.detach()
    assert server.swarm_info().control_available is False


def test_attach_refuses_a_route_that_is_not_swarms() -> None:
    class Bad(FakeCluster):
        def routes(self) -> list[Route]:
            return [("GET", "/containers/json", self.nodes)]

    with pytest.raises(ValueError, match="not a cluster route"):
        node_server().attach(Bad())


def test_versions_too_new_too_old_and_unknown_routes() -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get("/v1.99/info")
        assert resp.status == 400
        assert await resp.json() == {
            "message": "client version 1.99 is too new. Maximum supported API version is 1.47"
        }
        resp = await client.get("/v1.23/version")
        assert resp.status == 400
        assert (await resp.json())["message"].startswith(
            "client version 1.23 is too old. Minimum supported API version is 1.24"
        )
        for method, path in (
            ("GET", "/nodesx"),
            ("PUT", "/nodes"),
            ("GET", "/v1.47/containers/json"),
            ("POST", "/info"),
        ):
            resp = await client.request(method, path)
            assert resp.status == 404, (method, path)
            assert await resp.json() == {"message": "page not found"}

    serve(node_server(), check)


def test_check_api_version_accepts_the_range() -> None:
    for _ in range(2):  # the second time from the accepted versions already seen
        for ok in ("1.24", "1.41", "1.47"):
            check_api_version(ok)
        for bad in ("1.48", "2.0", "1.2", "x"):
            with pytest.raises(ApiError) as err:
                check_api_version(bad)
            assert err.value.status == 400


# ---------------------------------------------------------------------- Go-style bodies

NODE_SPEC = struct("swarm.NodeSpec", Name=STRING, Labels=map_of(STRING), Role=STRING)
NESTED = struct(
    "swarm.ServiceSpec",
    TaskTemplate=struct(
        "swarm.TaskSpec", ContainerSpec=struct("swarm.ContainerSpec", Image=STRING, Args=slice_of(STRING))
    ),
    Replicas=UINT64,
    Delay=INT64,
    Flag=BOOL,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"labels":"x"}',
            "json: cannot unmarshal string into Go struct field NodeSpec.Labels of type map[string]string",
        ),
        (
            '{"Labels":{"a":1}}',
            "json: cannot unmarshal number into Go struct field NodeSpec.Labels of type string",
        ),
        ("[1]", "json: cannot unmarshal array into Go value of type swarm.NodeSpec"),
        ('{"Role":true}', "json: cannot unmarshal bool into Go struct field NodeSpec.Role of type string"),
        ("{nope}", "invalid character 'n' looking for beginning of object key string"),
        ('{"Role" "x"}', "invalid character '\"' after object key"),
        ('{"Role":"x" "Name":"y"}', "invalid character '\"' after object key:value pair"),
        ('{"Role":"x"', "unexpected EOF"),
        ('{"Role":"x"} x', "invalid character 'x' after top-level value"),
    ],
)
def test_decode_refuses_in_gos_words(body: str, message: str) -> None:
    with pytest.raises(GoJSONError) as err:
        decode(body, NODE_SPEC)
    assert str(err.value) == message


def test_decode_matches_keys_case_insensitively_and_ignores_unknown_ones() -> None:
    got = decode(b'{"labels":{"a":"b"},"ROLE":"worker","Other":1,"Name":null}', NODE_SPEC)
    assert got == {"Labels": {"a": "b"}, "Role": "worker"}
    assert decode(b"", NODE_SPEC) == {}
    assert decode(b'{"Role":"a","role":"b"}', NODE_SPEC) == {"Role": "b"}  # the last key wins


def test_decode_names_the_path_of_nested_fields() -> None:
    with pytest.raises(GoJSONError) as err:
        decode('{"TaskTemplate":{"ContainerSpec":{"Image":5}}}', NESTED)
    assert str(err.value) == (
        "json: cannot unmarshal number into Go struct field "
        "ContainerSpec.TaskTemplate.ContainerSpec.Image of type string"
    )
    with pytest.raises(
        GoJSONError, match=r"number 1.5 into Go struct field ServiceSpec.Replicas of type uint64"
    ):
        decode('{"Replicas":1.5}', NESTED)
    with pytest.raises(GoJSONError, match=r"number -1 into Go struct field ServiceSpec.Replicas"):
        decode('{"Replicas":-1}', NESTED)
    assert decode('{"replicas":3,"delay":-2,"flag":true}', NESTED) == {
        "Replicas": 3,
        "Delay": -2,
        "Flag": True,
    }


# ---------------------------------------------------------------------- filters and times


def test_filters_accept_both_json_shapes() -> None:
    assert parse_filters('{"role":["manager"]}').get("role") == ["manager"]
    assert parse_filters('{"role":{"manager":true,"worker":true}}').get("role") == ["manager", "worker"]
    assert parse_filters(None).names() == []
    with pytest.raises(ApiError) as err:
        parse_filters('{"role":"x"}')
    assert (err.value.status, err.value.message) == (
        400,
        "json: cannot unmarshal string into Go value of type map[string]bool",
    )
    with pytest.raises(ApiError, match="Invalid filter 'bogus'"):
        parse_filters('{"bogus":["x"]}').validate(["role"])
    with pytest.raises(ApiError, match="Invalid role filter: 'boss'"):
        parse_filters('{"role":["boss"]}').check_values("role", ["manager", "worker"], "role")


def test_rfc3339_nano_prints_as_go_does() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_aiohttps_own_refusals_are_json_too() -> None:
    class Reader(FakeCluster):
        async def update(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            return web.Response()

        def routes(self) -> list[Route]:
            return [("POST", "/nodes/{id}/update", self.update)]

    server = node_server("active")
    server.attach(Reader())

    async def check(client: TestClient[web.Request, web.Application]) -> None:
        # The limit is 16 MiB (a config at Swarm's 1000 KiB limit is 1.3 MiB of base64).
        body = io.BytesIO(b"{" + b" " * (17 << 20) + b"}")
        resp = await client.post("/nodes/x/update?version=1", data=body)
        assert resp.status == 413
        assert resp.headers["Content-Type"] == "application/json"
        assert (await resp.json())["message"] == "Maximum request body size 16777216 exceeded."

    serve(server, check)


def test_swarm_init_join_leave_say_where_the_node_stands() -> None:
    async def in_swarm(client: TestClient[web.Request, web.Application]) -> None:
        for path in ("/v1.47/swarm/init", "/swarm/join"):
            resp = await client.post(path, json={})
            assert (resp.status, await resp.json()) == (503, {"message": ALREADY_IN_SWARM})
        assert (await client.post("/swarm/leave")).status == 501

    async def no_swarm(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.post("/swarm/leave")
        assert (resp.status, await resp.json()) == (503, {"message": "This node is not part of a swarm"})
        assert (await client.post("/swarm/init", json={})).status == 501

    serve(node_server("active"), in_swarm)
    serve(node_server("inactive"), no_swarm)
    assert json.loads((REF / "err-swarm-init-again.json").read_text()) == {"message": ALREADY_IN_SWARM}
