"""The agent's secrets and configs: held in memory, mounted as files at task start, templated per
task, dropped when no task uses them; and the emulated databases that read them from *_FILE."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from test_images import env
from test_task_runtime import Recorder, http_get, task, until

from nodeagent.agent.dependencies import Dependencies, MountError, Payload
from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.health import HealthConfig, run_check
from nodeagent.agent.logs import LogStore
from nodeagent.agent.worker import StatusReporter, Worker
from nodeagent.images import resolve
from nodeagent.images.database import MysqlProcess, PostgresProcess

pytestmark = pytest.mark.unit


def payload(kind: str, pid: str, name: str, data: bytes, templated: bool = False) -> Payload:
    obj: dict[str, Any] = {"ID": pid, "Spec": {"Name": name, "Data": base64.b64encode(data).decode()}}
    if templated:
        obj["Spec"]["Templating"] = {"Name": "golang"}
    return Payload.from_api(kind, obj)


def sref(sid: str, name: str) -> dict[str, Any]:
    return {"SecretID": sid, "SecretName": name, "File": {"Name": name, "UID": "0", "GID": "0", "Mode": 292}}


def cref(cid: str, name: str, target: str) -> dict[str, Any]:
    return {
        "ConfigID": cid,
        "ConfigName": name,
        "File": {"Name": target, "UID": "0", "GID": "0", "Mode": 292},
    }


def make_worker() -> tuple[Worker, Recorder, StatusReporter, LogStore, Dependencies]:
    logs = LogStore(time.time_ns)
    deps = Dependencies(architecture="x86_64")
    executor = EmulatedExecutor(node_id="node1", hostname="worker1", listen_host="127.0.0.1", logs=logs,
                                files=lambda t: deps.files(t, "worker1"))  # fmt: skip
    recorder = Recorder()
    reporter = StatusReporter(recorder, 0.01)
    return Worker(executor, reporter, lambda: "2026-01-01T00:00:00Z", deps), recorder, reporter, logs, deps


def lines_of(logs: LogStore, task_id: str) -> list[str]:
    log = logs.get(task_id)
    return [line.text for line in log.lines] if log is not None else []


def test_a_secret_is_a_file_in_run_secrets_and_is_dropped_when_no_task_uses_it() -> None:
    async def main() -> None:
        worker, rec, reporter, logs, deps = make_worker()
        job = asyncio.create_task(reporter.run())
        cat = task("t1", "busybox", Command=["cat", "/run/secrets/db_pass"], Secrets=[sref("s1", "db_pass")])
        worker.apply(True, [cat], [], [payload("secret", "s1", "db_pass", b"s3cret")], [])
        await until(lambda: rec.last("t1").get("State") == "complete")
        assert lines_of(logs, "t1") == ["s3cret"]
        runner = worker.runners["t1"]
        assert runner.controller.facts().files == []  # the finished container keeps no copy
        assert deps.rows() == [
            {"kind": "secret", "id": "s1", "name": "db_pass", "size": 6, "templated": False}
        ]
        assert "s3cret" not in repr(deps.get("secret", "s1")) and "s3cret" not in str(rec.batches)
        # The dispatcher withdraws the secret with the task: nothing of it is left in memory.
        worker.apply(False, [], ["t1"], [], [("secret", "s1")])
        assert len(deps) == 0 and not deps.contains_bytes(b"s3cret")
        # Even a removal lost on the way: a payload no assigned task names is not kept.
        worker.apply(False, [], [], [payload("secret", "s2", "other", b"zz")], [])
        assert len(deps) == 0
        job.cancel()

    asyncio.run(main())


def test_a_complete_set_replaces_the_payloads_held() -> None:
    deps = Dependencies()
    deps.apply(False, [payload("secret", "s1", "a", b"1"), payload("config", "c1", "b", b"2")], [])
    deps.apply(True, [payload("config", "c1", "b", b"2")], [])
    assert [(r["kind"], r["id"]) for r in deps.rows()] == [("config", "c1")]


def test_a_templated_config_is_expanded_for_each_task() -> None:
    deps = Dependencies(architecture="x86_64")
    tpl = b'{{.Service.Name}} slot {{.Task.Slot}} on {{.Node.Hostname}} pw={{secret "db_pass"}}\n'
    deps.apply(False, [payload("config", "c1", "app", tpl, templated=True),
                       payload("secret", "s1", "db_pass", b"s3cret")], [])  # fmt: skip
    files = {}
    for slot in (1, 2):
        t = task(
            f"t{slot}",
            "busybox",
            Configs=[cref("c1", "app", "/etc/app.conf")],
            Secrets=[sref("s1", "db_pass")],
        )
        t["Slot"] = slot
        files[slot] = deps.files(t, "worker1")
    assert files[1]["/etc/app.conf"] == b"web slot 1 on worker1 pw=s3cret\n"
    assert files[2]["/etc/app.conf"] == b"web slot 2 on worker1 pw=s3cret\n"
    assert files[1]["/run/secrets/db_pass"] == b"s3cret"
    # A relative config target is under /.
    plain = task("t3", "busybox", Configs=[cref("c1", "app", "app.conf")])
    deps.apply(False, [payload("config", "c1", "app", b"raw")], [])
    assert deps.files(plain) == {"/app.conf": b"raw"}


def test_what_cannot_be_mounted_fails_the_task_at_starting_with_mobys_words() -> None:
    deps = Dependencies()
    with pytest.raises(MountError, match=r"^unable to get secret from secret store: secret s9 not found$"):
        deps.files(task("t1", "busybox", Secrets=[sref("s9", "x")]))
    deps.apply(False, [payload("config", "c1", "bad", b"{{.Foo}}", templated=True)], [])
    with pytest.raises(MountError) as err:
        deps.files(task("t1", "busybox", Configs=[cref("c1", "bad", "/bad")]))
    assert str(err.value) == (
        "unable to get config from config store: failed to expand templated config c1: "
        'template: expansion:1:2: executing "expansion" at <.Foo>: '
        "can't evaluate field Foo in type *template.PayloadContext"
    )

    async def main() -> None:
        worker, rec, reporter, _logs, _deps = make_worker()
        job = asyncio.create_task(reporter.run())
        worker.apply(True, [task("t1", "busybox", Command=["true"], Secrets=[sref("s9", "x")])], [])
        await until(lambda: rec.last("t1").get("State") == "failed")
        last = rec.last("t1")
        assert (last["Message"], last["Err"]) == (
            "starting",
            "starting container failed: unable to get secret from secret store: secret s9 not found",
        )
        job.cancel()

    asyncio.run(main())


def test_nginx_serves_a_config_mounted_as_its_index_page() -> None:
    async def main() -> None:
        worker, rec, reporter, _logs, _deps = make_worker()
        job = asyncio.create_task(reporter.run())
        web = task("t1", Configs=[cref("c1", "index", "/usr/share/nginx/html/index.html")])
        worker.apply(True, [web], [], [payload("config", "c1", "index", b"<h1>from a config</h1>\n")], [])
        await until(lambda: rec.last("t1").get("State") == "running")
        listener = rec.last("t1")["Listeners"][0]
        assert await http_get(listener["Addr"], listener["Port"]) == (200, "<h1>from a config</h1>\n")
        assert worker.rows()[0]["files"] == ["/usr/share/nginx/html/index.html"]
        worker.apply(False, [], ["t1"], [], [("config", "c1")])
        job.cancel()

    asyncio.run(main())


async def talk(port: int, *lines: str) -> list[str]:
    """Send ``lines`` to the line-protocol listener on 127.0.0.1:``port`` (the database images');
    the answer to each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for line in lines:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        out.append((await reader.readline()).decode().strip())
    writer.close()
    return out


def test_postgres_reads_its_password_from_the_file_and_never_logs_it() -> None:
    async def main() -> None:
        e, out, err = env(
            image="postgres:16", repository="postgres", tag="16", files={"/run/secrets/db_pass": b"s3cret"},
            env={"POSTGRES_PASSWORD_FILE": "/run/secrets/db_pass", "POSTGRES_DB": "app"},
        )
        proc = resolve("postgres:16")[0].process(e)
        assert isinstance(proc, PostgresProcess)
        await proc.start()
        run = asyncio.create_task(proc.run())
        assert 'superuser "postgres", database "app"; password read from the file /run/secrets/db_pass' \
               " (POSTGRES_PASSWORD_FILE)" in out[1]  # fmt: skip
        assert out[-1].endswith("LOG:  database system is ready to accept connections")
        assert not any("s3cret" in line for line in out + err)
        port = e.ports[5432]
        assert await talk(port, "PING", "LOGIN postgres nope app", "LOGIN postgres s3cret nosuch",
                           "LOGIN postgres s3cret app", "SELECT 1") == [
            "PONG", 'FATAL:  password authentication failed for user "postgres"',
            'FATAL:  database "nosuch" does not exist', "OK", "ERROR: swarmlet emulates no SQL",
        ]  # fmt: skip
        health = HealthConfig.from_spec({"Test": ["CMD-SHELL", "pg_isready -U postgres"], "Interval": 10**9})
        assert health is not None and await run_check(health, e)
        proc.terminate()
        assert await run == 0
        await proc.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("variables", "files", "first_error"),
    [
        ({}, {}, "Error: Database is uninitialized and superuser password is not specified."),
        (
            {"POSTGRES_PASSWORD": "a", "POSTGRES_PASSWORD_FILE": "/run/secrets/a"},
            {"/run/secrets/a": b"a"},
            "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)",
        ),
        (
            {"POSTGRES_PASSWORD_FILE": "/run/secrets/none"},
            {},
            "/usr/local/bin/docker-entrypoint.sh: line 22: /run/secrets/none: No such file or directory",
        ),
    ],
)
def test_postgres_refuses_to_start_as_its_entrypoint_does(
    variables: dict[str, str], files: dict[str, bytes], first_error: str
) -> None:
    async def main() -> None:
        e, _out, err = env(image="postgres:16", repository="postgres", tag="16", env=variables, files=files)
        proc = PostgresProcess(e)
        await proc.start()
        assert await proc.run() == 1 and err[0] == first_error and 5432 not in e.ports

    asyncio.run(main())


