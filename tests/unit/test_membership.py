"""A node's membership (nodeagent/membership.py): --no-swarm, join and leave at run time, restarts.

The agent session is a fake module (the dispatcher's side is the local process test's,
tests/local/test_swarm_cli.py): it joins at once, or refuses with the managers' words. Workers
only here: the manager role's start and retirement are test_role_switch's and the process test's.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import types
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nodeagent.engineapi import ApiError, JoinFailed
from nodeagent.identity import new_id
from nodeagent.membership import SWARM_FILE, NodeSwarm, read_swarm_record
from nodeagent.options import OptionsError, parse_options
from nodeagent.roles import NodeContext

BASE = ["--hostname", "node1", "--advertise-addr", "127.0.0.5"]


class JoinRefused(Exception):
    pass


class FakeSession:
    """Joins at once when the token file says ``good``, under an ID it draws when it has none
    (the CA's choice); else refused in the dispatcher's words."""

    def __init__(self, context: Any, managers: Any, *, role: Any = None, on_role: Any = None,
                 join_role: str | None = None) -> None:
        self.options = context.options
        self.managers = managers
        self.join_role = join_role
        self.node_id = context.node_id
        self.joined = False
        self.joined_role = ""
        self.connected_to = ""
        self.stopped = asyncio.Event()
        made.append(self)

    async def join(self) -> None:
        state = pathlib.Path(self.options.data_dir) / "session.json"
        if not state.exists():
            token = pathlib.Path(self.options.token_file).read_text().strip()
            if token != "good":
                raise JoinRefused("A valid join token is necessary to join this cluster")
            self.node_id = self.node_id or new_id()
            state.write_text(json.dumps({"joined": True, "node_id": self.node_id}))
            self.joined_role = "worker"
        self.joined = True

    async def run(self) -> None:
        await self.join()
        self.connected_to = self.managers()[0]
        await self.stopped.wait()

    async def stop(self) -> None:
        self.stopped.set()


made: list[FakeSession] = []
SESSION = types.SimpleNamespace(AgentSession=FakeSession, JoinRefused=JoinRefused)


def swarm_of(tmp_path: pathlib.Path, refused: list[str]) -> NodeSwarm:
    options = parse_options([*BASE, "--no-swarm", "--data-dir", str(tmp_path)], {})
    context = NodeContext(options=options, node_id="n" * 25, hostname="node1", registry=CollectorRegistry(),
                          gossip=None)  # type: ignore[arg-type]

    def spawn(coro: Any, name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    return NodeSwarm(context, session_module=SESSION, spawn=spawn, on_refused=refused.append)  # type: ignore[arg-type]


def test_no_swarm_needs_no_role_and_excludes_the_join_flags() -> None:
    opts = parse_options([*BASE, "--no-swarm"], {})
    assert opts.no_swarm and opts.role == "worker" and opts.join == ()
    assert parse_options([*BASE], {"SWARMLET_NO_SWARM": "true"}).no_swarm
    for extra in (["--join", "m1:2377"], ["--bootstrap"], ["--discover", "mdns"]):
        with pytest.raises(OptionsError, match="--no-swarm and --"):
            parse_options([*BASE, "--no-swarm", *extra], {})
    with pytest.raises(OptionsError, match="--cluster-port 7946 is already taken by --gossip-port"):
        parse_options([*BASE, "--no-swarm", "--cluster-port", "7946"], {})


def test_a_blank_node_joins_leaves_and_comes_back_after_a_restart(tmp_path: pathlib.Path) -> None:
    refused: list[str] = []

    async def main() -> None:
        swarm = swarm_of(tmp_path, refused)
        await swarm.start()
        assert not swarm.in_swarm() and swarm.session is None and swarm.role == ""

        granted = await swarm.join(["m1:2377"], "good", "", timeout=5)
        assert granted == "worker" and swarm.in_swarm() and swarm.role == "worker"
        assert made[-2].join_role == "manager"  # the token decides, as in Swarm
        # The join went with no ID; the node runs (and its session) under the one the CA chose.
        chosen = made[-1].node_id
        assert made[-2].node_id == chosen and chosen != "n" * 25
        assert swarm.context.node_id == chosen
        assert (tmp_path / "node_id").read_text().strip() == chosen
        assert swarm.connected_to() == "m1:2377"
        record = read_swarm_record(str(tmp_path))
        assert record is not None and record["join"] == ["m1:2377"] and record["role"] == "worker"
        assert swarm.options.gossip_seeds() == ("m1:7946",)  # gossip follows the swarm joined
        await swarm.stop()

        # A restart with the same flags comes back in the swarm, without joining again.
        again = swarm_of(tmp_path, refused)
        await again.start()
        await asyncio.sleep(0.05)
        assert again.in_swarm() and made[-1].joined and made[-1].options.join == ("m1:2377",)

        await again.leave()
        assert not again.in_swarm() and again.session is None
        assert not (tmp_path / SWARM_FILE).exists() and not (tmp_path / "session.json").exists()
        assert not (tmp_path / "swarm").exists()
        # The swarm's ID is forgotten: the blank node runs under a new one of its own.
        blank_id = (tmp_path / "node_id").read_text().strip()
        assert again.context.node_id == blank_id and blank_id not in ("n" * 25, chosen)
        assert (await asyncio.wait_for(made[-1].stopped.wait(), 1)) is True

        # The ID was forgotten with the swarm: the next join gets a new one.
        await again.join(["m1:2377"], "good", "", timeout=5)
        assert again.context.node_id not in ("n" * 25, chosen, blank_id)
        await again.stop()

    asyncio.run(main())
    assert refused == []


def test_a_refused_join_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    refused: list[str] = []

    async def main() -> None:
        swarm = swarm_of(tmp_path, refused)
        await swarm.start()
        with pytest.raises(JoinFailed, match="A valid join token is necessary"):
            await swarm.join(["m1:2377"], "bad", "", timeout=5)
        assert not swarm.in_swarm()
        assert not (tmp_path / SWARM_FILE).exists() and not (tmp_path / "swarm").exists()
        # A refusal at run time is the client's answer, never the process's exit.
        assert refused == []
        assert await swarm.join(["m1:2377"], "good", "127.0.0.6", timeout=5) == "worker"
        assert swarm.options.advertise_addr == "127.0.0.6"
        # Two requests racing past the route's check: the second is refused under the lock.
        with pytest.raises(ApiError) as again:
            await swarm.join(["m1:2377"], "good", "", timeout=5)
        assert again.value.status == 503 and "already part of a swarm" in again.value.message
        await swarm.leave()
        with pytest.raises(ApiError):
            await swarm.leave()
        await swarm.stop()

    asyncio.run(main())
