"""``swarmlet chaos ACTION NODE``: do to a node what can happen to a real one.

NODE is the hostname ``swarmlet status`` shows. Two families of actions:

* the node itself (stop, start, kill, pause, unpause, restart, disconnect, connect): with
  compose, Docker's own container and network operations; with the local backend, signals
  (disconnect and connect are refused);
* its links (partition, delay, loss, duplicate, heal), with either backend: the node agents
  apply them on every plane (gossip, Raft, the dispatcher, forwarded writes, the overlay), told
  through each agent's admin service on its gossip port (deploy/linkfaults.py says which rules
  each node gets)::

      swarmlet chaos partition manager1 --from manager2,manager3
      swarmlet chaos delay worker1 200ms          (what worker1 sends waits 200 ms)
      swarmlet chaos loss worker1 10%             (10% of worker1's datagrams are lost)
      swarmlet chaos duplicate worker1 5%
      swarmlet chaos heal [NODE]                  (every link, or NODE's)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from deploy.backends import load_backend
from deploy.backends.base import CHAOS_ACTIONS, BackendError, NodeHandle, resolve_node
from deploy.commands.status import console, error
from deploy.linkfaults import LINK_ACTIONS, FaultInputError, describe, plan
from nodeagent.transport.faults import LinkFaultRule, get_link_faults, set_link_faults

__all__ = ["add_arguments", "run"]

_ACTIONS = (*CHAOS_ACTIONS, *LINK_ACTIONS)
_AGENT_TIMEOUT = 10.0  # seconds an agent may take to answer: a loaded machine starves containers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet chaos``."""
    parser.add_argument("action", choices=_ACTIONS, metavar="ACTION", help=" | ".join(_ACTIONS))
    parser.add_argument("node", metavar="NODE", nargs="?",
                        help="the node's hostname, as `swarmlet status` shows it (heal: optional)")
    parser.add_argument("value", metavar="VALUE", nargs="?",
                        help="delay: a duration (200ms, 1.5s); loss, duplicate: a percentage (10%%)")
    parser.add_argument("--from", dest="peers", metavar="NODE,NODE...", default="",
                        help="partition: the nodes cut off from NODE; delay, loss, duplicate: "
                             "only the links with these nodes (default: every link)")


def run(args: argparse.Namespace) -> int:
    """Resolve NODE (an unknown one lists the nodes there are) and do the action to it."""
    try:
        backend = load_backend()
        nodes = backend.nodes()
        if args.action in LINK_ACTIONS:
            return _links(args, nodes)
        if args.node is None:
            return error(f"{args.action} needs a NODE: swarmlet chaos {args.action} NODE")
        if args.value is not None or args.peers:
            return error(f"{args.action} takes only a NODE: swarmlet chaos {args.action} NODE")
        node = resolve_node(args.node, nodes)
        done = backend.chaos(args.action, node)
    except BackendError as e:
        return error(str(e))
    console().print(done)
    return 0


def _links(args: argparse.Namespace, nodes: Sequence[NodeHandle]) -> int:
    """Ask every node concerned for its rules, work out the new ones, and set them."""
    node = resolve_node(args.node, nodes) if args.node is not None else None
    peers = [resolve_node(name.strip(), nodes) for name in args.peers.split(",") if name.strip()]
    try:  # bad input is refused before any node is asked
        plan(args.action, node.hostname if node else None, [p.hostname for p in peers], args.value,
             {n.hostname: [] for n in nodes})
    except FaultInputError as e:
        return error(str(e))
    running = {n.hostname: n for n in nodes if n.state == "running" and n.admin_addr}
    for named in [n for n in (node, *peers) if n is not None]:
        if named.hostname not in running:
            return error(f"{named.hostname} is not running ({named.state}): its agent cannot be told; "
                         f"`swarmlet chaos start {named.hostname}` first")
    # Every agent is asked at once (one thread each): on a loaded machine one answer can take
    # seconds, and the links should change together.
    with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
        asked = {h: pool.submit(get_link_faults, str(n.admin_addr), _AGENT_TIMEOUT)
                 for h, n in running.items()}
        try:
            current: dict[str, list[LinkFaultRule]] = {h: f.result() for h, f in asked.items()}
            wanted = plan(args.action, node.hostname if node else None, [p.hostname for p in peers],
                          args.value, current)
        except FaultInputError as e:
            return error(str(e))
        except ConnectionError as e:
            return error(f"{e}; nothing was changed")
        told = {h: pool.submit(set_link_faults, str(running[h].admin_addr), rules, _AGENT_TIMEOUT)
                for h, rules in wanted.items()}
        failed = []
        for hostname, future in told.items():
            try:
                now = future.result()
            except (ConnectionError, ValueError) as e:
                failed.append(f"{hostname}: {e}")
                continue
            held = "; ".join(describe(r, list(current)) for r in now) or "no link faults"
            console().print(f"{hostname}: {held}")
    if failed:
        return error("; ".join(failed) + " (the other nodes were told)")
    return 0