@pytest.mark.parametrize("image", ["mysql:8.4", "mariadb:11"])
def test_mysql_and_mariadb_read_the_root_password_file(image: str) -> None:
    async def main() -> None:
        repository, tag = image.split(":")
        variables = {"MYSQL_ROOT_PASSWORD_FILE": "/run/secrets/root", "MYSQL_USER": "app",
                     "MYSQL_PASSWORD_FILE": "/run/secrets/app", "MYSQL_DATABASE": "shop"}  # fmt: skip
        e, out, err = env(image=image, repository=repository, tag=tag, env=variables,
                          files={"/run/secrets/root": b"r00t", "/run/secrets/app": b"apppw"})  # fmt: skip
        proc = resolve(image)[0].process(e)
        assert isinstance(proc, MysqlProcess)
        await proc.start()
        text = "\n".join(out + err)
        assert 'user "root"; password read from the file /run/secrets/root (MYSQL_ROOT_PASSWORD_FILE)' in text
        assert 'user "app"; password read from the file /run/secrets/app (MYSQL_PASSWORD_FILE)' in text
        assert "ready for connections" in text and "r00t" not in text and "apppw" not in text
        assert await talk(e.ports[3306], "LOGIN root r00t", "LOGIN app apppw shop", "LOGIN app x") == [
            "OK",
            "OK",
            "ERROR 1045 (28000): Access denied for user 'app'@'localhost' (using password: YES)",
        ]
        proc.terminate()
        assert await proc.run() == 0
        await proc.close()
        bare, _o, errs = env(image=image, repository=repository, tag=tag, env={})
        refused = resolve(image)[0].process(bare)
        await refused.start()
        assert await refused.run() == 1
        assert (
            errs[0] == "[ERROR] [Entrypoint]: Database is uninitialized and password option is not specified"
        )

    asyncio.run(main())
