"""An aiohttp application served on the agent's own event loop: the Engine API and /metrics.

Both run in the loop that owns the node's state, so a handler reads it without locks, and
SIGTERM stops them within the agent's one-second budget (open connections get 0.2 s).
The Engine API may be served over TLS with client certificates (:func:`tlsverify_context`,
dockerd's ``--tlsverify``).
"""

from __future__ import annotations

import ssl

from aiohttp import web

__all__ = ["HttpServer", "tlsverify_context"]


def tlsverify_context(cacert: str, cert: str, key: str) -> ssl.SSLContext:
    """A server context as dockerd's ``--tlsverify`` sets one up: ``cert``/``key`` presented,
    and only clients whose certificate chains to ``cacert`` served (TLS 1.2 at least).

    Raises OSError or ssl.SSLError when a file is missing or does not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cacert)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context

_SHUTDOWN_SECONDS = 0.2


class HttpServer:
    """Serve ``app`` on ``host:port``; ``port`` 0 picks a free port (then :attr:`port` says which)."""

    def __init__(self, app: web.Application, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """Configure; :meth:`start` binds. With ``ssl_context``, HTTPS only."""
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve; raise OSError if the port cannot be bound (nothing is left running)."""
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                               shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
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
