"""What the cluster routes share: the manager they read and write, and the one error mapping.

Handlers read this manager's own store (local reads, with or without quorum, as ``docker node
ls`` does here) and write through :class:`~manager.engineapi.writes.LeaderWrites`. Errors from
the store and from Raft become Docker's answers in :func:`api_error`, applied to every handler
by :func:`guarded`; the node's error middleware then writes them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from manager.engineapi.render import HostFacts
from manager.engineapi.writes import LOST_LEADERSHIP_MESSAGE, LostLeadership
from manager.state.raft.shell import NO_LEADER_MESSAGE, NoLeaderError, ProposalDropped
from manager.state.store import (
    Ambiguous,
    InUse,
    NameConflict,
    NotFound,
    Op,
    Store,
    StoredObject,
    StoreError,
    UpdateOutOfSequence,
)
from nodeagent.engineapi import ApiError
from nodeagent.engineapi.errors import Handler

__all__ = ["ManagerView", "api_error", "control_error", "guarded", "rpc_message"]


class ManagerView(Protocol):
    """The manager as the cluster routes see it (the runtime in production, a fake in tests)."""

    @property
    def store(self) -> Store:
        """This manager's replica of the store."""
        ...

    @property
    def node_id(self) -> str:
        """This manager's node id."""
        ...

    @property
    def host(self) -> HostFacts:
        """Defaults for what node descriptions do not record."""
        ...

    def leader_id(self) -> str:
        """The leader as this manager sees it now; "" when it knows none."""
        ...

    def unreachable(self) -> frozenset[str]:
        """The managers this manager's Raft sees gone now, whatever their Node objects still say.

        Without quorum nothing can be written, so the stored reachability stays as it was; a
        real Swarm computes the column from Raft's view when asked (swarmkit's memberlist), and
        so does ``docker node ls`` here."""
        ...

    def cluster(self) -> StoredObject | None:
        """The Cluster object; None before the bootstrap manager has written it."""
        ...

    async def write(self, ops: Sequence[Op]) -> None:
        """Commit ``ops`` as one batch through the leader (forwarded from a follower)."""
        ...

    async def change_role(self, node_id: str, role: str) -> None:
        """Promote or demote a node through the control API, the one path for role changes.

        The leader decides (it knows Raft's membership) and refuses in Swarm's words; the
        refusal comes back as an :class:`ApiError`.
        """
        ...

    async def remove_node(self, node_id: str, force: bool) -> None:
        """``docker node rm``: through the control API, whose leader checks Raft's membership."""
        ...


def rpc_message(code: str, message: str) -> str:
    """How Docker shows an error that came from swarmkit's gRPC API: ``rpc error: code = ...``."""
    return f"rpc error: code = {code} desc = {message}"


# How Docker's daemon maps swarmkit's gRPC codes to HTTP (moby's errdefs): the message keeps the
# "rpc error: code = ... desc = ..." form that the CLI prints.
_GRPC_HTTP = {
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 400,
    "INVALID_ARGUMENT": 400,
    "PERMISSION_DENIED": 403,
    "UNAVAILABLE": 503,
    "UNIMPLEMENTED": 501,
}
_GRPC_WORDS = {"NOT_FOUND": "NotFound", "FAILED_PRECONDITION": "FailedPrecondition",
               "INVALID_ARGUMENT": "InvalidArgument", "ALREADY_EXISTS": "AlreadyExists",
               "PERMISSION_DENIED": "PermissionDenied", "UNAVAILABLE": "Unavailable",
               "DEADLINE_EXCEEDED": "DeadlineExceeded", "UNIMPLEMENTED": "Unimplemented"}  # fmt: skip


def control_error(code: Any, details: str) -> ApiError:
    """Docker's status and words for a control API refusal (a ``grpc.StatusCode`` and its details)."""
    name = str(getattr(code, "name", code))
    if name == "UNAVAILABLE" and details.startswith("The swarm does not have a leader"):
        return no_leader_error()
    words = _GRPC_WORDS.get(name, "Unknown")
    # The control API's refusals already carry Docker's "rpc error: ..." form.
    message = details if details.startswith("rpc error: ") else rpc_message(words, details)
    return ApiError(_GRPC_HTTP.get(name, 500), message)


def no_leader_error() -> ApiError:
    """swarmkit's errLostQuorum as Docker shows it: a plain error in swarmkit's raft proxy, so
    gRPC's ``Unknown`` and moby's 500 (moby/moby#35109 shows the words; httpstatus maps Unknown
    to 500)."""
    return ApiError(500, rpc_message("Unknown", NO_LEADER_MESSAGE))


def api_error(exc: BaseException) -> ApiError | None:
    """Docker's status and words for a store or Raft error; None for anything else (a bug)."""
    if isinstance(exc, NotFound):
        return ApiError.not_found(exc.message)
    if isinstance(exc, Ambiguous):
        return ApiError.bad_request(exc.message)
    if isinstance(exc, UpdateOutOfSequence):
        # swarmkit's store error reaches the daemon as gRPC Unknown: a 500, as Docker answers.
        return ApiError(500, rpc_message("Unknown", exc.message))
    if isinstance(exc, NameConflict):
        return ApiError.conflict(rpc_message("AlreadyExists", exc.message))
    if isinstance(exc, InUse):
        return ApiError.bad_request(rpc_message("InvalidArgument", exc.message))
    if isinstance(exc, StoreError):
        return ApiError.bad_request(rpc_message("InvalidArgument", exc.message))
    if isinstance(exc, LostLeadership | ProposalDropped):
        # swarmkit's ErrLostLeadership: the proposal's leader lost its status before it committed.
        return ApiError(500, rpc_message("Unknown", LOST_LEADERSHIP_MESSAGE))
    if isinstance(exc, NoLeaderError | ConnectionAbortedError):
        return no_leader_error()
    if isinstance(exc, TimeoutError):
        # Indeterminate: the write may still commit. Docker says the same about a deadline.
        return ApiError(500, rpc_message("DeadlineExceeded", "context deadline exceeded"))
    return None


def guarded(handler: Handler) -> Handler:
    """``handler`` with store and Raft errors turned into :class:`ApiError` by :func:`api_error`."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (StoreError, NoLeaderError, LostLeadership, ProposalDropped, ConnectionAbortedError,
                TimeoutError) as exc:
            mapped = api_error(exc)
            if mapped is None:  # pragma: no cover - every caught type maps
                raise
            raise mapped from None

    return run
