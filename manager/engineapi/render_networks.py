"""Networks in the Engine API's JSON (``types.NetworkResource``): one place for every route.

Two kinds are shown. Swarm networks come from the store and render as a manager's daemon shows
them from the cluster (moby's BasicNetworkFromGRPC): Scope ``swarm``, the allocated IPAM
config, the VNI among the Options, ``Containers: null``, ``Labels: null`` when there are none.
Node-local networks (``bridge``, ``host``, ``none``, ``docker_gwbridge``) are emulated by
every node (nodeagent/engineapi/localnets.py) and listed after them. Pure: no store, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from manager.allocator.ipam import VXLAN_OPTION
from manager.allocator.networks import is_predefined
from manager.state.store import StoredObject
from manager.state.store.objects import thaw
from nodeagent.engineapi.localnets import LOCAL_NETWORKS, PREDEFINED, local_networks

__all__ = ["LOCAL_NETWORKS", "PREDEFINED", "local_networks", "network_to_api", "vni"]

def _ipam_config(configs: Any) -> list[dict[str, Any]]:
    out = []
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, Mapping):
            out.append({k: config[k] for k in ("Subnet", "IPRange", "Gateway", "AuxiliaryAddresses")
                        if config.get(k)})
    return out


def network_to_api(network: StoredObject) -> dict[str, Any]:
    """A swarm network as ``GET /networks/{id}`` returns it on a manager (api/networks-swarm.json)."""
    spec = network.spec
    ipam: Mapping[str, Any] = {}
    for source in (network.extra.get("IPAM"), spec.get("IPAM")):  # allocated, else as asked
        if isinstance(source, Mapping):
            ipam = source
            break
    ipam_options = ipam.get("Options")
    options = dict(spec.get("Options") or {})
    driver_options = network.extra.get("DriverOptions")
    if isinstance(driver_options, Mapping):
        options.update(driver_options)
    labels = spec.get("Labels")
    predefined = is_predefined(network)  # shown as Docker 20.10 showed them: no IPAM driver, no options
    return {
        "Name": spec.get("Name", ""),
        "Id": network.id,
        "Created": network.created_at,
        "Scope": "swarm",
        "Driver": spec.get("Driver") or "overlay",
        "EnableIPv6": bool(spec.get("EnableIPv6", False)),
        "IPAM": {
            "Driver": "" if predefined else ipam.get("Driver") or "default",
            "Options": thaw(ipam_options) if isinstance(ipam_options, Mapping) and ipam_options else None,
            "Config": _ipam_config(ipam.get("Config")),
        },
        "Internal": bool(spec.get("Internal", False)),
        "Attachable": bool(spec.get("Attachable", False)),
        "Ingress": bool(spec.get("Ingress", False)),
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": None,
        "Options": None if predefined else thaw(options),
        "Labels": thaw(labels) if isinstance(labels, Mapping) and labels else None,
    }


def vni(network: StoredObject) -> int | None:
    """The network's VXLAN ID, once allocated."""
    options = network.extra.get("DriverOptions")
    raw = options.get(VXLAN_OPTION) if isinstance(options, Mapping) else None
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None
