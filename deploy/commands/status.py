"""``swarmlet status``: the cluster's nodes, with ``docker node ls``'s columns.

The command asks the managers' control API, trying each manager in turn; the node whose manager
answered is marked with ``*`` after its ID, as Docker marks the node the CLI talks to.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from deploy.addresses import PortRange, format_publish
from deploy.backends import load_backend
from deploy.backends.base import BackendError, NodeHandle, natural_key

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "COLUMNS",
    "JSON_FIELDS",
    "NodeLike",
    "add_arguments",
    "console",
    "error",
    "leader_warning",
    "node_table",
    "nodes_json",
    "query_nodes",
    "run",
    "sorted_rows",
    "unpublished_ports",
]

COLUMNS = ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION")
"""``docker node ls``'s columns, in its order."""

JSON_FIELDS = ("id", "hostname", "role", "status", "availability", "manager_status", "engine_version")
"""The fields of each object ``swarmlet status --json`` prints."""


class NodeLike(Protocol):
    """What the table needs of a node row (manager.controlapi.client.NodeRow has it all)."""

    @property
    def id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def availability(self) -> str: ...
    @property
    def manager_status(self) -> str: ...
    @property
    def engine_version(self) -> str: ...
    @property
    def is_self(self) -> bool: ...


def console() -> Console:
    """Standard output; wide when it is not a terminal, so piped tables keep one line per node.

    rich is imported here, not with this module: `swarmlet up` imports this module on its way to
    starting compose, and prints with rich only once the cluster is ready."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=True, width=200)
    return out


def error(message: str) -> int:
    """Print ``Error: message`` on stderr and return the exit code 1."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]Error:[/] {message}")
    return 1


def sorted_rows(rows: Sequence[NodeLike]) -> list[NodeLike]:
    """Rows in Docker's order: by hostname, numbers compared as numbers."""
    return sorted(rows, key=lambda r: (natural_key(r.hostname), r.id))


def node_table(rows: Sequence[NodeLike], title: str | None = None) -> Table:
    """A rich table with ``docker node ls``'s columns; ``*`` follows the answering node's ID."""
    from rich.table import Table

    # Docker prints a tabwriter table: no rules, columns three spaces apart.
    table = Table(box=None, title=title, header_style="bold", pad_edge=False, padding=(0, 3, 0, 0))
    for column in COLUMNS:
        # Never wrapped or cut: an ID is copied from here into other commands.
        table.add_column(column, no_wrap=True, overflow="ignore")
    styles = {"Ready": "green", "Down": "red", "Unknown": "yellow", "Disconnected": "red"}
    for row in sorted_rows(rows):
        status = row.status
        style = styles.get(status)
        manager_status = row.manager_status
        if manager_status == "Leader":
            manager_status = "[bold]Leader[/]"
        elif manager_status == "Unreachable":
            manager_status = "[red]Unreachable[/]"
        table.add_row(
            f"{row.id} *" if row.is_self else row.id,
            row.hostname,
            f"[{style}]{status}[/]" if style else status,
            row.availability,
            manager_status,
            row.engine_version,
        )
    return table


def nodes_json(rows: Sequence[NodeLike]) -> list[dict[str, Any]]:
    """The rows as ``--json`` prints them: objects with exactly JSON_FIELDS."""
    return [{name: getattr(row, name) for name in JSON_FIELDS} for row in sorted_rows(rows)]


def query_nodes(nodes: Sequence[NodeHandle], timeout: float = 3.0) -> tuple[list[Any], NodeHandle]:
    """Ask each running manager in turn for the node list; returns the rows and who answered.

    Raises BackendError naming every manager tried when none answers.
    """
    from manager.controlapi.client import ControlError, list_nodes

    managers = [n for n in nodes if n.role == "manager" and n.control_addr]
    managers.sort(key=lambda n: n.state != "running")  # stopped or paused ones are tried last
    if not managers:
        raise BackendError("no manager is running: start one with `swarmlet chaos start manager1`")
    failures = []
    for node in managers:
        assert node.control_addr is not None
        try:
            return list_nodes(node.control_addr, timeout=timeout), node
        except ControlError as e:
            failures.append(f"{node.hostname} ({node.control_addr}): {e}")
    raise BackendError("no manager answered:\n  " + "\n  ".join(failures))


def leader_warning(rows: Sequence[NodeLike]) -> str | None:
    """Swarm's no-leader message when no row shows a Leader (the rows then come from one
    manager's own copy of the store, which a cluster without quorum cannot update)."""
    if any(row.manager_status == "Leader" for row in rows):
        return None
    from manager.state.raft.core import NO_LEADER_MESSAGE

    return f"Warning: {NO_LEADER_MESSAGE}"


def unpublished_ports(services: Sequence[Mapping[str, Any]], publish: Sequence[PortRange]) -> list[str]:
    """One line per service port the nodes do not publish on the host (``swarmlet up --publish``):
    such a port is served by the routing mesh inside the cluster's network, not from the host."""
    lines: list[str] = []
    for service in sorted(services, key=lambda s: str((s.get("Spec") or {}).get("Name") or "")):
        name = str((service.get("Spec") or {}).get("Name") or service.get("ID") or "")
        for port in (service.get("Endpoint") or {}).get("Ports") or []:
            published = port.get("PublishedPort")
            if not isinstance(published, int) or published <= 0:
                continue
            if any(low <= published <= high for low, high in publish):
                continue
            mode = str(port.get("PublishMode") or "ingress")
            protocol = str(port.get("Protocol") or "tcp")
            lines.append(
                f"Note: service {name} publishes port {published}/{protocol} ({mode} mode), which the "
                f"nodes do not publish on the host ({format_publish(publish) or 'none'}): reachable "
                "inside the cluster's network only; `swarmlet up --publish` chooses the host's ports")
    return lines


def _port_notes(answered: NodeHandle) -> list[str]:
    """The notes of :func:`unpublished_ports` for a compose cluster ([] otherwise, or if the
    services cannot be read)."""
    from deploy.backends.base import read_state
    from deploy.engine import EngineError, list_services

    state = read_state()
    layout = state.layout if state is not None else None
    if state is None or state.backend != "compose" or layout is None or not answered.docker_host:
        return []
    try:
        services = list_services(answered.docker_host, timeout=3.0)
    except EngineError:
        return []
    return unpublished_ports(services, layout.publish)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarmlet status``."""
    parser.add_argument("--json", action="store_true", help="print a JSON list of node objects")


def run(args: argparse.Namespace) -> int:
    """Print the node table (or JSON); exit 1 if no cluster is up or no manager answers."""
    try:
        backend = load_backend()
        nodes = backend.nodes()
        if not nodes:
            return error("no cluster is up: bring one up with `swarmlet up`")
        rows, answered = query_nodes(nodes)
    except BackendError as e:
        return error(str(e))
    if args.json:
        json.dump(nodes_json(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console().print(node_table(rows))
    warning = leader_warning(rows)
    if warning:
        print(warning, file=sys.stderr)
    for note in _port_notes(answered):
        print(note, file=sys.stderr)
    return 0
