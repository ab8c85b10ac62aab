"""``/configs``: the routes of :class:`~manager.engineapi.payloads.PayloadRoutes` for configs.

What is a config's own: its body is swarm.ConfigSpec (no Driver), its Data is shown (base64,
as Docker shows it), and its size limit is 1000 KiB (the store's rule).
"""

from __future__ import annotations

from manager.engineapi.payloads import PayloadRoutes
from nodeagent.engineapi.gojson import BYTES, STRING, map_of, struct

__all__ = ["CONFIG_SPEC", "ConfigRoutes"]

CONFIG_SPEC = struct(
    "swarm.ConfigSpec",
    Name=STRING,
    Labels=map_of(STRING),
    Data=BYTES,
    Templating=struct("swarm.Driver", Name=STRING, Options=map_of(STRING)),
)
"""Docker's swarm.ConfigSpec as the daemon decodes it."""


class ConfigRoutes(PayloadRoutes):
    """``/configs``: list, create, inspect, update (labels), remove."""

    kind = "config"
    spec_type = CONFIG_SPEC
