"""Errors of the replicated store, each with a ``code`` the API layer maps to a status.

The messages are Swarm's own words where Swarm has words for the case, because users (and the
docker CLI) see them verbatim.
"""

from __future__ import annotations

__all__ = [
    "Ambiguous",
    "InUse",
    "InvalidObject",
    "NameConflict",
    "NotFound",
    "StoreError",
    "UpdateOutOfSequence",
]


class StoreError(Exception):
    """Base of every store error. ``code`` is one of "not_found", "conflict", "out_of_sequence", "invalid"."""

    code: str = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        # Two managers rejecting the same batch must report the same error: compare by value.
        return type(other) is type(self) and isinstance(other, StoreError) and other.message == self.message

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.message))


class UpdateOutOfSequence(StoreError):
    """A write carried a version other than the object's current one (someone wrote in between)."""

    code = "out_of_sequence"

    def __init__(self, message: str = "update out of sequence") -> None:
        super().__init__(message)


class NotFound(StoreError):
    """No object of that kind with that ID (or name, or ID prefix)."""

    code = "not_found"


class NameConflict(StoreError):
    """The name (or the ID) is already taken by another object of the same kind."""

    code = "conflict"


class InUse(StoreError):
    """The object cannot be removed while others refer to it (a network used by a service)."""

    code = "conflict"


class InvalidObject(StoreError):
    """The command or the object is malformed, or breaks a rule of its kind."""

    code = "invalid"


class Ambiguous(StoreError):
    """A lookup matched more than one object (a short ID prefix, or a hostname two nodes share)."""

    code = "invalid"
