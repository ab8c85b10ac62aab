"""Node IDs are issued by the CA (docs/security.md, "Joining"): real node processes.

A node started with ``--join`` joins before anything else runs, with no ID of its own: the leader
draws one, puts it in the certificate's CN and stores the Node under it; the node takes its ID
from the certificate and keeps it across restarts. Shown with the real docker CLI: the ID
``docker node ls`` shows for each node is the CN of the certificate in that node's data
directory, and is not an ID the node had before it joined.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import Cluster, wait_until

from deploy.backends.base import BackendError, fetch_operator_certificate
from manager.ca.tokens import ClusterCredentials
from nodeagent import tls
from nodeagent.identity import is_id, new_id

pytestmark = [pytest.mark.slow, requires_docker]


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    """manager1 makes the cluster's CA and tokens in a folder of its own, as `swarmlet up`'s does;
    manager2 and worker1 are started with the tokens it made (the test's own CA is not used)."""
    c = Cluster(tmp_path)
    c.add_managers(2)
    c.add_worker("worker1")
    first = c.nodes["manager1"]
    own = tmp_path / "manager1-tokens"
    kept, skip = [], False
    for arg in first.args:
        if skip:
            skip = False
        elif arg in ("--token-file", "--manager-token-file", "--worker-token-file"):
            skip = True
        else:
            kept.append(arg)
    first.args = [*kept, "--manager-token-file", str(own / "manager_token"),
                  "--worker-token-file", str(own / "worker_token")]
    try:
        yield c
    finally:
        c.stop_all()


def _start_staged(c: Cluster) -> None:
    """As `swarmlet up` starts a new cluster: every node at once, the others' token files empty
    and ``--await-token``; once manager1 made the cluster (its CA key file deleted: the Raft store
    holds the key), its tokens are written into those files in place."""
    own = c.workdir / "manager1-tokens"
    joining = {"manager_token": "manager_token", "worker1_token": "worker_token"}
    for name in joining:
        (c.secrets / name).write_text("")
    for name, node in c.nodes.items():
        node.start(() if name == "manager1" else ("--await-token",))
    wait_until(lambda: (own / "worker_token").exists() and not (own / "ca.key").exists(), 60, 0.1,
               "manager1 created the cluster")
    for name, source in joining.items():
        with open(c.secrets / name, "r+") as f:  # the same file the waiting nodes read
            f.truncate(0)
            f.write((own / source).read_text())


def _node_ls(c: Cluster) -> dict[str, tuple[str, str]]:
    """hostname -> (ID, STATUS) as `docker node ls` prints them, through manager1's Engine API."""
    out = docker(c.workdir, c.managers()[0].host, "node", "ls",
                 "--format", "{{.Hostname}} {{.ID}} {{.Status}}")
    if out.returncode != 0:
        return {}
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}


def _all_ready(c: Cluster, names: set[str]) -> dict[str, tuple[str, str]] | None:
    """The rows once every node is Ready and holds its certificate (a node is Ready from the
    moment the leader registers its join, a moment before the answer reaches it)."""
    if not all(tls.NodeCredentials.load(c.workdir / n) is not None for n in names):
        return None
    rows = _node_ls(c)
    return rows if all(rows.get(n, ("", ""))[1] == "Ready" for n in names) else None


def _cn(c: Cluster, name: str) -> str:
    held = tls.NodeCredentials.load(c.workdir / name)
    assert held is not None, f"{name} holds no certificate"
    return held.identity.node_id


