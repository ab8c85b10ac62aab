"""Link faults on a compose cluster, driven as a user drives them: `swarmlet chaos partition`,
`delay`, `loss` and `heal`, seen through the real docker CLI and the managers' control API."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from deploy.backends.base import NodeHandle
from manager.controlapi.client import ControlError, NodeRow, list_nodes
from tests.compose.helpers import docker_cli, nodes, status_json, swarmlet, wait_for

MANAGERS = ("manager1", "manager2", "manager3")
LOST_LEADERSHIP = "raft: failed to process the request: node lost leader status"


def rows_at(addr: str) -> dict[str, NodeRow]:
    return {r.hostname: r for r in list_nodes(addr, timeout=2.0)}


def whole() -> bool:
    """Five Ready nodes and exactly one leader, as every manager sees it."""
    for handle in nodes().values():
        if handle.role != "manager":
            continue
        assert handle.control_addr
        rows = rows_at(handle.control_addr)
        if len(rows) != 5 or any(r.status != "Ready" for r in rows.values()):
            return False
        if [r.manager_status for r in rows.values()].count("Leader") != 1:
            return False
    return True


def docker(node: NodeHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """The real docker CLI against ``node``'s Engine API."""
    assert node.docker_host
    return docker_cli(node.docker_host, *args)


