"""``/services`` and ``/tasks`` against a real store and an in-memory manager (FakeManager).

Created services are compared field by field with what a real Swarm's ``docker service inspect``
printed for the same command (engineapi_ref/service-web-inspect.json), IDs, times and versions
aside; every refusal is checked for Docker's status and words, and for nothing written.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_engineapi_nodes import DOWN, INGRESS, LEADER, WORKER, Client, FakeManager, ref, serve

from manager.engineapi.logs import LogLine, detail_prefix, frame
from manager.state.store import Create, Update

WEB_BODY: dict[str, Any] = {
    # What the docker CLI v28 sends for
    # `docker service create --name web --replicas 3 --publish 8080:80 --no-resolve-image lab/web:1`.
    "Name": "web", "Labels": {},
    "TaskTemplate": {"ContainerSpec": {"Image": "lab/web:1", "Init": False, "DNSConfig": {}},
                     "Resources": {"Limits": {}, "Reservations": {}}, "Placement": {}, "ForceUpdate": 0},
    "Mode": {"Replicated": {"Replicas": 3}},
    "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                               "PublishMode": "ingress"}]},
}  # fmt: skip


def body(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(WEB_BODY))
    out.update(changes)
    return out


@pytest.fixture
def manager() -> FakeManager:
    m = FakeManager()
    m.seed()
    return m


async def create(client: Client, spec: dict[str, Any]) -> str:
    resp = await client.post("/v1.47/services/create", json=spec)
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert answer["Warnings"] is None
    return str(answer["ID"])


async def inspect(client: Client, key: str) -> dict[str, Any]:
    resp = await client.get(f"/v1.47/services/{key}?insertDefaults=true")
    assert resp.status == 200, await resp.text()
    found: dict[str, Any] = await resp.json()
    return found


def test_create_fills_swarms_defaults_as_inspect_shows_them(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, WEB_BODY)
        got = await inspect(client, "web")
        want = ref("service-web-inspect.json")
        assert got["ID"] == sid and len(sid) == 25
        assert got["Spec"] == want["Spec"]
        assert list(got) == [k for k in want if k in got]
        # The VIP on ingress: the recorded Swarm's node had taken 10.0.0.2 for its own ingress
        # endpoint before the service came; these seeded nodes have no attachments yet.
        assert want["Endpoint"].pop("VirtualIPs") == [{"NetworkID": "mhux3uf8d2blf9hfqhttvxctx",
                                                       "Addr": "10.0.0.3/24"}]
        assert got["Endpoint"].pop("VirtualIPs") == [{"NetworkID": INGRESS, "Addr": "10.0.0.2/24"}]
        assert got["Endpoint"] == want["Endpoint"]
        assert set(got) == set(want)
        assert got["Version"]["Index"] > 0 and got["CreatedAt"].endswith("Z")

    serve(manager, check)


def test_create_defaults_for_a_bare_spec(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        await create(client, {"Name": "bare", "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.25"}}})
        spec = (await inspect(client, "bare"))["Spec"]
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
        assert spec["EndpointSpec"] == {"Mode": "vip"}
        assert spec["TaskTemplate"]["Runtime"] == "container"
        assert spec["TaskTemplate"]["RestartPolicy"] == {"Condition": "any", "Delay": 5_000_000_000,
                                                         "MaxAttempts": 0}
        assert spec["UpdateConfig"] == spec["RollbackConfig"] == {
            "Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000, "MaxFailureRatio": 0,
            "Order": "stop-first"}
        # A stack's partial UpdateConfig: the enums' zero values read as pause and stop-first.
        partial = {"Parallelism": 2, "Delay": 10_000_000_000, "FailureAction": "rollback", "Order": ""}
        await create(client, {"Name": "stacked", "TaskTemplate": {"ContainerSpec": {"Image": "x"}},
                              "UpdateConfig": partial})
        update = (await inspect(client, "stacked"))["Spec"]["UpdateConfig"]
        assert update == {"Parallelism": 2, "Delay": 10_000_000_000, "FailureAction": "rollback",
                          "Monitor": 5_000_000_000, "MaxFailureRatio": 0, "Order": "stop-first"}

    serve(manager, check)


@pytest.mark.parametrize(("raw", "status", "message"), [
    (json.dumps(body(Name="web")), 409, ref("err-service-create-name-exists.json")["message"]),
    (json.dumps(body(Name="badc", TaskTemplate={"ContainerSpec": {"Image": "x"},
                                                "Placement": {"Constraints": ["node.labels.x=y"]}})),
     500, ref("err-service-create-bad-constraint.json")["message"]),
    (json.dumps({"Name": "noimg"}), 400, ref("err-service-create-no-image.json")["message"]),
    ("{nope", 400, ref("err-service-create-bad-json.json")["message"]),
    (json.dumps(body(Name="neg", Mode={"Replicated": {"Replicas": -1}})), 400,
     "json: cannot unmarshal number -1 into Go struct field ReplicatedService.Mode.Replicated.Replicas "
     "of type uint64"),
    (json.dumps(body(Name="str", Mode={"Replicated": {"Replicas": "3"}})), 400,
     "json: cannot unmarshal string into Go struct field ReplicatedService.Mode.Replicated.Replicas "
     "of type uint64"),
    (json.dumps(body(Name="bad_name!")), 400,
     "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component"),
    (json.dumps(body(Name="")), 400, "rpc error: code = InvalidArgument desc = meta: name must be provided"),
    (json.dumps(body(Name="empty", TaskTemplate={"ContainerSpec": {"Image": ""}})), 400,
     "rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided"),
    (json.dumps(body(Name="two", Mode={"Replicated": {}, "Global": {}})), 400,
     "must specify only one service mode"),
])  # fmt: skip
def test_create_refusals_write_nothing(manager: FakeManager, raw: str, status: int, message: str) -> None:
    async def check(client: Client) -> None:
        await create(client, WEB_BODY)
        before = [s.id for s in manager.store.find("service")]
        writes = len(manager.writes)
        resp = await client.post("/v1.47/services/create", data=raw,
                                 headers={"Content-Type": "application/json"})
        assert (resp.status, (await resp.json())["message"]) == (status, message)
        assert resp.content_type == "application/json"
        assert [s.id for s in manager.store.find("service")] == before
        assert len(manager.writes) == writes

    serve(manager, check)


def test_inspect_and_remove_by_id_name_or_prefix(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, WEB_BODY)
        assert (await inspect(client, sid))["ID"] == sid
        assert (await inspect(client, sid[:6]))["ID"] == sid
        for method in ("GET", "DELETE"):
            resp = await client.request(method, "/v1.47/services/nosuch")
            assert resp.status == 404
            assert await resp.json() == ref("err-service-unknown.json") == ref("err-service-rm-unknown.json")
        resp = await client.delete("/v1.47/services/web")
        assert resp.status == 200
        assert manager.store.count("service") == 0

    serve(manager, check)


def _task(tid: str, service: str, slot: int, node: str, state: str, desired: str = "running",
          template: dict[str, Any] | None = None) -> Create:
    status = {"State": state, "Message": state}
    extra = {"ServiceID": service, "Slot": slot, "NodeID": node, "DesiredState": desired,
             "ServiceAnnotations": {"Name": "web"}}
    return Create("task", tid, template or {}, status, extra)


def test_list_filters_and_service_status(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        web = await create(client, body(Labels={"app": "web", "tier": "front"}))
        agent = await create(client, {"Name": "agent", "Mode": {"Global": {}},
                                      "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest"}}})
        template = manager.store.get("service", web).spec["TaskTemplate"]
        await manager.write([
            _task("t1" * 12 + "a", web, 1, LEADER, "running", template=dict(template)),
            _task("t2" * 12 + "a", web, 2, DOWN, "running", template=dict(template)),  # a down node's task
            _task("t3" * 12 + "a", web, 3, WORKER, "pending", template=dict(template)),
            _task("t4" * 12 + "a", web, 3, WORKER, "failed", desired="shutdown", template=dict(template)),
            _task("g1" * 12 + "a", agent, 0, LEADER, "running"),
            _task("g2" * 12 + "a", agent, 0, WORKER, "preparing"),
            _task("g3" * 12 + "a", agent, 0, DOWN, "shutdown", desired="shutdown"),
        ])

        async def names(query: str) -> list[str]:
            resp = await client.get("/v1.47/services" + query)
            assert resp.status == 200, await resp.text()
            return [s["Spec"]["Name"] for s in await resp.json()]

        listed = await client.get("/v1.47/services?status=true")
        status = {s["Spec"]["Name"]: s["ServiceStatus"] for s in await listed.json()}
        # swarmkit counts running tasks wherever they are (the down node's too) and, for a
        # global service, the tasks whose desired state is running.
        assert status == {"web": {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0},
                          "agent": {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}}
        plain = await (await client.get("/v1.47/services")).json()
        assert all("ServiceStatus" not in s for s in plain)
        assert sorted(await names("")) == ["agent", "web"]
        assert await names('?filters={"name":{"we":true}}') == ["web"]
        assert await names(f'?filters={{"id":{{"{agent[:5]}":true}}}}') == ["agent"]
        assert await names('?filters={"label":{"app=web":true}}') == ["web"]
        assert await names('?filters={"label":{"tier":true}}') == ["web"]
        assert await names('?filters={"label":{"app=db":true}}') == []
        assert await names('?filters={"mode":{"global":true}}') == ["agent"]
        bad = await client.get('/v1.47/services?filters={"mode":{"sideways":true}}')
        assert (bad.status, (await bad.json())["message"]) == (400, "Invalid filter: 'mode'='sideways'")
        bad = await client.get('/v1.47/services?filters={"colour":{"red":true}}')
        assert (bad.status, (await bad.json())["message"]) == (400, "Invalid filter 'colour'")

    serve(manager, check)


def test_a_job_counts_its_completed_tasks_of_the_current_iteration(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        job = await create(client, {"Name": "job", "Mode": {"ReplicatedJob": {"MaxConcurrent": 2,
                                    "TotalCompletions": 2}},
                                    "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest"}}})
        assert manager.store.get("service", job).extra["JobStatus"] == {"JobIteration": {"Index": 0}}
        done = [_task(f"j{i}" * 12 + "a", job, i, WORKER, "complete", desired="complete") for i in (1, 2)]
        for op in done:  # iteration 0: stored as an empty JobIteration, as swarmkit shows it
            op.extra["JobIteration"] = {}
        await manager.write(done)
        listed = await client.get("/v1.47/services?status=true")
        status = {s["Spec"]["Name"]: s["ServiceStatus"] for s in await listed.json()}
        assert status["job"] == {"RunningTasks": 0, "DesiredTasks": 2, "CompletedTasks": 2}

    serve(manager, check)


def test_tasks_filters_and_rendering(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        web = await create(client, body(Labels={"com.docker.stack.namespace": "demo"}))
        template = dict(manager.store.get("service", web).spec["TaskTemplate"])
        await manager.write([
            _task("t1" * 12 + "a", web, 1, LEADER, "running", template=template),
            _task("t2" * 12 + "a", web, 2, WORKER, "running", template={"ContainerSpec": {"Image": "old"}}),
            _task("t3" * 12 + "a", web, 2, WORKER, "shutdown", desired="shutdown", template=template),
        ])

        async def ids(filters: str) -> list[str]:
            resp = await client.get("/v1.47/tasks", params={"filters": filters} if filters else None)
            assert resp.status == 200, await resp.text()
            return [t["ID"][:2] for t in await resp.json()]

        assert await ids("") == ["t1", "t2", "t3"]
        assert await ids('{"service":{"web":true}}') == ["t1", "t2", "t3"]
        assert await ids(f'{{"service":{{"{web}":true}}}}') == ["t1", "t2", "t3"]
        assert await ids('{"node":{"worker1":true}}') == ["t2", "t3"]
        assert await ids('{"desired-state":{"running":true}}') == ["t1", "t2"]
        assert await ids('{"_up-to-date":{"true":true},"service":{"web":true}}') == ["t1", "t3"]
        assert await ids('{"name":{"web.2":true}}') == ["t2", "t3"]
        assert await ids('{"label":{"com.docker.stack.namespace=demo":true}}') == ["t1", "t2", "t3"]
        assert await ids('{"label":{"com.docker.stack.namespace=nosuch":true}}') == []
        assert await ids('{"id":{"t3":true}}') == ["t3"]
        resp = await client.get("/v1.47/tasks", params={"filters": '{"service":{"nosuch":true}}'})
        assert (resp.status, await resp.json()) == (404, ref("err-service-unknown.json"))
        resp = await client.get("/v1.47/tasks", params={"filters": '{"desired-state":{"sleepy":true}}'})
        assert (resp.status, (await resp.json())["message"]) == (
            400, "Invalid desired-state filter: 'sleepy'")
        resp = await client.get("/v1.47/tasks/nosuch")
        assert (resp.status, await resp.json()) == (404, ref("err-task-unknown.json"))

        task = await (await client.get("/v1.47/tasks/t1t1")).json()
        want = ref("task-running.json")
        # Same fields in the same order, less what networks (not allocated yet) would add.
        assert list(task) == [k for k in want if k != "NetworksAttachments"]
        assert task["Slot"] == 1 and task["NodeID"] == LEADER and task["DesiredState"] == "running"
        assert task["Status"] == {"Timestamp": task["UpdatedAt"], "State": "running", "Message": "running",
                                  "PortStatus": {}}

    serve(manager, check)


def test_update_keeps_the_previous_spec_and_checks_the_version(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, WEB_BODY)
        first = await inspect(client, "web")
        version = first["Version"]["Index"]
        scaled = first["Spec"] | {"Mode": {"Replicated": {"Replicas": 5}}}
        resp = await client.post(f"/v1.47/services/{sid}/update?version={version}", json=scaled)
        assert (resp.status, await resp.json()) == (200, {"Warnings": None})
        second = await inspect(client, "web")
        assert second["Spec"]["Mode"] == {"Replicated": {"Replicas": 5}}
        assert second["PreviousSpec"] == first["Spec"]
        assert "UpdateStatus" not in second

        # The version read before someone else's write: Swarm's out of sequence, nothing changed.
        resp = await client.post(f"/v1.47/services/{sid}/update?version={version}", json=first["Spec"])
        assert (resp.status, (await resp.json())["message"]) == (
            500, "rpc error: code = Unknown desc = update out of sequence")
        assert (await inspect(client, "web"))["Spec"] == second["Spec"]

        # --force: the CLI increments ForceUpdate; the API keeps what it is given.
        forced = second["Spec"] | {"TaskTemplate": second["Spec"]["TaskTemplate"] | {"ForceUpdate": 1}}
        resp = await client.post(f"/v1.47/services/{sid}/update?version={second['Version']['Index']}",
                                 json=forced)
        assert resp.status == 200
        third = await inspect(client, "web")
        assert third["Spec"]["TaskTemplate"]["ForceUpdate"] == 1

        # Rollback swaps Spec and PreviousSpec whatever the body says, and says so.
        resp = await client.post(
            f"/v1.47/services/{sid}/update?rollback=previous&version={third['Version']['Index']}",
            json=third["Spec"])
        assert resp.status == 200
        rolled = await inspect(client, "web")
        assert rolled["Spec"] == third["PreviousSpec"] and rolled["PreviousSpec"] == third["Spec"]
        assert rolled["UpdateStatus"]["State"] == "rollback_started"
        assert rolled["UpdateStatus"]["Message"] == "manually requested rollback"

        for query, status, message in [
            ("version=abc", 400,
             "invalid service version 'abc': strconv.ParseUint: parsing \"abc\": invalid syntax"),
            (f"version={rolled['Version']['Index']}&rollback=sideways", 500,
             "unrecognized rollback option sideways"),
        ]:
            resp = await client.post(f"/v1.47/services/{sid}/update?{query}", json=rolled["Spec"])
            assert (resp.status, (await resp.json())["message"]) == (status, message)
        renamed = rolled["Spec"] | {"Name": "web9"}
        resp = await client.post(f"/v1.47/services/{sid}/update?version={rolled['Version']['Index']}",
                                 json=renamed)
        assert (resp.status, (await resp.json())["message"]) == (
            501, "rpc error: code = Unimplemented desc = changing service name is not supported")
        resp = await client.post("/v1.47/services/nosuch/update?version=1", json=rolled["Spec"])
        assert (resp.status, await resp.json()) == (404, ref("err-service-unknown.json"))
        assert (await inspect(client, "web")) == rolled

    serve(manager, check)


def test_rollback_without_a_previous_spec_is_swarms_refusal(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, WEB_BODY)
        version = (await inspect(client, sid))["Version"]["Index"]
        resp = await client.post(f"/v1.47/services/{sid}/update?rollback=previous&version={version}",
                                 json=WEB_BODY)
        assert (resp.status, (await resp.json())["message"]) == (
            400, f"rpc error: code = FailedPrecondition desc = service {sid} does not have a previous spec")

    serve(manager, check)


class FakeLogs:
    """A TaskLogSource: fixed lines per task; a task on ``DOWN`` cannot be reached."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, int | None]] = []

    def task_logs(self, node_id: str, task_id: str, *, follow: bool, tail: int | None, since: float | None,
                  timestamps: bool) -> AsyncIterator[LogLine]:
        self.asked.append((node_id, task_id, tail))
        return self._lines(node_id, task_id)

    async def _lines(self, node_id: str, task_id: str) -> AsyncIterator[LogLine]:
        if node_id == DOWN:
            raise ConnectionError("node is down")
        if task_id.startswith("t3"):  # its node restarted since: it keeps no log for the task
            raise LookupError(f"task {task_id} has no logs on this node")
        yield LogLine(b"hello from " + task_id[:2].encode() + b"\n", "stdout", 1_764_288_000.5)
        yield LogLine(b"oops\n", "stderr", 1_764_288_001.0)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


