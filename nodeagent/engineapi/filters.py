"""The ``filters`` query parameter, read as Docker's ``filters.FromJSON`` reads it.

Two JSON shapes are accepted, as Docker does: the current one, ``{"role":{"manager":true}}``
(what the docker CLI sends), and the legacy one, ``{"role":["manager"]}``. A filter name the
route does not know is ``Invalid filter 'NAME'`` (400).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nodeagent.engineapi.errors import ApiError
from nodeagent.engineapi.gojson import BOOL, STRING, GoJSONError, decode, map_of, slice_of

__all__ = ["Filters", "parse_filters"]

_CURRENT = map_of(map_of(BOOL))
_LEGACY = map_of(slice_of(STRING))


class Filters:
    """Filter name -> the values given for it (a filter given twice matches either value)."""

    def __init__(self, values: Mapping[str, Iterable[str]] | None = None) -> None:
        """``values``: name -> values; empty names are dropped."""
        self._values: dict[str, list[str]] = {k: sorted(set(v)) for k, v in (values or {}).items() if v}

    def get(self, name: str) -> list[str]:
        """The values of filter ``name`` (empty when it was not given)."""
        return list(self._values.get(name, ()))

    def names(self) -> list[str]:
        """The filter names given."""
        return sorted(self._values)

    def validate(self, accepted: Iterable[str]) -> None:
        """Refuse a filter name outside ``accepted`` as Docker does."""
        allowed = set(accepted)
        for name in self.names():
            if name not in allowed:
                raise ApiError.bad_request(f"Invalid filter '{name}'")

    def check_values(self, name: str, allowed: Iterable[str], what: str) -> None:
        """Refuse a value of ``name`` outside ``allowed``: ``Invalid role filter: 'boss'``."""
        ok = set(allowed)
        for value in self.get(name):
            if value not in ok:
                raise ApiError.bad_request(f"Invalid {what} filter: '{value}'")


def parse_filters(raw: str | None) -> Filters:
    """The filters of a request (``raw`` is the query parameter's value; None or "" for none)."""
    if not raw:
        return Filters()
    try:
        current = decode(raw, _CURRENT)
    except GoJSONError as first:
        try:
            legacy = decode(raw, _LEGACY)
        except GoJSONError:
            raise ApiError.bad_request(str(first)) from None
        return Filters(legacy or {})
    return Filters({name: list(values) for name, values in (current or {}).items()})
