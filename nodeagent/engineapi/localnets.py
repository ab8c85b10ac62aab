"""The node-local networks every Docker engine in a swarm lists: EMULATED.

A swarmlet node has no Linux bridges and runs no containers of its own, but ``docker network
ls`` against any Docker engine in a swarm shows ``bridge``, ``host``, ``none`` and
``docker_gwbridge``, so every node shows them as a node has them (api/networks.json): IDs
derived from the node's ID (stable across calls, different per node), Docker's default
subnets and options, no containers. They cannot be created, used by services or removed.
A node without a manager attached answers ``/networks`` with these alone, as a worker's
daemon answers with its own networks; a manager lists the swarm's networks first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from nodeagent.engineapi.errors import ApiError, json_response

__all__ = ["LOCAL_NETWORKS", "NOT_A_MANAGER_CREATE", "PREDEFINED", "find_local", "local_networks",
           "node_network_route", "remove_refusal"]

PREDEFINED = ("bridge", "host", "none")
"""Docker's pre-defined networks (runconfig.IsPreDefinedNetwork): never created nor removed."""

# name -> (driver, IPAM Config, Options), as a Docker 20.10 engine in a swarm has them.
LOCAL_NETWORKS: dict[str, tuple[str, list[dict[str, str]], dict[str, str]]] = {
    # The default bridge shows no Gateway in its IPAM config (api/networks.json).
    "bridge": ("bridge", [{"Subnet": "172.17.0.0/16"}], {
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.enable_icc": "true",
        "com.docker.network.bridge.enable_ip_masquerade": "true",
        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
        "com.docker.network.bridge.name": "docker0",
        "com.docker.network.driver.mtu": "1500",  # Docker's default (the recording's host set 1400)
    }),
    "docker_gwbridge": ("bridge", [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}], {
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "true",
        "com.docker.network.bridge.name": "docker_gwbridge",
    }),
    "host": ("host", [], {}),
    "none": ("null", [], {}),
}

NOT_A_MANAGER_CREATE = ("Cannot create a multi-host network from a worker node. Please create the network "
                        "from a manager node.")
"""Docker's 403 for an overlay network created on a worker."""


def local_networks(node_id: str, created: str) -> list[dict[str, Any]]:
    """The node-local networks a Docker engine in a swarm lists, as node ``node_id`` has them.

    Emulated (see the module's docstring); ``created`` is when the node joined.
    """
    out = []
    for name in ("docker_gwbridge", "none", "bridge", "host"):
        driver, config, options = LOCAL_NETWORKS[name]
        out.append({
            "Name": name,
            "Id": hashlib.sha256(f"{node_id}/{name}".encode()).hexdigest(),
            "Created": created,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": [dict(c) for c in config]},
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {},
            "Options": dict(options),
            "Labels": {},
        })
    return out


def find_local(networks: list[dict[str, Any]], term: str) -> dict[str, Any] | None:
    """A local network by full ID, name or ID prefix (None: not one of them)."""
    for test in (lambda n: n["Id"] == term, lambda n: n["Name"] == term,
                 lambda n: bool(term) and str(n["Id"]).startswith(term)):
        found = [n for n in networks if test(n)]
        if len(found) == 1:
            return found[0]
    return None


def remove_refusal(network: dict[str, Any]) -> ApiError:
    """Docker's 403 for removing a local network: pre-defined, or docker_gwbridge in use."""
    if network["Name"] in PREDEFINED:
        return ApiError(403, f"{network['Name']} is a pre-defined network and cannot be removed")
    return ApiError(403, f"error while removing network: network {network['Name']} id {network['Id']} "
                         "has active endpoints")


async def node_network_route(method: str, path: str, request: web.Request, node_id: str, created: str,
                             not_manager: str, in_swarm: bool) -> web.StreamResponse:
    """``/networks`` on a node with no manager attached: its local networks only.

    Creating an overlay network there is Docker's refusal: a worker's 403, or, in no swarm,
    the 500 with ``not_manager``'s words (00-no-swarm.txt).
    """
    networks = local_networks(node_id, created)
    if method == "GET" and path == "/networks":
        return json_response(networks)
    if method == "POST":
        if in_swarm:
            raise ApiError(403, NOT_A_MANAGER_CREATE)
        raise ApiError(500, not_manager)
    term = request.match_info.get("id", "")
    found = find_local(networks, term)
    if found is None:
        raise ApiError.not_found(f"network {term} not found")
    if method == "DELETE":
        raise remove_refusal(found)
    return json_response(found)