def test_logs_are_framed_as_docker_frames_them(manager: FakeManager) -> None:
    from manager.engineapi import ManagerEngineApi
    from nodeagent.engineapi import EngineApiServer, NodeFacts, SwarmInfo

    logs = FakeLogs()

    async def main() -> None:
        from aiohttp.test_utils import TestClient, TestServer

        server = EngineApiServer(NodeFacts(node_id=LEADER, hostname="manager1", engine_version="0.1.0"),
                                 lambda: SwarmInfo("active", LEADER, "127.0.1.1"), "127.0.0.1", 0)
        server.attach(ManagerEngineApi(manager, logs))
        async with TestClient(TestServer(server.app)) as client:
            sid = await create(client, WEB_BODY)
            await manager.write([_task("t2" * 12 + "a", sid, 2, DOWN, "running"),
                                 _task("t1" * 12 + "a", sid, 1, LEADER, "running"),
                                 _task("t3" * 12 + "a", sid, 3, LEADER, "shutdown")])
            resp = await client.get(f"/v1.47/services/{sid}/logs?details=1&stdout=1&stderr=1&tail=all")
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
            frames = _frames(await resp.read())
            details = detail_prefix([("com.docker.swarm.node.id", LEADER),
                                     ("com.docker.swarm.service.id", sid),
                                     ("com.docker.swarm.task.id", "t1" * 12 + "a")])
            assert (1, details + b" hello from t1\n") in frames
            assert (2, details + b" oops\n") in frames
            # The unreachable node's error comes last (the CLI stops reading at it); the task
            # whose node keeps no log adds nothing.
            assert frames[-1] == (3, b"Error grabbing logs: node is down\n")
            assert len(frames) == 3

            resp = await client.get("/v1.47/tasks/t1t1/logs?stdout=1&timestamps=1&tail=5")
            assert _frames(await resp.read()) == [(1, b"2025-11-28T00:00:00.500000000Z hello from t1\n")]
            assert logs.asked[-1] == (LEADER, "t1" * 12 + "a", 5)
            resp = await client.get(f"/v1.47/services/{sid}/logs")
            assert (resp.status, (await resp.json())["message"]) == (
                500, "Bad parameters: you must choose at least one stream")
            resp = await client.get("/v1.47/services/nosuch/logs?stdout=1")
            assert (resp.status, await resp.json()) == (404, ref("err-service-unknown.json"))

    asyncio.run(main())