def injected(node: NodeHandle, kind: str, plane: str) -> float:
    """``swarmlet_faults_injected_total{kind,plane}`` on ``node``'s /metrics (0 when absent)."""
    assert node.metrics_url
    with urllib.request.urlopen(node.metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    pattern = re.compile(r'^swarmlet_faults_injected_total\{(.*)\} (\S+)$', re.M)
    total = 0.0
    for labels, value in pattern.findall(text):
        if f'kind="{kind}"' in labels and f'plane="{plane}"' in labels:
            total += float(value)
    return total


def worker1_labels() -> dict[str, str]:
    """worker1's labels, as manager1 lists them."""
    addr = nodes()["manager1"].control_addr
    assert addr
    return dict(rows_at(addr)["worker1"].labels or {})


@pytest.fixture
def restored(cluster: str) -> Iterator[None]:
    """Each test starts whole and leaves the shared cluster whole: every link healed, five Ready
    nodes and one leader at every manager, worker1 labelled as before (the other modules count
    its labels)."""
    wait_for("5 Ready nodes and one leader", whole, timeout=60, interval=0.5)
    before = worker1_labels()
    try:
        yield
    finally:
        swarmlet("chaos", "heal", check=False)
        wait_for("the cluster whole again after heal", whole, timeout=60, interval=0.5)
        added = sorted(set(worker1_labels()) - set(before))
        if added:
            manager = nodes()["manager1"]
            rm = [a for key in added for a in ("--label-rm", key)]

            def removed() -> bool:
                done = docker(manager, "node", "update", *rm, "worker1")
                return done.returncode == 0 and worker1_labels() == before

            wait_for(f"worker1's labels {added} removed", removed, timeout=60, interval=0.5)


def test_partitioned_leader_is_replaced_refuses_writes_and_rejoins_after_heal(restored: None) -> None:
    handles = nodes()
    old = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    majority = [m for m in MANAGERS if m != old]
    addrs = {m: handles[m].control_addr for m in MANAGERS}
    assert all(addrs.values())

    asked = time.monotonic()
    swarmlet("chaos", "partition", old, "--from", ",".join(majority))
    cut = time.monotonic()

    def new_leader() -> str | None:
        addr = addrs[majority[0]]
        assert addr
        leaders = [h for h, r in rows_at(addr).items() if r.manager_status == "Leader"]
        return leaders[0] if leaders and leaders[0] in majority else None

    leader = wait_for("a new leader on the majority side", new_leader, timeout=15, interval=0.05)
    took = time.monotonic() - cut
    print(f"new leader {leader} {took:.3f} s after `swarmlet chaos partition {old}` returned "
          f"({time.monotonic() - asked:.3f} s after it was run; the command took {cut - asked:.3f} s)")
    # The old leader's links are cut from the moment its own agent takes the rules, the first
    # the command tells; the election runs while the command tells the others, so the time
    # from the command's return is often near 0 (0.06 s in one run at load average 35, the
    # command itself taking 4.8 s). bench/compose_partition.py times it from the last agent told:
    # the README has its figures. Issue 11 asks for 2 s; the bound has slack for the shared machine.
    assert took < 4.0, f"the majority elected {leader} only {took:.2f} s after the partition"

    # The old leader, cut off, refuses writes in Swarm's words (the docker CLI prints them).
    def refused() -> str | None:
        answer = docker(handles[old], "node", "update", "--label-add", "zone=cut", "worker1")
        return answer.stderr if answer.returncode == 1 and LOST_LEADERSHIP in answer.stderr else None

    said = wait_for("the old leader to refuse a write", refused, timeout=60, interval=0.5)
    assert said.strip() == f"Error response from daemon: rpc error: code = Unknown desc = {LOST_LEADERSHIP}"

    # The majority still writes, and `docker node ls` there shows the old leader cut off.
    write = docker(handles[leader], "node", "update", "--label-add", "zone=majority", "worker1")
    assert write.returncode == 0, write.stderr

    def old_shown_cut_off() -> str | None:
        table = docker(handles[majority[0]], "node", "ls", "--format",
                       "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout
        line = next((x for x in table.splitlines() if x.startswith(f"{old} ")), "")
        return table if line == f"{old} Down Unreachable" else None

    table = wait_for(f"{old} Down and Unreachable in `docker node ls` at {majority[0]}", old_shown_cut_off,
                     timeout=15, interval=0.3)
    assert f"{leader} Ready Leader" in table
    assert injected(handles[old], "partition", "raft") > 0

    swarmlet("chaos", "heal")
    healed = time.monotonic()
    wait_for("one leader and every node Ready after heal", whole, timeout=60, interval=0.2)
    print(f"whole again {time.monotonic() - healed:.3f} s after `swarmlet chaos heal`")
    rows = rows_at(addrs[old] or "")
    assert rows["worker1"].labels and rows["worker1"].labels.get("zone") == "majority"


def test_a_lossy_or_slow_worker_stays_ready(restored: None) -> None:
    handles = nodes()
    leader = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    addr = handles[leader].control_addr
    assert addr
    # Loss on a stream is TCP's: a lost message comes a retransmission timeout later (0.2 s, then
    # 0.4, 0.8...) and holds back the ones behind it. At 10% one heartbeat in a thousand is lost
    # three times in a row, which holds the session 1.4 s against the 1.5 s grace: worker1 was
    # then shown Down (once in a CI run, about 3% of 15 s runs by that count). At 5% that is one
    # in 8,000 beats (about 0.4% of runs); twice in a row (0.6 s, one in 400) never reaches the
    # grace. docs/agent.md, "Link faults", says so for users.
    said = swarmlet("chaos", "loss", "worker1", "5%").stdout
    assert said.strip() == "worker1: loss 5%"
    said = swarmlet("chaos", "delay", "worker1", "200ms").stdout
    assert said.strip() == "worker1: loss 5%; delay 200ms"
    # Ten dispatcher grace periods (1.5 s each) of 5% loss and 200 ms delay: never shown Down.
    seen: set[str] = set()
    leaders: set[str] = set()  # a leader change meanwhile says why, if worker1 is shown Down
    end = time.monotonic() + 15
    while time.monotonic() < end:
        with contextlib.suppress(ControlError):  # a manager slow to answer on a starved machine
            rows = rows_at(addr)
            seen.add(rows["worker1"].status)
            leaders.update(h for h, r in rows.items() if r.manager_status == "Leader")
        time.sleep(0.2)
    assert seen == {"Ready"}, (f"worker1 was shown {seen} with 5% loss and 200 ms delay "
                               f"(leaders seen meanwhile: {sorted(leaders)})")
    worker = handles["worker1"]
    assert injected(worker, "drop", "gossip") > 0
    assert injected(worker, "delay", "dispatcher") > 0
    assert swarmlet("chaos", "heal", "worker1").stdout.strip() == "worker1: no link faults"


def test_a_partition_cuts_the_overlay_between_two_workers(restored: None) -> None:
    handles = nodes()
    manager = handles["manager1"]
    assert docker(manager, "network", "create", "-d", "overlay", "cutnet").returncode == 0
    try:
        web = docker(manager, "service", "create", "--detach", "--name", "cutweb", "--network", "cutnet",
                     "--constraint", "node.hostname==worker2", "nginx:1.25")
        assert web.returncode == 0, web.stderr
        fetches = "".join("wget -qO- http://cutweb/; sleep 1; " for _ in range(300))
        client = docker(manager, "service", "create", "--detach", "--name", "cutclient",
                        "--network", "cutnet", "--constraint", "node.hostname==worker1",
                        "busybox", "sh", "-c", fetches + "sleep 600")
        assert client.returncode == 0, client.stderr

        def logs() -> list[str]:
            # The CLI writes what the task wrote to stderr (wget's complaints) to its own stderr.
            answer = docker(manager, "service", "logs", "cutclient")
            return (answer.stdout + answer.stderr).splitlines()

        def count(word: str) -> int:
            return sum(word in line for line in logs())

        # worker1's task reaches worker2's through the overlay's tunnel...
        wait_for("the page through the overlay", lambda: count("node worker2") >= 1, timeout=60, interval=1)
        swarmlet("chaos", "partition", "worker1", "--from", "worker2")
        # ...until the link is cut: the tunnel cannot be opened (busybox waits, then says so)...
        wait_for("fetches timing out", lambda: count("timed out") >= 2, timeout=30, interval=1)
        assert injected(handles["worker1"], "partition", "overlay") > 0
        # ...and once it heals, pages come through again.
        swarmlet("chaos", "heal")
        pages = count("node worker2")
        wait_for("pages again after heal", lambda: count("node worker2") > pages, timeout=30, interval=1)
    finally:
        docker(manager, "service", "rm", "cutclient", "cutweb")
        wait_for("the services gone", lambda: docker(manager, "network", "rm", "cutnet").returncode == 0,
                 timeout=30, interval=1)


def test_a_leader_cut_off_from_every_node_moves_only_its_own_tasks(restored: None) -> None:
    # A new leader hears from no node at first: their sessions were with the old one. As in
    # Swarm it shows them Unknown until each finds it, and only a node that never does is Down,
    # so the leader change moves no task of a healthy node. Before, the new leader gave them one
    # normal grace (1.5 s) while each agent first waited out the silent old leader twice (4 s):
    # every node went Down and every task was placed again.
    handles = nodes()
    old = next(r["hostname"] for r in status_json() if r["manager_status"] == "Leader")
    others = sorted(h for h in handles if h != old)
    asker = handles[next(m for m in MANAGERS if m != old)]
    made = docker(asker, "service", "create", "--detach", "--name", "steady", "--replicas", "5",
                  "--replicas-max-per-node", "1", "busybox", "sleep", "600")
    assert made.returncode == 0, made.stderr

    def running() -> dict[str, str] | None:
        # task ID -> node, for the running tasks; None until all five run
        table = docker(asker, "service", "ps", "steady", "--filter", "desired-state=running",
                       "--format", "{{.ID}} {{.Node}} {{.CurrentState}}").stdout.split("\n")
        rows = [line.split() for line in table if line.strip()]
        placed = {r[0]: r[1] for r in rows if len(r) > 2 and r[2] == "Running"}
        return placed if len(placed) == 5 else None

    try:
        before = wait_for("five steady tasks running", running, timeout=60, interval=0.5)
        swarmlet("chaos", "partition", old, "--from", ",".join(others))
        seen: dict[str, set[str]] = {h: set() for h in others}
        end = time.monotonic() + 8  # the unknown grace is 3 s from the new leader's start
        while time.monotonic() < end:
            table = docker(asker, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
            for line in table.splitlines():
                host, _, state = line.partition(" ")
                if host in seen:
                    seen[host].add(state)
            time.sleep(0.2)
        print("states seen after the partition:", seen)
        assert all("Down" not in states for states in seen.values()), seen
        assert all("Ready" in states for states in seen.values()), seen
        kept = {t: n for t, n in before.items() if n != old}
        table = docker(asker, "service", "ps", "steady", "--format",
                       "{{.ID}} {{.Node}} {{.DesiredState}}").stdout
        now = {r[0]: (r[1], r[2]) for r in (line.split() for line in table.splitlines()) if len(r) == 3}
        assert {t: now.get(t) for t in kept} == {t: (n, "Running") for t, n in kept.items()}, (
            f"healthy nodes' tasks moved: {before} -> {now}")
    finally:
        docker(asker, "service", "rm", "steady")