def test_the_ca_chooses_each_joining_nodes_id_and_the_node_keeps_it(cluster: Cluster) -> None:
    names = {"manager1", "manager2", "worker1"}
    # An ID the worker might have used had it chosen one itself: left in its data directory
    # before its first start, where a node used to draw and keep its own.
    drawn = new_id()
    (cluster.workdir / "worker1").mkdir(parents=True)
    (cluster.workdir / "worker1" / "node_id").write_text(drawn + "\n")
    _start_staged(cluster)
    # The key manager1 made is in its Raft store only: no key file left in its folder.
    assert not (cluster.workdir / "manager1-tokens" / "ca.key").exists()
    rows = wait_until(lambda: _all_ready(cluster, names), 90, 0.3, "three nodes Ready")
    ids = {name: rows[name][0] for name in names}
    for name in names:
        full = _cn(cluster, name)
        assert is_id(full)
        # `docker node ls` shows the ID truncated to 12 characters, as Docker's does.
        assert full.startswith(ids[name]), (name, full, ids[name])
        assert (cluster.workdir / name / "node_id").read_text().strip() == full
    worker = _cn(cluster, "worker1")
    assert worker != drawn  # the node did not choose it
    # It started before there was a token, and waited for one (--await-token).
    assert "waiting for a join token" in cluster.nodes["worker1"].log_path.read_text()
    assert "the ID the managers chose" in cluster.nodes["worker1"].log_path.read_text()
    assert "the ID the managers chose" in cluster.nodes["manager2"].log_path.read_text()
    inspect = docker(cluster.workdir, cluster.managers()[0].host, "node", "inspect", "worker1",
                     "--format", "{{.ID}}")
    assert inspect.stdout.strip() == worker

    # A restart with its certificate: the same ID, the same Node, no second join.
    cluster.nodes["worker1"].kill()
    cluster.nodes["worker1"].start()
    wait_until(lambda: "node agent ready" in cluster.nodes["worker1"].tail(200).split("---- start 2")[-1],
               60, 0.2, "worker1 restarted")
    rows = wait_until(lambda: _all_ready(cluster, names), 60, 0.3, "three nodes Ready again")
    assert _cn(cluster, "worker1") == worker and rows["worker1"][0] == ids["worker1"]
    assert sorted(rows) == sorted(names)  # no second Node for worker1
    restarted = cluster.nodes["worker1"].log_path.read_text().split("---- start 2")[-1]
    assert f"node {worker} (worker1)" in restarted and "joined as node" not in restarted

    # The manager that made the CA, restarted: its key is only in the Raft store now, and the
    # manager keeps the certificate it holds rather than making itself another root.
    first = cluster.nodes["manager1"]
    before = (cluster.workdir / "manager1" / "certificates" / "swarm-node.crt").read_bytes()
    first.kill()
    first.start()
    wait_until(lambda: "serving on" in first.log_path.read_text().split("---- start 2")[-1], 60, 0.2,
               "manager1 serving again")
    rows = wait_until(lambda: _all_ready(cluster, names), 60, 0.3, "all Ready after manager1 restarted")
    assert (cluster.workdir / "manager1" / "certificates" / "swarm-node.crt").read_bytes() == before
    assert rows["manager1"][0] == ids["manager1"]
    assert "issued this bootstrapping manager's own certificate" not in first.log_path.read_text().split(
        "---- start 2")[-1]


def test_the_bootstrap_manager_names_itself_and_issues_every_other_id(tmp_path: pathlib.Path) -> None:
    """The first manager is the CA: it names itself. Every other node's certificate was issued
    by it, for an ID it drew, and the Node objects are stored under those IDs."""
    c = Cluster(tmp_path)
    c.add_managers(1)
    c.add_worker("worker1")
    c.add_worker("worker2")
    c.start_all()
    try:
        rows = wait_until(lambda: _all_ready(c, {"manager1", "worker1", "worker2"}), 90, 0.3, "Ready")
        manager_log = c.nodes["manager1"].log_path.read_text()
        for name in ("worker1", "worker2"):
            full = _cn(c, name)
            assert f"dispatcher: {name} joined as worker {full}" in manager_log
            assert full.startswith(rows[name][0])
        assert len({_cn(c, n) for n in ("manager1", "worker1", "worker2")}) == 3

        # What `swarmlet up` keeps on the host instead of the CA's key: an operator certificate,
        # for the manager token only, with no Node made for it.
        m = c.managers()[0]
        state = tmp_path / "state"
        state.mkdir()
        (state / "manager_token").write_text(c.credentials.worker_token + "\n")
        with pytest.raises(BackendError, match="A valid manager join token is necessary"):
            fetch_operator_certificate(m.target, state)
        assert not (state / "operator.crt").exists()
        (state / "manager_token").write_text(c.credentials.manager_token + "\n")
        fetch_operator_certificate(m.target, state)
        operator = tls.identity_of((state / "operator.crt").read_bytes())
        assert (operator.node_id, operator.role) == ("operator", "manager")
        assert operator.cluster_id == tls.NodeCredentials.load(tmp_path / "manager1").identity.cluster_id
        assert sorted(_node_ls(c)) == ["manager1", "worker1", "worker2"]
        # A token of another CA is never sent: the roots do not match its digest.
        (state / "manager_token").write_text(ClusterCredentials.create().manager_token + "\n")
        with pytest.raises(BackendError, match="does not match the manager token"):
            fetch_operator_certificate(m.target, state)
    finally:
        c.stop_all()
