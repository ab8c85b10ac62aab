"""Placement constraints: Swarm's ``KEY == VALUE`` / ``KEY != VALUE`` expressions.

Parsing and matching follow swarmkit's ``manager/constraint`` rule for rule, because users carry
constraints between a real Swarm and swarmlet and must get the same answer:

* the operators are tried in the order ``==``, ``!=``: the first one found in the expression
  splits it once, so ``a==b!=c`` is the key ``a`` and the value ``b!=c`` (which is then refused);
* key and value are stripped of surrounding whitespace; a key is ``[a-z_][a-z0-9-_.]+`` (so at
  least two characters), a value may hold letters, digits, whitespace and ``:-_.*()?+[]\\^$|/``
  but no operator characters;
* keys are case-insensitive (``Node.Labels.x`` works) except the label name after the prefix,
  which is case-sensitive; values compare case-insensitively, labels included (``EqualFold``);
* a missing label, hostname or platform compares as the empty string, so ``!=`` matches it;
* an unknown key (``foo==bar``) parses but no node matches it: the task stays pending with
  "scheduling constraints not satisfied", as the recordings show.

An invalid expression raises :class:`ConstraintError` carrying swarmkit's words; the Engine API
answers it with HTTP 500 and ``rpc error: code = Unknown desc = <words>`` (see
``ConstraintError.api_message``), because swarmkit's controlapi returns the parse error unwrapped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENGINE_LABEL_PREFIX",
    "NODE_LABEL_PREFIX",
    "OPERATORS",
    "Constraint",
    "ConstraintError",
    "NodeFacts",
    "node_matches",
    "parse_constraints",
]

NODE_LABEL_PREFIX = "node.labels."
ENGINE_LABEL_PREFIX = "engine.labels."
OPERATORS: tuple[str, ...] = ("==", "!=")  # tried in this order, as swarmkit does

# Go's regexp: \s is [\t\n\f\r ] and $ is the end of the text; fullmatch gives the same anchoring.
_KEY = re.compile(r"[a-z_][a-z0-9\-_.]+", re.IGNORECASE)
_VALUE = re.compile(r"[a-z0-9:\-_\t\n\f\r .*()?+\[\]\\^$|/]+", re.IGNORECASE)


class ConstraintError(ValueError):
    """An expression Swarm refuses at service create/update; ``str()`` is swarmkit's message."""

    status = 500  # what dockerd answers: the controlapi error reaches it without a gRPC code

    @property
    def api_message(self) -> str:
        """The Engine API's ``message``, as recorded in err-service-create-bad-constraint.json."""
        return f"rpc error: code = Unknown desc = {self}"


_FIELDS = ("node.id", "node.hostname", "node.ip", "node.role", "node.platform.os", "node.platform.arch")
_FIELD, _LABEL, _ENGINE, _UNKNOWN = range(4)


