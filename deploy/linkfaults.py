"""What `swarmlet chaos partition|delay|loss|duplicate|heal` asks of each node agent: pure, no I/O.

The agents apply link faults themselves, on every plane (nodeagent/transport/planes.py), from
the rules each one holds. This module turns a command (NODE, the nodes named by ``--from``, a
duration or a percentage) and the rules the nodes hold now into the rules each node must hold
next. A rule names its peers by hostname; the agent adds their addresses. Each rule here has one
kind (partition, delay, drop, duplicate) and one peer set, so that a later command of the same
kind and peers replaces it and ``heal`` can take exactly a node's links away:

* ``partition NODE --from A,B``: NODE holds a partition rule for A and one for B, and A and B one
  for NODE each (both ends are told, so the cut holds whatever a plane can tell of a sender);
* ``delay NODE 200ms`` / ``loss NODE 10%`` / ``duplicate NODE 5%``: NODE holds one rule of that
  kind for every peer (or only the ``--from`` nodes): what NODE sends is delayed, lost or
  doubled, as netem on its interface's egress; 0 takes the rule away;
* ``heal NODE``: NODE holds nothing, and the others drop every rule naming NODE;
  ``heal``: nobody holds anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from nodeagent.transport.faults import LinkFaultRule, rules_without

__all__ = [
    "LINK_ACTIONS",
    "FaultInputError",
    "describe",
    "parse_duration",
    "parse_percent",
    "plan",
    "rule_kind",
]

LINK_ACTIONS = ("partition", "delay", "loss", "duplicate", "heal")
"""The `swarmlet chaos` actions on links (the agents apply them), beside the container ones."""

_MAX_DELAY_S = 3600.0
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(us|µs|ms|s|m)$")
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_PERCENT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)%?$")


class FaultInputError(ValueError):
    """A command the agents cannot be asked: the message says why; nothing was changed."""


def parse_duration(text: str) -> float:
    """Seconds of a duration written as Docker writes them: ``200ms``, ``1.5s``, ``1m``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise FaultInputError(
            f'invalid duration "{text}": a number and a unit (us, ms, s or m), e.g. 200ms or 1.5s')
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _MAX_DELAY_S:
        raise FaultInputError(f'invalid duration "{text}": at most 1h (3600s)')
    return seconds


def parse_percent(text: str) -> float:
    """A chance from a percentage, ``10%`` (or ``10``) -> 0.1; 0% to 100%."""
    match = _PERCENT.match(text.strip())
    if match is None:
        raise FaultInputError(f'invalid percentage "{text}": a number from 0% to 100%, e.g. 10%')
    value = float(match.group(1))
    if value > 100.0:
        raise FaultInputError(f'invalid percentage "{text}": at most 100%')
    return value / 100.0


def rule_kind(rule: LinkFaultRule) -> str:
    """The one kind of fault a rule makes: partition, delay, drop, duplicate (or none)."""
    if rule.partition:
        return "partition"
    for kind in ("delay", "drop", "duplicate"):
        if getattr(rule, kind):
            return kind
    return "none"


def _named(rule: LinkFaultRule, hostnames: Sequence[str]) -> tuple[str, ...]:
    """The hostnames a rule names (the agent added their addresses beside them)."""
    return tuple(sorted(p for p in rule.peers if p in hostnames))


def _replace(rules: Sequence[LinkFaultRule], new: LinkFaultRule, hostnames: Sequence[str],
             keep: bool) -> list[LinkFaultRule]:
    """``rules`` with any rule of ``new``'s kind and peers taken out, and ``new`` added if ``keep``."""
    key = (rule_kind(new), _named(new, hostnames))
    out = [r for r in rules if (rule_kind(r), _named(r, hostnames)) != key]
    return [*out, new] if keep else out


def plan(action: str, node: str | None, peers: Sequence[str], value: str | None,
         current: Mapping[str, Sequence[LinkFaultRule]]) -> dict[str, list[LinkFaultRule]]:
    """The rules each affected node must hold after ``action``; raise FaultInputError on bad input.

    ``current`` has the rules every node of the cluster holds now, by hostname (its keys are the
    cluster's nodes); ``node`` and ``peers`` are hostnames (already resolved).
    """
    hostnames = list(current)
    if action not in LINK_ACTIONS:
        raise FaultInputError(f"unknown link action {action!r}: {', '.join(LINK_ACTIONS)}")
    if action == "heal":
        if value is not None or peers:
            raise FaultInputError("heal takes at most a NODE: swarmlet chaos heal [NODE]")
        if node is None:
            return {name: [] for name in hostnames}
        out = {name: rules_without(rules, [node]) for name, rules in current.items() if name != node}
        out = {name: rules for name, rules in out.items() if rules != list(current[name])}
        out[node] = []
        return out
    if node is None:
        raise FaultInputError(f"{action} needs a NODE")
    if node in peers:
        raise FaultInputError(f"--from names {node} itself: a node has no link to itself")
    if len(set(peers)) != len(peers):
        raise FaultInputError("--from names a node twice")
    if action == "partition":
        usage = f"swarmlet chaos partition {node} --from NODE,NODE..."
        if value is not None:
            raise FaultInputError(f"partition takes no value: {usage}")
        if not peers:
            raise FaultInputError(f"partition needs the other side: {usage}")
        out = {node: list(current[node])}
        for peer in peers:
            out[node] = _replace(out[node], LinkFaultRule(peers=(peer,), partition=True), hostnames, True)
            out[peer] = _replace(current[peer], LinkFaultRule(peers=(node,), partition=True), hostnames, True)
        return out
    if value is None:
        example = "200ms" if action == "delay" else "10%"
        raise FaultInputError(f"{action} needs a value: swarmlet chaos {action} {node} {example}")
    field = {"delay": "delay", "loss": "drop", "duplicate": "duplicate"}[action]
    amount = parse_duration(value) if action == "delay" else parse_percent(value)
    rule = LinkFaultRule(peers=tuple(sorted(peers)), delay=amount if field == "delay" else 0.0,
                         drop=amount if field == "drop" else 0.0,
                         duplicate=amount if field == "duplicate" else 0.0)
    if amount == 0:
        cleared = [r for r in current[node]
                   if not (rule_kind(r) == field and _named(r, hostnames) == tuple(sorted(peers)))]
        return {node: cleared}
    return {node: _replace(current[node], rule, hostnames, True)}


def describe(rule: LinkFaultRule, hostnames: Sequence[str]) -> str:
    """One rule in a few words, peers by hostname: ``partition from manager2``, ``delay 200ms``."""
    named = _named(rule, hostnames) or tuple(p for p in rule.peers if ":" not in p and "." not in p)
    where = f" to {', '.join(named)}" if named else ""
    kind = rule_kind(rule)
    if kind == "partition":
        return f"partition from {', '.join(named) or 'every node'}"
    if kind == "delay":
        return f"delay {rule.delay * 1000:g}ms{where}"
    if kind == "drop":
        return f"loss {rule.drop * 100:g}%{where}"
    if kind == "duplicate":
        return f"duplicate {rule.duplicate * 100:g}%{where}"
    return "no fault"
