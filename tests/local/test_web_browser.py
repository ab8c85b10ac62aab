"""The web view in a real browser: headless Chromium against 3 managers and 2 workers as processes.

What a user would notice: five node columns, the leader marked (and the same leader as the
cluster's), a killed worker's column turning red within seconds, the kill in the timeline, and a
gossip link cut from the page showing in the node's view. Screenshots are kept under the test's
tmp dir (the paths are printed; ``pytest -s`` shows them). Chromium comes from Debian's package;
without it the test skips saying so, except under CI=true, where deploy/bootstrap.sh installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _browser import Browser, chromium_path
from _procs_manager import START_S, Cluster, wait_until
from needs import need

pytestmark = pytest.mark.slow

WEB_PORT = 8081
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    need(None if chromium_path() else "chromium is not installed (apt-get install -y chromium)")
    c = Cluster(tmp_path / "cluster")
    c.add_managers(3)
    c.add_worker("worker1")
    c.add_worker("worker2")
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def _state(host: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{host}:{WEB_PORT}/api/state", timeout=2.0) as answer:
        state: dict[str, Any] = json.loads(answer.read())
        return state


def _create_service(host: str, name: str, replicas: int) -> None:
    """``docker service create --replicas N nginx:1.25`` through the manager's Engine API."""
    spec = {"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.25"}},
            "Mode": {"Replicated": {"Replicas": replicas}}}
    request = urllib.request.Request(
        f"http://{host}:2375/v1.41/services/create", data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5.0) as answer:
        assert answer.status == 201


def _settled(host: str) -> dict[str, Any]:
    """The picture once 5 nodes are ready, a leader is known and every node's view is fetched;
    raises saying what is missing (the wait's timeout message then names it)."""
    state = _state(host)
    nodes = state["nodes"]
    if len(nodes) != 5 or state["leader"] is None:
        raise ValueError(f"{len(nodes)} nodes, leader {state['leader']!r}")
    unsettled = {n.get("hostname"): (n["colour"], n["view"].get("error") or len(n["view"]["members"]))
                 for n in nodes
                 if not (n["colour"] == "ready" and n["view"]["ok"] and len(n["view"]["members"]) == 4)}
    if unsettled:
        raise ValueError(f"not ready or without a view of 4 members: {unsettled}")
    return state


