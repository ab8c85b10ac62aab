"""A headless Chromium driven through the DevTools protocol, for the web view's browser test.

``chromium --headless --screenshot`` waits for the page to finish loading, which a page on a
server-sent event stream never does; so the test starts Chromium with a DevTools port and talks
to it over aiohttp's websocket client: open a page, evaluate JavaScript, take screenshots.
Chromium comes from Debian's package (``apt-get install chromium``); :func:`chromium_path` is
None without it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import pathlib
import shutil
import subprocess
import time
from typing import Any

import aiohttp

__all__ = ["Browser", "chromium_path"]


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; use as ``async with Browser(profile_dir) as b``."""

    def __init__(self, profile: pathlib.Path, width: int = 1600, height: int = 900) -> None:
        self.profile = profile
        self.size = (width, height)
        self.proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        binary = chromium_path()
        assert binary is not None, "chromium is not installed"
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        with open(self.profile / "chromium.log", "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
                 f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}",
                 "about:blank"],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"chromium did not start: see {self.profile / 'chromium.log'}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        metrics = {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False}
        await self.call("Emulation.setDeviceMetricsOverride", metrics)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> Any:
        """Send one DevTools command and return its result (events in between are skipped)."""
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), max(0.1, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed ({msg.type})")
            data = json.loads(msg.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def goto(self, url: str) -> None:
        """Navigate (the page's event stream keeps loading; nothing waits for 'load')."""
        await self.call("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = await self.evaluate(expression)
            except RuntimeError as exc:
                last = exc
            else:
                if last:
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    async def screenshot(self, path: pathlib.Path) -> pathlib.Path:
        """Save the visible page as PNG at ``path``."""
        result = await self.call("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(result["data"]))
        return path
