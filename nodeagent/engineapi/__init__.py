"""The Docker Engine API on every node (port 2375), so that the real docker CLI drives the cluster.

``server`` builds and serves the aiohttp app (the node's own routes, Swarm's cluster routes that
a manager attaches); ``errors`` is the one error type and its middleware; ``gojson`` and
``filters`` read request bodies and filters as Docker's Go daemon does; ``system`` says what
/version and /info say; ``swarmnode`` answers swarm init, join and leave. See docs/engineapi.md.
"""

from nodeagent.engineapi.errors import NOT_IN_SWARM, NOT_MANAGER_WORKER, ApiError, json_response
from nodeagent.engineapi.filters import Filters, parse_filters
from nodeagent.engineapi.gojson import GoJSONError, GoType, decode
from nodeagent.engineapi.server import CLUSTER_ROUTES, ClusterApi, EngineApiServer, Route
from nodeagent.engineapi.swarmnode import JoinFailed, NodeSwarmRoutes
from nodeagent.engineapi.system import (
    API_VERSION,
    MIN_API_VERSION,
    NodeFacts,
    SwarmInfo,
    rfc3339_nano,
    session_swarm_info,
)

__all__ = [
    "API_VERSION",
    "CLUSTER_ROUTES",
    "MIN_API_VERSION",
    "NOT_IN_SWARM",
    "NOT_MANAGER_WORKER",
    "ApiError",
    "ClusterApi",
    "EngineApiServer",
    "Filters",
    "GoJSONError",
    "GoType",
    "JoinFailed",
    "NodeFacts",
    "NodeSwarmRoutes",
    "Route",
    "SwarmInfo",
    "decode",
    "json_response",
    "parse_filters",
    "rfc3339_nano",
    "session_swarm_info",
]
