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
import pathlib
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _browser import Browser, chromium_path
from _procs_manager import Cluster, wait_until
from needs import need

pytestmark = pytest.mark.slow

WEB_PORT = 8081


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


def _settled(host: str) -> dict[str, Any] | None:
    """The picture once 5 nodes are ready, a leader is known and every node's view is fetched."""
    state = _state(host)
    nodes = state["nodes"]
    if len(nodes) != 5 or state["leader"] is None:
        return None
    if not all(n["colour"] == "ready" and n["view"]["ok"] and len(n["view"]["members"]) == 4 for n in nodes):
        return None
    return state


def test_the_page_shows_the_swarm_and_follows_a_kill_and_a_cut(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    managers = cluster.managers()
    # Bring-up on the loaded 2-core machine: 5 nodes ready in 3-8 s; 60 s is slack for a bad moment.
    state = wait_until(lambda: _settled(managers[1].host), 60, 0.3, "5 ready nodes and a leader")
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