def test_the_page_shows_the_swarm_and_follows_a_kill_and_a_cut(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    managers = cluster.managers()
    # Bring-up on the loaded 2-core machine: 5 nodes ready in 3-8 s; START_S is slack for a bad moment.
    state = wait_until(lambda: _settled(managers[1].host), START_S, 0.3, "5 ready nodes and a leader")
    leader = state["leader"]["hostname"]
    # The page is served by a manager that is not the leader and will not be killed.
    page_host = next(m.host for m in managers if m.name != leader)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async def drive() -> None:
        async with Browser(tmp_path / "chromium") as browser:
            await browser.goto(f"http://{page_host}:{WEB_PORT}/")
            await browser.wait_for("document.querySelectorAll('article.node').length === 5", 20,
                                   "5 node columns")
            await browser.wait_for("document.querySelectorAll('.view .dot').length === 20", 10,
                                   "every node's membership view")
            marked = await browser.evaluate(
                "[...document.querySelectorAll('article.node.leader')].map(e => e.dataset.hostname)")
            assert marked == [leader]
            header = await browser.evaluate("document.getElementById('leader').textContent")
            assert header == f"leader {leader}"
            colours = await browser.evaluate(
                "[...document.querySelectorAll('article.node')].map(e => e.dataset.colour)")
            assert colours == ["ready"] * 5
            _create_service(page_host, "web", 4)
            # Scheduled, started and reported in 0.5-1.5 s here; 20 s of slack.
            await browser.wait_for(
                "[...document.querySelectorAll('.task.running .tname')]"
                ".filter(e => e.textContent.startsWith('web.')).length === 4", 20, "4 running web cards")
            print("\nscreenshot:", await browser.screenshot(shots / "1-ready.png"))

            killed_at = time.monotonic()
            cluster.nodes["worker2"].kill(signal.SIGKILL)
            # Measured at load average 9-12: red 1.15-1.46 s after the kill (the dispatcher's grace is
            # 1.5 s from the last heartbeat); 15 s of slack.
            await browser.wait_for(
                "document.querySelector('article.node[data-hostname=worker2]').dataset.colour === 'down'",
                15, "worker2's column to turn red")
            print(f"worker2 shown down {time.monotonic() - killed_at:.2f} s after SIGKILL")
            await browser.wait_for(
                "[...document.querySelectorAll('#timeline li')]"
                ".some(li => li.textContent.includes('worker2 is down'))", 5, "the timeline to tell it")
            print("screenshot:", await browser.screenshot(shots / "2-worker2-down.png"))

            # Cut the gossip link worker1 - manager3 from the page, as the button does.
            ids = {n["hostname"]: n["id"] for n in state["nodes"]}
            cut = {"action": "cut", "node": ids["worker1"], "peer": ids["manager3"]}
            await browser.evaluate(f"post({json.dumps(cut)})")
            await browser.wait_for(
                "document.querySelector('article.node[data-hostname=worker1] .faults')?.textContent"
                ".includes('cut from manager3')", 10, "the cut in worker1's view")
            await browser.wait_for(
                "[...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes("
                "'link worker1 - manager3 cut'))", 5, "the cut in the timeline")
            # SWIM: without the link, worker1 soon suspects manager3 (and others relay for it).
            print("screenshot:", await browser.screenshot(shots / "3-link-cut.png"))
            await browser.evaluate("post({action: 'heal'})")
            await browser.wait_for("!document.querySelector('.faults')", 10, "every link healed")

    asyncio.run(drive())


# Issue 14's must-show, driven as a user drives it: `swarmlet up --backend local`, the docker CLI,
# and `swarmlet chaos stop` and `swarmlet chaos partition`.
PROJECT = f"swarmlet-webtest-{os.getpid()}-{secrets.token_hex(2)}"


def _swarmlet(state: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`swarmlet --project PROJECT ARGS` from this tree, with the test's own state folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLET_")}
    env.update(SWARMLET_STATE=str(state), PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'proto'}")
    proc = subprocess.run([sys.executable, "-m", "deploy.cli", "--project", PROJECT, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"swarmlet {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def local_swarm(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, dict[str, str]]]:
    """3 managers and 2 workers of the local backend; yields the state folder and each node's address."""
    need(None if chromium_path() else "chromium is not installed (apt-get install -y chromium)")
    state = tmp_path / "state"
    try:
        up = _swarmlet(state, "up", "--backend", "local", "--timeout", "90")
        addrs = dict(re.findall(r"^((?:manager|worker)\d+)\s+(127\.\d+\.\d+\.\d+)\s", up.stdout, re.M))
        assert len(addrs) == 5, up.stdout
        yield state, addrs
    finally:
        subprocess.run([sys.executable, "-m", "deploy.cli", "--project", PROJECT, "down"], cwd=ROOT,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("SWARMLET_")},
                            "SWARMLET_STATE": str(state),
                            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"},
                       capture_output=True, timeout=120, check=False)


_RUNNING_WEB = ("[...document.querySelectorAll('article.node')]"
                ".filter(a => a.dataset.hostname !== '{skip}')"
                ".flatMap(a => [...a.querySelectorAll('.task.running .tname')])"
                ".filter(e => e.textContent.startsWith('web.')).length")


def test_the_page_follows_chaos_stop_and_a_partition(
    local_swarm: tuple[pathlib.Path, dict[str, str]], tmp_path: pathlib.Path
) -> None:
    state_dir, addrs = local_swarm
    settled = wait_until(lambda: _settled(addrs["manager2"]), START_S, 0.3, "5 ready nodes and a leader")
    leader = settled["leader"]["hostname"]
    page_host = addrs[next(m for m in ("manager2", "manager3", "manager1") if m != leader)]
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async def drive() -> None:
        async with Browser(tmp_path / "chromium") as browser:
            await browser.goto(f"http://{page_host}:{WEB_PORT}/")
            await browser.wait_for("document.querySelectorAll('article.node.ready').length === 5", 20,
                                   "5 ready node columns")
            created = await asyncio.to_thread(
                # Swarm waits a task's restart delay (5 s by default) before it replaces one lost
                # with its node (swarmkit does, the emulator too): this service asks for none.
                subprocess.run, ["docker", "-H", f"tcp://{page_host}:2375", "service", "create", "--detach",
                                 "--name", "web", "--replicas", "6", "--restart-delay", "0s", "nginx:1.25"],
                capture_output=True, text=True, timeout=60, check=False)
            assert created.returncode == 0, created.stderr
            await browser.wait_for(_RUNNING_WEB.format(skip="") + " === 6", 30, "6 running web cards")
            on_worker1 = await browser.evaluate(
                "document.querySelectorAll('article.node[data-hostname=worker1] .task.running').length")
            assert on_worker1 > 0  # spread over five nodes: worker1 has some of the six
            print("\nscreenshot:", await browser.screenshot(shots / "1-six-tasks.png"))

            asked = time.monotonic()
            await asyncio.to_thread(_swarmlet, state_dir, "chaos", "stop", "worker1")
            stopped = time.monotonic()
            await browser.wait_for(
                "document.querySelector('article.node[data-hostname=worker1]').dataset.colour === 'down'", 20,
                "worker1 Down")
            down = time.monotonic() - stopped
            await browser.wait_for(_RUNNING_WEB.format(skip="worker1") + " === 6", 20,
                                   "worker1's tasks running on the other nodes")
            took = time.monotonic() - stopped
            print(f"worker1 Down {down:.2f} s and 6 web tasks running elsewhere {took:.2f} s after "
                  f"`swarmlet chaos stop` returned ({time.monotonic() - asked:.2f} s after it was run)")
            print("screenshot:", await browser.screenshot(shots / "2-worker1-stopped.png"))
            # Issue 14: within 3 s. The command returns once the process has exited, and the agent
            # leaves gracefully on SIGTERM, so both were already on the page when it returned in
            # the runs so far (0.01 s after, the command taking 1-2 s, at load average 17); the
            # bound is the issue's.
            assert took < 3.0, f"worker1's tasks appeared elsewhere only {took:.2f} s after the stop"

            # A partition: worker2 cut from the three managers. Each side's membership view shows it.
            await asyncio.to_thread(_swarmlet, state_dir, "chaos", "partition", "worker2",
                                    "--from", "manager1,manager2,manager3")
            await browser.wait_for(
                "document.querySelector('article.node[data-hostname=worker2] .faults')?.textContent"
                ".includes('cut from manager1')", 10, "the cut in worker2's view")
            await browser.wait_for(
                "[...document.querySelectorAll('article.node[data-hostname=worker2] .view li')]"
                ".filter(li => /^manager/.test(li.textContent) && !li.querySelector('.dot.alive'))"
                ".length === 3",
                20, "worker2 to see the three managers suspect or dead")
            await browser.wait_for(
                "['manager1', 'manager2', 'manager3'].every(m => [...document.querySelectorAll("
                "`article.node[data-hostname=${m}] .view li`)]"
                ".some(li => li.textContent.startsWith('worker2') && !li.querySelector('.dot.alive')))",
                20, "every manager to see worker2 suspect or dead")
            await browser.wait_for(
                "[...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes("
                "'worker2: cut from'))", 10, "the partition in the timeline")
            print("screenshot:", await browser.screenshot(shots / "3-worker2-partitioned.png"))

            await asyncio.to_thread(_swarmlet, state_dir, "chaos", "heal")
            await browser.wait_for(
                "!document.querySelector('.faults') && document.querySelectorAll("
                "'article.node[data-hostname=worker2] .view .dot.alive').length === 3", 30,
                "every link healed and worker2 seeing the managers alive")
            print("screenshot:", await browser.screenshot(shots / "4-healed.png"))

    asyncio.run(drive())
