"""The managers' control API: a gRPC service on the cluster port and a synchronous client."""

from manager.controlapi.client import (
    ControlError,
    NodeRow,
    cluster_info,
    inspect_node,
    list_nodes,
    remove_node,
    update_node,
)

__all__ = [
    "ControlError",
    "NodeRow",
    "cluster_info",
    "inspect_node",
    "list_nodes",
    "remove_node",
    "update_node",
]
