"""The one error type of the Engine API, and the one middleware that turns it into Docker's JSON.

Every handler (the node's own routes and the cluster routes a manager adds) raises
:class:`ApiError` with Docker's status code and words; :func:`error_middleware` writes
``{"message": ...}`` with that status. An unknown route or method is Docker's
``404 {"message":"page not found"}``. Anything else that escapes a handler is a bug in swarmlet,
logged with its traceback and answered 500 with its text (never silently).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = [
    "NOT_IN_SWARM",
    "NOT_MANAGER_WORKER",
    "SWARM_LOCKED",
    "ApiError",
    "error_middleware",
    "json_array_response",
    "json_encode",
    "json_response",
]

log = logging.getLogger(__name__)

NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
    "this node to swarm and try again."
)
"""Docker's 503 for a cluster route on a node that is in no swarm."""

NOT_MANAGER_WORKER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
    "Please run this command on a manager node or promote the current node to a manager."
)
"""Docker's 503 for a cluster route on a worker."""

SWARM_LOCKED = (
    'Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" '
    "to unlock it."
)
"""Docker's 503 for a cluster route on a manager locked by autolock (five-nodes/x-multi.txt)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: Docker's HTTP status and the message the CLI prints.

    The docker CLI prints ``Error response from daemon: <message>``, so ``message`` is exactly
    Docker's text where Docker has one.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        """400: the request itself is wrong (Docker's errdefs.InvalidParameter)."""
        return cls(400, message)

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        """404: no such object (errdefs.NotFound)."""
        return cls(404, message)

    @classmethod
    def conflict(cls, message: str) -> ApiError:
        """409: the name is taken (errdefs.Conflict)."""
        return cls(409, message)

    @classmethod
    def unavailable(cls, message: str) -> ApiError:
        """503: this node cannot answer that now (errdefs.Unavailable)."""
        return cls(503, message)

    @classmethod
    def not_implemented(cls, message: str) -> ApiError:
        """501: swarmlet does not do this (yet); said instead of pretending."""
        return cls(501, message)


def json_encode(value: object) -> bytes:
    """``value`` as Docker's daemon encodes JSON: compact, UTF-8, no trailing newline."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: object, status: int = 200) -> web.Response:
    """JSON as Docker's daemon writes it: compact, one trailing newline, ``application/json``."""
    return _json_bytes_response(json_encode(body) + b"\n", status)


def json_array_response(items: list[bytes]) -> web.Response:
    """A 200 whose body is the JSON array of ``items``, each already encoded by :func:`json_encode`.

    For lists whose elements are kept encoded between requests (``GET /nodes``): the same bytes
    as :func:`json_response` of the decoded list.
    """
    return _json_bytes_response(b"[" + b",".join(items) + b"]\n", 200)


def _json_bytes_response(body: bytes, status: int) -> web.Response:
    # Exactly "application/json", no charset: the docker CLI reads an error's JSON only then.
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map :class:`ApiError` (and aiohttp's routing misses) to Docker's ``{"message": ...}``."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response({"message": exc.message}, exc.status)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # Docker's router answers both an unknown path and a wrong method this way.
        return json_response({"message": "page not found"}, 404)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (a body over the size limit...) in Docker's shape too.
        return json_response({"message": exc.text or exc.reason}, exc.status)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"message": f"internal error: {exc}"}, 500)