def test_frame_and_details_are_dockers() -> None:
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert detail_prefix([("b", "x y"), ("a", "1,2")]) == b"a=1%2C2,b=x+y"


def test_a_job_counts_only_its_current_iteration(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        sid = await create(client, {"Name": "job", "Mode": {"ReplicatedJob": {"MaxConcurrent": 2,
                                                                              "TotalCompletions": 4}},
                                    "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}})
        service = manager.store.get("service", sid)
        await manager.write([Update("service", sid, service.version,
                                    extra={"JobStatus": {"JobIteration": {"Index": 2}}})])
        tasks = []
        for i, (state, iteration) in enumerate([("complete", 2), ("running", 2), ("complete", 1)]):
            tasks.append(Create("task", f"j{i}" * 12 + "a", {}, {"State": state},
                                {"ServiceID": sid, "Slot": i + 1, "DesiredState": "complete",
                                 "JobIteration": {"Index": iteration}}))
        await manager.write(tasks)
        listed = await (await client.get("/v1.47/services?status=true")).json()
        assert listed[0]["ServiceStatus"] == {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 1}
        assert listed[0]["JobStatus"] == {"JobIteration": {"Index": 2}}

    serve(manager, check)


def test_image_routes_answer_for_the_emulated_images(manager: FakeManager) -> None:
    async def check(client: Client) -> None:
        resp = await client.get("/v1.47/distribution/nginx:1.25/json")
        known = await resp.json()
        assert resp.status == 200 and known["Descriptor"]["digest"].startswith("sha256:")
        assert len(known["Descriptor"]["digest"]) == len("sha256:") + 64
        again = await (await client.get("/v1.47/distribution/docker.io/library/nginx:1.25/json")).json()
        assert again == known
        resp = await client.get("/v1.47/distribution/lab/nosuch:1/json")
        assert (resp.status, (await resp.json())["message"]) == (
            404, "manifest for lab/nosuch:1 not found: manifest unknown: manifest unknown")
        listed = await (await client.get("/v1.47/images/json")).json()
        assert "traefik/whoami:latest" in [t for image in listed for t in image["RepoTags"]]
        image = await (await client.get("/v1.47/images/traefik/whoami/json")).json()
        assert image["RepoTags"] == ["traefik/whoami:latest"] and image["Os"] == "linux"
        resp = await client.get("/v1.47/images/nosuch/json")
        assert (resp.status, (await resp.json())["message"]) == (
            404, "no such image: nosuch: No such image: nosuch:latest")

    serve(manager, check)


def test_a_pending_task_shows_the_schedulers_error(manager: FakeManager) -> None:
    """The CLI's progress prints Status.Err for a slot ("no suitable node ..."): it must be there."""
    async def check(client: Client) -> None:
        sid = await create(client, WEB_BODY)
        status = {"State": "pending", "Message": "pending task scheduling",
                  "Err": "no suitable node (scheduling constraints not satisfied on 4 nodes)"}
        await manager.write([Create("task", "p" * 25, {}, status,
                                    {"ServiceID": sid, "Slot": 1, "DesiredState": "running"})])
        task = await (await client.get("/v1.47/tasks/" + "p" * 25)).json()
        assert task["Status"]["Err"] == status["Err"]
        want = ref("task-pending-constraint.json")
        want = want[0] if isinstance(want, list) else want
        assert list(task["Status"]) == list(want["Status"])
        # Not assigned yet: no NodeID (Docker's omitempty); no networks allocated yet either.
        assert list(task) == [k for k in want if k != "NetworksAttachments"]

    serve(manager, check)
