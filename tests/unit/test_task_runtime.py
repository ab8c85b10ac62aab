"""The agent's task runtime in one process: the worker, runners, the emulated executor, the reporter.

Tasks are handed to the worker as the dispatcher would send them; statuses are collected from a
reporter whose ``send`` records each batch. Web servers listen on 127.0.0.1, so these run real
sockets but no other process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.exec import ContainerFacts, ExitError
from nodeagent.agent.logs import LogStore
from nodeagent.agent.taskrun import TaskRunner, plan
from nodeagent.agent.worker import StatusReporter, Worker

pytestmark = pytest.mark.unit


def task(task_id: str, image: str = "nginx:1.25", *, state: str = "assigned", desired: str = "running",
         version: int = 10, **container: Any) -> dict[str, Any]:
    return {
        "ID": task_id,
        "Version": {"Index": version},
        "Spec": {"ContainerSpec": {"Image": image, **container}},
        "ServiceID": "svc1",
        "Slot": 1,
        "NodeID": "node1",
        "DesiredState": desired,
        "ServiceAnnotations": {"Name": "web"},
        "Annotations": {"Name": f"web.1.{task_id}"},
        "Status": {"State": state, "Message": "scheduler assigned task to node"},
    }


class Recorder:
    """A reporter's ``send`` that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, dict[str, Any]]]] = []

    async def __call__(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        self.batches.append(batch)

    def states(self, task_id: str) -> list[str]:
        return [s["State"] for b in self.batches for t, s in b if t == task_id]

    def last(self, task_id: str) -> dict[str, Any]:
        found = [s for b in self.batches for t, s in b if t == task_id]
        return found[-1] if found else {}


def make_worker(interval: float = 0.01) -> tuple[Worker, Recorder, StatusReporter, LogStore]:
    logs = LogStore(time.time_ns)
    executor = EmulatedExecutor(node_id="node1", hostname="worker1", listen_host="127.0.0.1", logs=logs)
    recorder = Recorder()
    reporter = StatusReporter(recorder, interval)
    return Worker(executor, reporter, lambda: "2026-01-01T00:00:00Z"), recorder, reporter, logs


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def http_get(host: str, port: int, path: str = "/") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def test_a_web_task_runs_serves_a_page_naming_it_and_shuts_down_when_told() -> None:
    async def main() -> None:
        worker, rec, reporter, logs = make_worker()
        job = asyncio.create_task(reporter.run())
        worker.apply(True, [task("t1", StopGracePeriod=1_000_000_000)], [])
        await until(lambda: rec.last("t1").get("State") == "running")
        status = rec.last("t1")
        assert status["Message"] == "started"
        assert status["ContainerStatus"]["PID"] > 0 and status["ContainerStatus"]["ExitCode"] == 0
        (listener,) = status["Listeners"]
        assert listener["TargetPort"] == 80 and listener["Addr"] == "127.0.0.1"
        code, body = await http_get("127.0.0.1", listener["Port"])
        assert code == 200
        assert "Welcome to nginx!" in body
        assert "nginx:1.25" in body and "web.1.t1" in body and "slot 1" in body and "node worker1" in body
        # Every state on the way was reported, in order, with Docker's messages.
        seen = rec.states("t1")
        assert seen == sorted(seen, key=["accepted", "preparing", "ready", "starting", "running"].index)
        worker.apply(False, [task("t1", desired="shutdown", version=11)], [])
        await until(lambda: rec.last("t1").get("State") == "shutdown")
        assert rec.last("t1")["Message"] == "shutdown"
        assert rec.last("t1")["ContainerStatus"]["ExitCode"] == 0  # nginx honours SIGTERM
        assert any('"GET / HTTP/1.1" 200' in line.text for line in logs.log("t1").lines)
        job.cancel()

    asyncio.run(main())


def test_exit_3_fails_with_dockers_error_and_echo_completes() -> None:
    async def main() -> None:
        worker, rec, reporter, logs = make_worker()
        job = asyncio.create_task(reporter.run())
        worker.apply(True, [
            task("bad", "busybox", Command=["sh", "-c", "echo going; exit 3"]),
            task("good", "alpine:3.19", Args=["echo", "job-done"]),
        ], [])  # fmt: skip
        await until(lambda: rec.last("bad").get("State") == "failed")
        await until(lambda: rec.last("good").get("State") == "complete")
        bad = rec.last("bad")
        assert bad["Err"] == "task: non-zero exit (3)" and bad["Message"] == "started"
        assert bad["ContainerStatus"]["ExitCode"] == 3
        good = rec.last("good")
        assert good["Message"] == "finished" and "Err" not in good
        assert good["ContainerStatus"]["ExitCode"] == 0
        assert [line.text for line in logs.log("bad").lines] == ["going"]
        assert [line.text for line in logs.log("good").lines] == ["job-done"]
        job.cancel()

    asyncio.run(main())


def test_sleep_ignores_sigterm_and_is_killed_after_the_grace_period() -> None:
    async def main() -> None:
        worker, rec, reporter, _ = make_worker()
        job = asyncio.create_task(reporter.run())
        worker.apply(True, [task("s", "busybox", Args=["sleep", "3600"], StopGracePeriod=200_000_000)], [])
        await until(lambda: rec.last("s").get("State") == "running")
        began = time.monotonic()
        worker.apply(False, [task("s", "busybox", Args=["sleep", "3600"], StopGracePeriod=200_000_000,
                                  desired="shutdown", version=11)], [])  # fmt: skip
        await until(lambda: rec.last("s").get("State") == "shutdown")
        assert time.monotonic() - began >= 0.19
        assert rec.last("s")["ContainerStatus"]["ExitCode"] == 137
        job.cancel()

    asyncio.run(main())


def test_a_task_told_to_stop_before_it_started_is_shut_down_without_running() -> None:
    async def main() -> None:
        worker, rec, reporter, _ = make_worker()
        worker.apply(True, [task("x", desired="shutdown")], [])
        await reporter.flush()
        assert rec.states("x") == ["shutdown"]
        assert "x" not in worker.runners

    asyncio.run(main())


def test_a_job_task_desired_complete_is_started_not_stopped() -> None:
    # Jobs: the orchestrator asks for "complete", which means run to the end.
    step = plan({"job": task("job", desired="complete")}, {}, done=set())
    assert (step.start, step.never_started) == (["job"], [])


def test_plan_starts_updates_drops_and_reports_lost_tasks() -> None:
    assigned = {
        "new": task("new"),
        "seen": task("seen", version=12),
        "lost": task("lost", state="running"),
        "over": task("over", state="complete"),
        "stop": task("stop", desired="shutdown"),
        # Replaced while this node was Down, and the agent restarted since: nothing to stop, and
        # Swarm shows it Shutdown, not failed.
        "replaced": task("replaced", state="running", desired="shutdown"),
    }
    step = plan(assigned, {"seen": 11, "gone": 3}, done=set())
    assert step.start == ["new"]
    assert step.update == ["seen"]
    assert step.drop == ["gone"]
    assert step.lost == ["lost"]
    assert step.never_started == ["stop", "replaced"]
    assert plan(assigned, {}, done={"new", "seen", "lost", "stop", "replaced"}).start == []


class StubController:
    """A controller whose steps are scripted: the seam's contract without any emulation."""

    def __init__(self, fail_at: str = "", exit_code: int = 0) -> None:
        self.fail_at = fail_at
        self.exit_code = exit_code
        self.calls: list[str] = []

    async def prepare(self) -> None:
        self.calls.append("prepare")
        if self.fail_at == "prepare":
            raise RuntimeError("No such image: lab/nosuch:1")

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_at == "start":
            raise RuntimeError("port is already allocated")

    async def wait(self) -> None:
        self.calls.append("wait")
        if self.exit_code:
            raise ExitError(self.exit_code)

    async def shutdown(self) -> None:
        self.calls.append("shutdown")

    async def remove(self) -> None:
        self.calls.append("remove")

    def facts(self) -> ContainerFacts:
        return ContainerFacts("c" * 64, 42, self.exit_code)


@pytest.mark.parametrize(
    ("fail_at", "exit_code", "final", "message", "err"),
    [
        ("", 0, "complete", "finished", None),
        ("", 1, "failed", "started", "task: non-zero exit (1)"),
        ("prepare", 0, "rejected", "preparing", "No such image: lab/nosuch:1"),
        ("start", 0, "failed", "starting", "port is already allocated"),
    ],
)
def test_the_state_machine_with_a_stub_controller(
    fail_at: str, exit_code: int, final: str, message: str, err: str | None
) -> None:
    reports: list[dict[str, Any]] = []

    async def main() -> None:
        ctl = StubController(fail_at, exit_code)
        runner = TaskRunner(task("t"), ctl, lambda _id, s: reports.append(s), lambda: "2026-01-01T00:00:00Z")
        runner.start()
        await until(lambda: runner.finished)

    asyncio.run(main())
    assert reports[0]["State"] == "accepted" and reports[0]["Message"] == "accepted"
    assert reports[-1]["State"] == final and reports[-1]["Message"] == message
    assert reports[-1].get("Err") == err
    messages = {s["State"]: s["Message"] for s in reports}
    assert messages["preparing"] == "preparing"
    if final in ("complete", "failed") and fail_at != "start":
        assert messages["ready"] == "prepared" and messages["starting"] == "starting"
        assert messages["running"] == "started"


def test_reports_are_coalesced_into_batches_and_retried_after_a_failed_send() -> None:
    async def main() -> None:
        sent: list[list[tuple[str, dict[str, Any]]]] = []
        fail = [True]

        async def send(batch: list[tuple[str, dict[str, Any]]]) -> None:
            if fail[0]:
                fail[0] = False
                raise ConnectionError("no manager")
            sent.append(batch)

        reporter = StatusReporter(send, 0.05)
        job = asyncio.create_task(reporter.run())
        for state in ("accepted", "preparing", "ready", "starting", "running"):
            reporter.report("a", {"State": state})
        reporter.report("b", {"State": "running"})
        reporter.report("b", {"State": "accepted"})  # late and behind: the further one is kept
        await until(lambda: bool(sent))
        assert sent == [[("a", {"State": "running"}), ("b", {"State": "running"})]]
        assert not reporter.pending
        job.cancel()

    asyncio.run(main())
