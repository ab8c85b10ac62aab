"""Volumes and the container file system: named volumes per node, the shared driver, binds and
tmpfs, busybox writing and counting, the node's /volumes routes, and the databases (mongo
included) keeping their users and data in a volume."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_agent_dependencies import talk

from nodeagent.agent.volumes import SHARED_DRIVER, MountError, VolumeStore
from nodeagent.engineapi import EngineApiServer, NodeFacts
from nodeagent.engineapi.system import SwarmInfo
from nodeagent.images import resolve
from nodeagent.images.base import TaskEnv
from nodeagent.images.database import MongoProcess, PostgresProcess
from nodeagent.images.shell import run_argv

pytestmark = pytest.mark.unit

COUNT = "echo start >> /data/starts; wc -l /data/starts"


def env(mounts: Any = (), **kw: Any) -> tuple[TaskEnv, list[str], list[str]]:
    out: list[str] = []
    err: list[str] = []
    base: dict[str, Any] = dict(
        task_id="t1", task_name="c.1.t1", service_name="c", slot=1, node_id="n1", node_hostname="worker1",
        image="busybox", repository="busybox", tag="latest", command=[], args=[], env={},
        files={}, listen_host="127.0.0.1", stdout=out.append, stderr=err.append, hostname="c0ffee000001",
    )  # fmt: skip
    base.update(kw)
    e = TaskEnv(**base)
    e.set_mounts(list(mounts))
    return e, out, err


def task(*mounts: dict[str, Any], task_id: str = "t1") -> dict[str, Any]:
    return {"ID": task_id, "Spec": {"ContainerSpec": {"Image": "busybox", "Mounts": list(mounts)}}}


def volume(source: str, target: str = "/data", driver: str = "", **more: Any) -> dict[str, Any]:
    mount: dict[str, Any] = {"Type": "volume", "Source": source, "Target": target, **more}
    if driver:
        mount["VolumeOptions"] = {"DriverConfig": {"Name": driver}}
    return mount


def starts(store: VolumeStore, mount: dict[str, Any]) -> str:
    e, out, err = env(store.mounts(task(mount)))
    assert asyncio.run(run_argv(["sh", "-c", COUNT], e)) == 0, err
    return out[-1]


def test_a_named_volume_is_the_nodes_own_and_keeps_its_data_across_tasks(tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared"
    node1 = VolumeStore(tmp_path / "n1" / "volumes", shared)
    node2 = VolumeStore(tmp_path / "n2" / "volumes", shared)
    assert starts(node1, volume("counts")) == "1 /data/starts"
    assert starts(node1, volume("counts")) == "2 /data/starts"  # a new task, the same node
    assert starts(node2, volume("counts")) == "1 /data/starts"  # another node counts on its own
    (listed,) = node1.volumes()
    assert listed["Name"] == "counts" and listed["Driver"] == "local" and listed["Scope"] == "local"
    assert listed["Mountpoint"] == str(tmp_path / "n1" / "volumes" / "counts" / "_data")
    assert (tmp_path / "n1" / "volumes" / "counts" / "_data" / "starts").read_text() == "start\nstart\n"
    # The shared driver: every node counts in one volume.
    assert starts(node1, volume("together", driver=SHARED_DRIVER)) == "1 /data/starts"
    assert starts(node2, volume("together", driver=SHARED_DRIVER)) == "2 /data/starts"
    assert node2.get("together")["Scope"] == "global"
    assert [v["Name"] for v in node2.volumes()] == ["counts", "together"]


def test_labels_from_the_mount_and_docker_refusals(tmp_path: pathlib.Path) -> None:
    store = VolumeStore(tmp_path / "volumes", None)
    store.mounts(task(volume("app_db", VolumeOptions={"Labels": {"com.docker.stack.namespace": "app"}})))
    assert store.get("app_db")["Labels"] == {"com.docker.stack.namespace": "app"}
    with pytest.raises(MountError, match='error looking up volume plugin nfs: plugin "nfs" not found'):
        store.mounts(task(volume("vx", driver="nfs")))
    with pytest.raises(MountError, match="has no folder on this node"):
        store.mounts(task(volume("vx", driver=SHARED_DRIVER)))
    with pytest.raises(MountError) as bind:
        store.mounts(task({"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}))
    assert str(bind.value) == ('invalid mount config for type "bind": bind source path does not exist: '
                               "/no/such/dir")
    with pytest.raises(Exception, match="get nosuch: no such volume"):
        store.get("nosuch")
    # In use: refused naming the container; free once it is released.
    store.mounts(task(volume("busy")), "c0ffee")
    with pytest.raises(Exception, match=r"remove busy: volume is in use - \[c0ffee\]"):
        store.remove("busy")
    store.release("c0ffee")
    store.remove("busy")
    assert [v["Name"] for v in store.volumes()] == ["app_db"]


def test_bind_tmpfs_read_only_and_the_containers_own_layer(tmp_path: pathlib.Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello\n")
    store = VolumeStore(tmp_path / "volumes", None)
    mounts = store.mounts(task(
        {"Type": "bind", "Source": str(tmp_path / "site"), "Target": "/www", "ReadOnly": True},
        {"Type": "tmpfs", "Target": "/scratch"},
    ))  # fmt: skip
    e, out, err = env(mounts, files={"/run/secrets/pw": b"s3cret"})
    script = ("cat /www/index.html; echo x > /www/new; echo y >> /scratch/f; echo y >> /scratch/f; "
              "wc -l /scratch/f; echo z > /etc/motd; cat /etc/motd; echo w > /run/secrets/pw")  # fmt: skip
    assert asyncio.run(run_argv(["sh", "-c", script], e)) == 1
    assert out == ["hello", "2 /scratch/f", "z"]
    assert err == ["sh: can't create /www/new: Read-only file system",
                   "sh: can't create /run/secrets/pw: Read-only file system"]  # fmt: skip
    assert not (tmp_path / "site" / "new").exists()
    assert e.read_file("/run/secrets/pw") == b"s3cret"
    # A new container of the same task sees neither the tmpfs nor its layer again.
    e2, _out2, _ = env(store.mounts(task({"Type": "tmpfs", "Target": "/scratch"})))
    assert asyncio.run(run_argv(["sh", "-c", "cat /scratch/f /etc/motd"], e2)) == 1


def test_the_nodes_volume_routes_answer_as_docker(tmp_path: pathlib.Path) -> None:
    store = VolumeStore(tmp_path / "volumes", tmp_path / "shared")
    store.mounts(task(volume("counts", VolumeOptions={"Labels": {"a": "1"}})), "c1")
    facts = NodeFacts(node_id="n1", hostname="worker1", engine_version="0.1.0")
    server = EngineApiServer(facts, lambda: SwarmInfo(), "127.0.0.1", 0, volumes=lambda: store)

    async def main() -> None:
        async with TestClient(TestServer(server.app)) as client:
            listed = await (await client.get("/v1.47/volumes")).json()
            assert [v["Name"] for v in listed["Volumes"]] == ["counts"] and listed["Warnings"] is None
            label = {"filters": json.dumps({"label": {"a=2": True}})}
            filtered = await (await client.get("/volumes", params=label)).json()
            assert filtered["Volumes"] == []
            in_use = {"filters": '{"dangling":["true"]}'}
            dangling = await (await client.get("/volumes", params=in_use)).json()
            assert dangling["Volumes"] == []
            missing = await client.get("/volumes/nosuch")
            assert missing.status == 404
            assert (await missing.json()) == {"message": "get nosuch: no such volume"}
            made = await client.post("/volumes/create", json={"Name": "other", "Driver": SHARED_DRIVER})
            assert made.status == 201 and (await made.json())["Scope"] == "global"
            busy = await client.delete("/volumes/counts")
            assert busy.status == 409 and "volume is in use - [c1]" in (await busy.json())["message"]
            assert (await client.delete("/volumes/other")).status == 204
            plugin = await client.post("/volumes/create", json={"Name": "vx", "Driver": "nfs"})
            assert plugin.status == 404

    asyncio.run(main())


async def _serve(proc: Any, e: TaskEnv, port: int, *lines: str) -> list[str]:
    await proc.start()
    run = asyncio.create_task(proc.run())
    try:
        return await talk(e.ports[port], *lines)
    finally:
        proc.terminate()
        assert await run == 0
        await proc.close()


def test_mongo_creates_its_root_user_from_the_secret_files_and_keeps_data_in_its_volume(
    tmp_path: pathlib.Path,
) -> None:
    store = VolumeStore(tmp_path / "volumes", None)
    files = {"/run/secrets/mongo_user": b"adminuser\n", "/run/secrets/mongo_password": b"Pw-1234\n"}
    variables = {"MONGO_INITDB_ROOT_USERNAME_FILE": "/run/secrets/mongo_user",
                 "MONGO_INITDB_ROOT_PASSWORD_FILE": "/run/secrets/mongo_password"}  # fmt: skip

    def mongo() -> tuple[Any, TaskEnv, list[str]]:
        e, out, _ = env(store.mounts(task(volume("db", "/data/db"))), image="mongo", repository="mongo",
                        env=variables, files=dict(files))  # fmt: skip
        proc = resolve("mongo")[0].process(e)
        assert isinstance(proc, MongoProcess)
        return proc, e, out

    proc, e, out = mongo()
    answers = asyncio.run(_serve(proc, e, 27017, "LOGIN adminuser nope", "LOGIN adminuser Pw-1234",
                                 "SET k v1"))
    assert answers == ["MongoServerError: Authentication failed.", "OK", "OK"]
    assert ('Successfully added user: { "user" : "adminuser", "roles" : '
            '[ { "role" : "root", "db" : "admin" } ] }') in out
    assert '"msg":"Waiting for connections"' in out[-1]
    assert not any("Pw-1234" in line for line in out)
    state = (tmp_path / "volumes" / "db" / "_data" / "swarmlet-mongo.json").read_text()
    assert "Pw-1234" not in state  # a salted hash, never the password
    # The task replaced: the data directory holds a database; no user is created, data is there.
    proc, e, out = mongo()
    assert asyncio.run(_serve(proc, e, 27017, "LOGIN adminuser Pw-1234", "GET k")) == ["OK", "v1"]
    assert not any("Successfully added user" in line for line in out)


@pytest.mark.parametrize(
    ("variables", "files", "code", "first"),
    [
        ({"MONGO_INITDB_ROOT_USERNAME": "admin"}, {}, 1,
         "error: missing 'MONGO_INITDB_ROOT_USERNAME' or 'MONGO_INITDB_ROOT_PASSWORD'"),
        ({"MONGO_INITDB_ROOT_USERNAME_FILE": "/run/secrets/u", "MONGO_INITDB_ROOT_PASSWORD": "p"}, {}, 1,
         "/usr/local/bin/docker-entrypoint.sh: line 22: /run/secrets/u: No such file or directory"),
    ],
)
def test_mongo_refuses_as_its_entrypoint_does(
    variables: dict[str, str], files: dict[str, bytes], code: int, first: str
) -> None:
    async def main() -> None:
        e, _out, err = env(image="mongo", repository="mongo", env=variables, files=files)
        proc = MongoProcess(e)
        await proc.start()
        assert await proc.run() == code and first in err and 27017 not in e.ports

    asyncio.run(main())


def test_mongo_without_credentials_runs_without_access_control() -> None:
    e, out, _ = env(image="mongo", repository="mongo")
    answers = asyncio.run(_serve(MongoProcess(e), e, 27017, "LOGIN anyone anything", "GET k"))
    assert answers == ["OK", "(nil)"]
    assert "Access control is not enabled for the database" in out[0]


def test_postgres_in_a_volume_skips_initialisation_and_keeps_the_first_password(
    tmp_path: pathlib.Path,
) -> None:
    store = VolumeStore(tmp_path / "volumes", None)

    def postgres(password: str) -> tuple[Any, TaskEnv, list[str]]:
        e, out, _ = env(store.mounts(task(volume("pg", "/var/lib/postgresql/data"))), image="postgres:16",
                        repository="postgres", tag="16", env={"POSTGRES_PASSWORD": password})  # fmt: skip
        return PostgresProcess(e), e, out

    proc, e, _ = postgres("first")
    assert asyncio.run(_serve(proc, e, 5432, "LOGIN postgres first", "SET k kept")) == ["OK", "OK"]
    proc, e, out = postgres("second")
    answers = asyncio.run(_serve(proc, e, 5432, "LOGIN postgres second", "LOGIN postgres first", "GET k"))
    assert answers == ['FATAL:  password authentication failed for user "postgres"', "OK", "kept"]
    assert "PostgreSQL Database directory appears to contain a database; Skipping initialization" in out
    # Without a volume the data is the container's own: a new task starts from nothing.
    e2, _, _ = env(image="postgres:16", repository="postgres", tag="16", env={"POSTGRES_PASSWORD": "x"})
    assert asyncio.run(_serve(PostgresProcess(e2), e2, 5432, "LOGIN postgres x", "GET k")) == ["OK", "(nil)"]
