"""The embedded DNS's rules: service names, aliases, tasks.NAME, vip and dnsrr, network scoping."""

from __future__ import annotations

import pytest

from nodeagent.networkdb.core import Endpoint
from nodeagent.overlay.dns import Answer, RoundRobin, backends, find_endpoint, resolve

pytestmark = pytest.mark.unit

A, B = "neta", "netb"
TABLE = [
    Endpoint(A, "w1", "n1", "10.0.1.3", "10.0.1.2", "web", "sw", ("www",)),
    Endpoint(A, "w2", "n2", "10.0.1.10", "10.0.1.2", "web", "sw", ("www",)),
    Endpoint(A, "w3", "n2", "10.0.1.4", "10.0.1.2", "web", "sw", ("www",)),
    Endpoint(A, "d1", "n1", "10.0.1.6", "", "db", "sd", (), "dnsrr"),
    Endpoint(A, "d2", "n2", "10.0.1.5", "", "db", "sd", (), "dnsrr"),
    Endpoint(B, "s1", "n2", "10.0.2.3", "10.0.2.2", "secret", "ss"),
    Endpoint(B, "w9", "n2", "10.0.2.4", "10.0.2.5", "web", "sw", ()),
]


@pytest.mark.parametrize(("name", "networks", "answer"), [
    ("web", [A], Answer(A, ("10.0.1.2",), True)),                            # vip mode: the VIP
    ("WEB.", [A], Answer(A, ("10.0.1.2",), True)),                           # case, trailing dot
    ("www", [A], Answer(A, ("10.0.1.2",), True)),                            # an alias: the VIP too
    ("tasks.web", [A], Answer(A, ("10.0.1.3", "10.0.1.4", "10.0.1.10"), False)),  # numeric order
    ("db", [A], Answer(A, ("10.0.1.5", "10.0.1.6"), False)),                 # dnsrr: the tasks
    ("tasks.db", [A], Answer(A, ("10.0.1.5", "10.0.1.6"), False)),
    ("secret", [A], None),                                                   # on another network
    ("secret", [A, B], Answer(B, ("10.0.2.2",), True)),
    ("web", [B, A], Answer(B, ("10.0.2.5",), True)),                         # the task's first network
    ("web", [], None),
    ("nosuch", [A, B], None),
    ("tasks.", [A], None),
    ("", [A], None),
])  # fmt: skip
def test_names_resolve_as_dockers_embedded_dns(name: str, networks: list[str], answer: Answer | None) -> None:
    assert resolve(name, networks, TABLE) == answer


def test_a_vip_is_balanced_round_robin_over_its_running_tasks() -> None:
    behind = backends(A, "10.0.1.2", TABLE)
    assert [e.task_id for e in behind] == ["w1", "w3", "w2"]
    assert backends(A, "10.0.1.3", TABLE) == []  # a task address is no VIP
    rr = RoundRobin()
    picks = [rr.pick(A, "10.0.1.2", behind) for _ in range(4)]
    assert [p.task_id for p in picks if p] == ["w1", "w3", "w2", "w1"]
    assert rr.pick(A, "10.0.9.9", []) is None


def test_find_endpoint_is_scoped_to_the_network() -> None:
    assert find_endpoint(A, "10.0.1.3", TABLE) == TABLE[0]
    assert find_endpoint(B, "10.0.1.3", TABLE) is None
