"""The web view's HTTP side on 127.0.0.1 with a fake manager: assets, JSON, events, refusals."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import aiohttp

from manager.state.store import Create, Store, encode_batch
from manager.web import WebView

NODE = {"Role": "manager", "Availability": "active"}
JSON = {"Content-Type": "application/json"}


class _Gossip:
    def members(self) -> list[Any]:
        return []

    def subscribe(self, callback: Any) -> None:
        pass


def _runtime(store: Store) -> Any:
    shell = SimpleNamespace(leader_id="n1", node=SimpleNamespace(term=3), role=lambda: "leader")
    context = SimpleNamespace(node_id="n1", hostname="manager1", gossip=_Gossip())
    return SimpleNamespace(store=store, shell=shell, context=context, time_scale=1.0)


def _write(store: Store, *ops: Any) -> None:
    assert store.apply(store.applied_index + 1, encode_batch(list(ops), now="2026-01-01T00:00:00Z")).ok
    store.notify_watches()


def test_assets_state_events_and_refusals() -> None:
    store = Store()
    _write(store, Create("node", "n1", NODE, {"State": "ready"}, {"Description": {"Hostname": "manager1"}}))

    async def run() -> None:
        view = WebView(_runtime(store), "127.0.0.1", 0)
        await view.start()
        base = f"http://127.0.0.1:{view.port}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/") as r:
                    assert r.status == 200 and r.content_type == "text/html"
                    assert '<script src="/static/app.js">' in await r.text()
                for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
                    async with http.get(f"{base}/static/{name}") as r:
                        assert (r.status, r.content_type) == (200, kind)
                async with http.get(f"{base}/static/index.py") as r:
                    assert r.status == 404 and (await r.json())["message"] == "not found"
                async with http.get(f"{base}/api/state") as r:
                    state = await r.json()
                assert state["leader"] == {"id": "n1", "hostname": "manager1"} and state["term"] == 3
                assert [n["hostname"] for n in state["nodes"]] == ["manager1"]

                for body, message in (
                    ("not json", "the body must be JSON"),
                    ('["cut"]', "the body must be a JSON object"),
                    ('{"action": "explode"}', "action must be cut, isolate or heal"),
                    ('{"action": "cut", "node": "nobody"}', "node: no node 'nobody'"),
                ):
                    async with http.post(f"{base}/api/faults", data=body, headers=JSON) as r:
                        assert r.status == 400, body
                        assert (await r.json())["message"].startswith(message)
                # A form or text/plain post (what another site's page can send unasked) is refused.
                async with http.post(f"{base}/api/faults", data='{"action": "heal"}') as r:
                    assert r.status == 415

                async with http.get(f"{base}/api/events") as r:
                    assert r.content_type == "text/event-stream"
                    events = await _read_events(r, 2)
                    assert events[0][0] == "state" and events[0][1]["term"] == 3
                    assert events[1][0] == "timeline"
                    assert "web view of manager1 started" in events[1][1]["text"]
                    # A committed change reaches the open stream: a new node, told in the timeline.
                    worker = {"Role": "worker", "Availability": "active"}
                    _write(store, Create("node", "n2", worker, {"State": "ready"},
                                         {"Description": {"Hostname": "worker1"}}))
                    more = await _read_events(r, 2)
                    assert ("timeline", "worker1 joined as a worker") in [(k, d.get("text")) for k, d in more]
        finally:
            await view.stop()

    asyncio.run(asyncio.wait_for(run(), 20))


async def _read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` server-sent events (name, data), comments and retry lines skipped."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "", ""
    while len(events) < count:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and name:
            events.append((name, json.loads(data)))
            name, data = "", ""
    return events