class NodeFacts:
    """A node's values as constraints read them, taken once from its Engine API JSON.

    The scheduler matches every constraint of a service against every node; reading the nested
    JSON once per node instead of once per check is most of what makes that cheap.
    """

    __slots__ = ("engine_labels", "fields", "labels")

    def __init__(self, node: Mapping[str, Any]) -> None:
        spec = node.get("Spec") or {}
        desc = node.get("Description") or {}
        platform = desc.get("Platform") or {}
        self.fields: dict[str, str] = {
            "node.id": str(node.get("ID") or ""),
            "node.hostname": str(desc.get("Hostname") or ""),  # no description: "" (swarmkit)
            "node.ip": str((node.get("Status") or {}).get("Addr") or ""),
            "node.role": str(spec.get("Role") or ""),
            "node.platform.os": str(platform.get("OS") or ""),
            "node.platform.arch": str(platform.get("Architecture") or ""),
        }
        self.labels: Mapping[str, Any] = spec.get("Labels") or {}
        self.engine_labels: Mapping[str, Any] = (desc.get("Engine") or {}).get("Labels") or {}


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed expression: ``key`` as written (stripped), ``equal`` for ``==``, ``value``."""

    key: str
    equal: bool
    value: str
    # Derived once: where the key looks (a field, a node label, an engine label, nowhere), the
    # field or label name, and the value folded for comparison.
    _where: int = field(init=False, repr=False, compare=False)
    _name: str = field(init=False, repr=False, compare=False)
    _folded: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lowered = self.key.lower()
        where, name = _UNKNOWN, ""
        if lowered in _FIELDS:
            where, name = _FIELD, lowered
        elif len(lowered) > len(NODE_LABEL_PREFIX) and lowered.startswith(NODE_LABEL_PREFIX):
            where, name = _LABEL, self.key[len(NODE_LABEL_PREFIX) :]  # the label name keeps its case
        elif len(lowered) > len(ENGINE_LABEL_PREFIX) and lowered.startswith(ENGINE_LABEL_PREFIX):
            where, name = _ENGINE, self.key[len(ENGINE_LABEL_PREFIX) :]
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_folded", self.value.casefold())

    def __str__(self) -> str:
        return f"{self.key} {'==' if self.equal else '!='} {self.value}"

    def match(self, *candidates: str) -> bool:
        """Does the expression hold when the node's value is one of ``candidates``?"""
        found = any(c.casefold() == self._folded for c in candidates)
        return found if self.equal else not found

    def value_in(self, facts: NodeFacts) -> str | None:
        """The node's value for this key (``""`` when unset); None for a key Swarm does not know."""
        if self._where == _FIELD:
            return facts.fields[self._name]
        if self._where == _LABEL:
            return str(facts.labels.get(self._name) or "")
        if self._where == _ENGINE:
            return str(facts.engine_labels.get(self._name) or "")
        return None

    def node_value(self, node: Mapping[str, Any]) -> str | None:
        """:meth:`value_in` for a node given as Engine API JSON."""
        return self.value_in(NodeFacts(node))

    def holds_facts(self, facts: NodeFacts) -> bool:
        """Does the node these facts describe satisfy the expression?"""
        value = self.value_in(facts)
        if value is None:
            return False  # a key outside Swarm's syntax matches no node
        if self._name == "node.ip" and self._where == _FIELD:
            return self._ip_holds(value)
        found = value.casefold() == self._folded
        return found if self.equal else not found

    def holds(self, node: Mapping[str, Any]) -> bool:
        """Does ``node`` (Engine API JSON: ID, Spec, Description, Status) satisfy the expression?"""
        return self.holds_facts(NodeFacts(node))

    def _ip_holds(self, addr: str) -> bool:
        # swarmkit: an address compares as an address, a CIDR as containment; anything else fails.
        try:
            node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(addr)
        except ValueError:
            node_ip = None
        try:
            inside = node_ip is not None and node_ip == ipaddress.ip_address(self.value)
        except ValueError:
            try:
                net = ipaddress.ip_network(self.value, strict=False)
            except ValueError:
                return False
            inside = node_ip is not None and node_ip in net
        return inside if self.equal else not inside


def parse_constraints(expressions: Iterable[str]) -> list[Constraint]:
    """Parse ``Placement.Constraints``; raise :class:`ConstraintError` with Swarm's message."""
    parsed: list[Constraint] = []
    for expr in expressions:
        for op in OPERATORS:
            if op not in expr:
                continue
            raw_key, raw_value = expr.split(op, 1)
            key = raw_key.strip()
            if not _KEY.fullmatch(key):
                raise ConstraintError(f"key '{key}' is invalid")
            value = raw_value.strip()
            if not _VALUE.fullmatch(value):
                raise ConstraintError(f"value '{value}' is invalid")
            parsed.append(Constraint(key, op == "==", value))
            break
        else:
            raise ConstraintError("constraint expected one operator from " + ", ".join(OPERATORS))
    return parsed


def node_matches(constraints: Iterable[Constraint], node: Mapping[str, Any]) -> bool:
    """True when ``node`` satisfies every constraint (an empty list matches every node)."""
    facts = NodeFacts(node)
    return all(c.holds_facts(facts) for c in constraints)
