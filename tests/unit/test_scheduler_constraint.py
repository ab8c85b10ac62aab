"""Constraint parsing and matching, as swarmkit's manager/constraint and the recordings say."""

from __future__ import annotations

import pytest

from manager.scheduler.build import make_node
from manager.scheduler.constraint import Constraint, ConstraintError, node_matches, parse_constraints
from manager.scheduler.nodeinfo import NodeInfo

# api/err-service-create-bad-constraint.json (a real Swarm, 20.10.24), for 'node.labels.x=y':
RECORDED_MESSAGE = "rpc error: code = Unknown desc = constraint expected one operator from ==, !="
OPERATOR_ERROR = "constraint expected one operator from ==, !="


@pytest.mark.parametrize(
    ("expr", "key", "equal", "value"),
    [
        ("node.labels.disk == ssd", "node.labels.disk", True, "ssd"),
        ("node.labels.x==nope", "node.labels.x", True, "nope"),
        (" node == node1", "node", True, "node1"),  # surrounding whitespace is dropped
        ("node.role!=manager", "node.role", False, "manager"),
        ("NoDe==node1", "NoDe", True, "node1"),  # capitals in keys
        ("_node==_node1", "_node", True, "_node1"),
        ("node==[a-b]+c*(n|b)/", "node", True, "[a-b]+c*(n|b)/"),
        ("node==node 1", "node", True, "node 1"),  # whitespace inside a value
        ("foo==bar", "foo", True, "bar"),  # unknown key: parses, matches nothing
        ("node.ip==10.0.0.0/8", "node.ip", True, "10.0.0.0/8"),
        ("engine.labels.os \t!=\t windows", "engine.labels.os", False, "windows"),
    ],
)
def test_valid_expressions(expr: str, key: str, equal: bool, value: str) -> None:
    assert parse_constraints([expr]) == [Constraint(key, equal, value)]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("node.labels.x=y", OPERATOR_ERROR),  # recorded: single =
        ("node.labels.x", OPERATOR_ERROR),  # recorded: no operator
        ("", OPERATOR_ERROR),
        (" ", OPERATOR_ERROR),
        ("node ~ abc", OPERATOR_ERROR),
        ("node.labels.x>=1", OPERATOR_ERROR),
        ("1node==a2", "key '1node' is invalid"),
        ("no de== node1", "key 'no de' is invalid"),
        ("no*de==node1", "key 'no*de' is invalid"),
        ("==node1", "key '' is invalid"),
        ("n==x", "key 'n' is invalid"),  # keys have at least two characters
        ("no$de==node1", "key 'no$de' is invalid"),
        ("node==", "value '' is invalid"),
        ("node== ", "value '' is invalid"),
        ("ab==b!=c", "value 'b!=c' is invalid"),  # == is tried first and splits once
        ("node.labels.x==a<b", "value 'a<b' is invalid"),
    ],
)
def test_invalid_expressions(expr: str, message: str) -> None:
    with pytest.raises(ConstraintError) as caught:
        parse_constraints(["node.role==worker", expr])
    assert str(caught.value) == message


def test_invalid_constraint_error_is_the_recorded_api_answer() -> None:
    with pytest.raises(ConstraintError) as caught:
        parse_constraints(["node.labels.x=y"])
    assert caught.value.api_message == RECORDED_MESSAGE
    assert caught.value.status == 500  # "POST /v1.41/services/create -> 500" in 07-modes-placement


NODE = NodeInfo(
    make_node(
        "abc123", hostname="Worker1", role="worker", labels={"disk": "SSD", "Zone": "a"},
        engine_labels={"os": "linux"}, arch="x86_64", addr="10.1.2.3",
    )
).api  # fmt: skip
BARE = {"ID": "bare", "Spec": {"Role": "manager"}, "Description": None, "Status": {}}


@pytest.mark.parametrize(
    ("expr", "node", "matches"),
    [
        ("node.id==abc123", NODE, True),
        ("node.id!=abc123", NODE, False),
        ("node.hostname==worker1", NODE, True),  # values compare ignoring case
        ("NODE.HOSTNAME==Worker1", NODE, True),  # keys too
        ("node.role==worker", NODE, True),
        ("node.role==Manager", NODE, False),
        ("node.role!=manager", NODE, True),
        ("node.role==boss", NODE, False),  # recorded: accepted, never satisfied
        ("node.platform.os==linux", NODE, True),
        ("node.platform.arch==x86_64", NODE, True),
        ("node.platform.arch==amd64", NODE, False),  # no normalisation in constraints
        ("node.labels.disk==ssd", NODE, True),  # label values ignore case
        ("node.labels.Disk==ssd", NODE, False),  # the label name does not
        ("Node.Labels.disk==ssd", NODE, True),  # the prefix does
        ("node.labels.zone==a", NODE, False),
        ("node.labels.Zone==a", NODE, True),
        ("node.labels.rack!=r1", NODE, True),  # missing label compares as ""
        ("node.labels.rack==r1", NODE, False),
        ("engine.labels.os==LINUX", NODE, True),
        ("engine.labels.os!=linux", NODE, False),
        ("node.ip==10.1.2.3", NODE, True),
        ("node.ip==10.1.0.0/16", NODE, True),
        ("node.ip!=10.1.0.0/16", NODE, False),
        ("node.ip==10.2.0.0/16", NODE, False),
        ("node.ip==nonsense", NODE, False),  # a malformed address matches no node
        ("foo==bar", NODE, False),
        ("foo!=bar", NODE, False),  # unknown keys fail whichever the operator
        ("node.hostname!=x", BARE, True),  # no description: hostname is ""
        ("node.hostname==x", BARE, False),
        ("node.platform.os!=linux", BARE, True),
        ("engine.labels.a!=b", BARE, True),
        ("node.role==manager", BARE, True),
    ],
)
def test_matching(expr: str, node: dict[str, object], matches: bool) -> None:
    assert node_matches(parse_constraints([expr]), node) is matches


def test_every_constraint_must_hold() -> None:
    both = parse_constraints(["node.role==worker", "node.labels.disk==ssd"])
    assert node_matches(both, NODE)
    assert not node_matches(parse_constraints(["node.role==worker", "node.labels.disk==hdd"]), NODE)
    assert node_matches([], NODE)


def test_match_lists_candidates_like_swarmkit() -> None:
    (c,) = parse_constraints(["node.name==f*o"])
    assert c.match("F*O") and not c.match("foo")
    assert c.match("foo", "f*o", "bar") and not c.match("foo", "fo")
    (n,) = parse_constraints(["node.name!=foo"])
    assert n.match("fooExtra") and not n.match("FOO")
