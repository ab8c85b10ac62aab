"""The node side of promote and demote: RoleSwitch starts, retires and restarts a role, keeps the
role in DATA_DIR/role, gossips it, and gives each run of a role its own metrics registry."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

import nodeagent.roles as roles
from nodeagent.options import parse_options
from nodeagent.roles import NodeContext, RoleSwitch, read_role_file


class FakeGossip:
    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}

    def members(self) -> list[Any]:
        return []

    def subscribe(self, callback: Any) -> None:
        pass

    def set_meta(self, **changes: Any) -> None:
        self.meta.update(changes)


class FakeManager:
    """Stands in for the manager role: counts its starts in its own registry."""

    events: ClassVar[list[str]] = []

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        Counter("fake_manager_starts", "starts", registry=context.registry).inc()
        assert context.options.role == "manager"

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def retire(self) -> None:
        self.events.append("retire")


def _context(tmp_path: pathlib.Path) -> tuple[NodeContext, FakeGossip]:
    options = parse_options(
        ["--role", "worker", "--hostname", "w1", "--advertise-addr", "127.0.0.1",
         "--data-dir", str(tmp_path), "--cluster-port", "4377"],
        environ={},
    )  # fmt: skip
    gossip = FakeGossip()
    context = NodeContext(options=options, node_id="n" * 25, hostname="w1", registry=CollectorRegistry(),
                          gossip=gossip)  # fmt: skip
    return context, gossip


async def _settle(switch: RoleSwitch) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    task = switch._task
    if task is not None:
        await task


def test_promote_demote_and_promote_again(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roles, "load_role", lambda name: FakeManager)
    FakeManager.events = []
    context, gossip = _context(tmp_path)

    changes: list[str] = []

    async def changed(role: str) -> None:
        changes.append(role)

    async def run() -> None:
        switch = RoleSwitch(context, "worker", on_change=changed)
        await switch.start()
        assert switch.extension is None and read_role_file(str(tmp_path)) is None
        switch.want("manager")
        await _settle(switch)
        assert switch.role == "manager" and read_role_file(str(tmp_path)) == "manager"
        assert gossip.meta == {"role": "manager", "addr": "127.0.0.1:4377"}
        assert "fake_manager_starts_total 1.0" in generate_latest(context.registry).decode()
        switch.want("manager")  # every heartbeat answer says it again: nothing happens
        switch.want("worker")
        await _settle(switch)
        assert switch.role == "worker" and read_role_file(str(tmp_path)) == "worker"
        assert gossip.meta == {"role": "worker", "addr": "127.0.0.1"}
        assert "fake_manager" not in generate_latest(context.registry).decode()
        switch.want("manager")  # promoted again: the same metrics register again
        await _settle(switch)
        assert switch.role == "manager"
        await switch.stop()

    asyncio.run(run())
    assert FakeManager.events == ["start", "retire", "start", "stop"]
    assert changes == ["manager", "worker", "manager"]  # node_info and mDNS follow each change


def test_a_role_that_fails_to_start_leaves_a_worker_and_waits_before_trying_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(FakeManager):
        async def start(self) -> None:
            raise OSError("cannot listen")

    monkeypatch.setattr(roles, "load_role", lambda name: Broken)
    FakeManager.events = []
    context, _gossip = _context(tmp_path)

    async def run() -> None:
        switch = RoleSwitch(context, "worker")
        switch.want("manager")
        first = switch._task
        await _settle(switch)
        assert switch.role == "worker" and switch.extension is None
        assert "fake_manager" not in generate_latest(context.registry).decode()
        switch.want("manager")  # within the pause after a failure: not tried again at once
        assert switch._task is first

    asyncio.run(run())
    assert FakeManager.events == ["stop"]


def test_a_manager_entering_and_leaving_a_swarm_at_run_time(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker swarm init`` starts the role with an announcement; ``docker swarm leave`` retires it."""
    monkeypatch.setattr(roles, "load_role", lambda name: FakeManager)
    FakeManager.events = []
    context, gossip = _context(tmp_path)
    changes: list[str] = []

    async def changed(role: str) -> None:
        changes.append(role)

    async def run() -> None:
        switch = RoleSwitch(context, "manager", on_change=changed)
        await switch.start(announce=True)
        assert switch.role == "manager" and gossip.meta["role"] == "manager"
        await switch.leave()
        assert switch.role == "worker" and switch.extension is None
        assert gossip.meta == {"role": "worker", "addr": "127.0.0.1"}
        assert "fake_manager" not in generate_latest(context.registry).decode()
        await switch.leave()  # nothing runs: nothing to retire

    asyncio.run(run())
    assert FakeManager.events == ["start", "retire"]
    assert changes == ["manager", "worker"]
