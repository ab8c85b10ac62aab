"""The compose override file `swarmlet up` writes beside compose.yml: pure text, no I/O.

compose.yml names the default cluster (manager1..3, worker1..2, on the default project's
addresses, with the default service ports). A cluster that differs (another project's block,
other `--publish` ports, more nodes, mDNS workers, `--no-swarm`) gets an override with, for every
node: its ``ports`` (tagged ``!override``, so that they replace compose.yml's rather than add to
them), its ``command``, and for a node compose.yml does not name, an ``extends`` of manager3 or
worker2 with its own hostname and data volume; and the ``prometheus`` service's port on the
block's Prometheus address (127.B.3.1:9090). The file is YAML in JSON's flow style, so that the
one tag compose needs can be written without a YAML library.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from deploy.addresses import PROMETHEUS_PORT, PortRange, node_addr, parse_name, port_bindings, prometheus_addr

__all__ = ["BASE_NODES", "BOOTSTRAP_TOKENS", "PROMETHEUS_SERVICE", "node_command", "override_text"]

BASE_NODES = ("manager1", "manager2", "manager3", "worker1", "worker2")
"""The node services compose.yml itself defines."""
BOOTSTRAP_TOKENS = "/var/lib/swarmlet/swarm-tokens"
"""Where manager1 makes the join tokens (and, until the Cluster object holds its key, the root CA)
when it creates the cluster: in its data volume."""
PROMETHEUS_SERVICE = "prometheus"
"""compose.yml's service that scrapes every node (deploy/prometheus.yml); not a node."""
_JOIN = "--join=manager1:2377,manager2:2377,manager3:2377"


def node_command(
    name: str, discover: str = "names", no_swarm: bool = False, founders: Sequence[str] = (),
) -> list[str]:
    """The node agent's arguments for the node ``name`` in a container (compose.yml's own shape).

    manager1 creates the cluster (``--bootstrap``): it makes the root CA and the join tokens in
    its own data volume. Every other node joins through manager1..3 by their service names (a
    joining agent tries each in turn) with its token (a compose secret), started at the same
    time as manager1: ``--await-token`` has it wait until `swarmlet up` has read the tokens back
    from manager1 and written them into the secret files (docs/bringup.md). A worker with
    ``discover="mdns"`` finds the managers by zeroconf instead. ``founders``: a cluster made by an older
    swarmlet whose managers started Raft together (``--initial-cluster``), kept as it was."""
    role, index = parse_name(name)
    argv = [f"--role={role}", f"--hostname={name}"]
    if no_swarm:
        return [*argv, "--no-swarm"]
    if role == "manager":
        if name in founders:
            argv.append("--initial-cluster=" + ",".join(f"{f}={f}:2377" for f in founders))
        if index == 1 and not founders:
            argv += ["--bootstrap", _JOIN, f"--manager-token-file={BOOTSTRAP_TOKENS}/manager_token",
                     f"--worker-token-file={BOOTSTRAP_TOKENS}/worker_token"]
        else:
            argv += [_JOIN, "--token-file=/run/secrets/manager_token",
                     "--manager-token-file=/run/secrets/manager_token",
                     "--worker-token-file=/run/secrets/worker_token"]
            if name not in founders:
                argv.append("--await-token")
    else:
        argv += ["--discover=mdns"] if discover == "mdns" else [_JOIN]
        argv += ["--token-file=/run/secrets/worker_token", "--await-token"]
    return argv


def override_text(
    compose_file: str, names: Sequence[str], block: int, publish: Sequence[PortRange],
    discover: str = "names", no_swarm: bool = False, founders: Sequence[str] = (),
) -> str:
    """The override for a cluster of the nodes ``names`` in block ``block``."""
    lines = ["# Written by `swarmlet up` / `swarmlet node add`: the nodes, their addresses and ports.",
             "services:"]
    volumes = []
    for name in names:
        role, index = parse_name(name)
        addr = node_addr(block, role, index)
        lines.append(f"  {name}:")
        if name not in BASE_NODES:
            template = "manager3" if role == "manager" else "worker2"
            lines.append(f"    extends: {json.dumps({'file': compose_file, 'service': template})}")
            lines.append(f"    hostname: {json.dumps(name)}")
            if role == "manager":
                mounts = [f"{name}-data:/var/lib/swarmlet", "shared-volumes:/var/lib/swarmlet-shared",
                          "python:/opt/swarmlet/python:ro"]
                lines.append(f"    volumes: {json.dumps(mounts)}")
                volumes.append(f"{name}-data")
        lines.append(f"    ports: !override {json.dumps(port_bindings(addr, publish))}")
        lines.append(f"    command: {json.dumps(node_command(name, discover, no_swarm, founders))}")
    prometheus = f"{prometheus_addr(block)}:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"
    lines.append(f"  {PROMETHEUS_SERVICE}:")
    lines.append(f"    ports: !override {json.dumps([prometheus])}")
    if volumes:
        lines.append("volumes:")
        lines += [f"  {v}: {{}}" for v in volumes]
    return "\n".join(lines) + "\n"
