"""An aiohttp application served on the agent's own event loop: the Engine API and /metrics.

Both run in the loop that owns the node's state, so a handler reads it without locks, and
SIGTERM stops them within the agent's one-second budget (open connections get 0.2 s).
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["HttpServer"]

_SHUTDOWN_SECONDS = 0.2


class HttpServer:
    """Serve ``app`` on ``host:port``; ``port`` 0 picks a free port (then :attr:`port` says which)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        """Configure; :meth:`start` binds."""
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve; raise OSError if the port cannot be bound (nothing is left running)."""
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                               shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        server = site._server  # the asyncio server: the only place the bound port is known
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
