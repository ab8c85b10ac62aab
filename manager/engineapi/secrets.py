"""``/secrets``: the routes of :class:`~manager.engineapi.payloads.PayloadRoutes` for secrets.

What is a secret's own: its body is swarm.SecretSpec (with a Driver), its Data is never shown,
and a named Driver (an external secret) needs a secrets plugin, which swarmlet has none of, so
it is refused in the words Swarm uses for a plugin it cannot find.
"""

from __future__ import annotations

from manager.engineapi.base import rpc_message
from manager.engineapi.payloads import PayloadRoutes
from nodeagent.engineapi import ApiError
from nodeagent.engineapi.gojson import BYTES, STRING, map_of, struct

__all__ = ["SECRET_SPEC", "SecretRoutes"]

_DRIVER = struct("swarm.Driver", Name=STRING, Options=map_of(STRING))

SECRET_SPEC = struct(
    "swarm.SecretSpec",
    Name=STRING,
    Labels=map_of(STRING),
    Data=BYTES,
    Driver=_DRIVER,
    Templating=_DRIVER,
)
"""Docker's swarm.SecretSpec as the daemon decodes it."""


class SecretRoutes(PayloadRoutes):
    """``/secrets``: list, create, inspect (never the data), update (labels), remove."""

    kind = "secret"
    spec_type = SECRET_SPEC

    def check_driver(self, spec: dict[str, object]) -> None:
        """A named secret driver needs its plugin: swarmlet has none (Swarm's 500, its words)."""
        driver = spec.get("Driver")
        if isinstance(driver, dict) and driver.get("Name"):
            name = driver["Name"]
            raise ApiError(500, rpc_message("Unknown", f'plugin "{name}" not found'))
