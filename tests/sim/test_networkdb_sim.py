"""The network database converges on the simulated network: late joins, deaths, partitions, loss.

Every run is seeded; each scenario is checked on several seeds so a lucky ordering cannot pass it.
"""

from __future__ import annotations

import pytest

from nodeagent.networkdb.core import Endpoint
from nodeagent.networkdb.simcluster import SimNetworkDB

NET = "net1"
OTHER = "net2"
SEEDS = [1, 2, 3, 7]


def _endpoint(node: str, task: str, addr: str, network: str = NET) -> Endpoint:
    return Endpoint(network, task, node, addr, "10.0.1.2", "web", "svc1", ("www",), "vip",
                    ((80, f"127.0.0.{node[-1]}", 40000),))


def _start(sim: SimNetworkDB, nodes: list[str]) -> None:
    for n in nodes:
        sim.add(n)
    sim.run(0.2)


@pytest.mark.parametrize("seed", SEEDS)
def test_entries_reach_every_node_of_the_network_and_only_them(seed: int) -> None:
    sim = SimNetworkDB(seed)
    _start(sim, ["n1", "n2", "n3", "n4"])
    for i, n in enumerate(["n1", "n2", "n3"], start=3):
        sim.dbs[n].join_network(NET, f"127.0.0.{i}")
        sim.dbs[n].set_endpoint(_endpoint(n, f"t{n}", f"10.0.1.{i}"))
        sim.flush(n)
    sim.run(0.5)
    assert sim.converged(NET, ["n1", "n2", "n3"])
    peers, tasks = sim.view("n1", NET)
    assert set(peers) == {"n1", "n2", "n3"} and tasks == {"tn1", "tn2", "tn3"}
    # n4 carries no task of the network: it knows the peers, never the endpoints.
    assert sim.view("n4", NET) == (peers, frozenset())
    assert sim.endpoint("n2", NET, "tn1") == _endpoint("n1", "tn1", "10.0.1.3")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_node_that_joins_late_learns_every_entry_even_with_broadcasts_lost(seed: int) -> None:
    sim = SimNetworkDB(seed, loss=0.3)
    _start(sim, ["n1", "n2"])
    sim.dbs["n1"].join_network(NET, "127.0.0.1")
    sim.dbs["n1"].set_endpoint(_endpoint("n1", "t1", "10.0.1.3"))
    sim.flush("n1")
    sim.dbs["n2"].join_network(NET, "127.0.0.2")
    sim.dbs["n2"].set_endpoint(_endpoint("n2", "t2", "10.0.1.4"))
    sim.flush("n2")
    sim.run(3.0)  # anti-entropy covers what the lossy broadcasts missed
    sim.add("n3")
    sim.run(1.5)  # n3 heard none of the broadcasts: its first syncs bring the peer table
    assert set(sim.view("n3", NET)[0]) == {"n1", "n2"}
    sim.dbs["n3"].join_network(NET, "127.0.0.3")
    sim.flush("n3")
    sim.run(1.5)
    assert sim.converged(NET, ["n1", "n2", "n3"])
    assert sim.view("n3", NET)[1] == {"t1", "t2"}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_dead_nodes_entries_are_removed_everywhere(seed: int) -> None:
    sim = SimNetworkDB(seed)
    _start(sim, ["n1", "n2", "n3"])
    for i, n in enumerate(["n1", "n2", "n3"], start=1):
        sim.dbs[n].join_network(NET, f"127.0.0.{i}")
        sim.dbs[n].set_endpoint(_endpoint(n, f"t{n}", f"10.0.1.{i + 2}"))
        sim.flush(n)
    sim.run(1.0)
    sim.crash("n3")
    sim.run(2.0)
    assert sim.converged(NET, ["n1", "n2"])
    peers, tasks = sim.view("n1", NET)
    assert set(peers) == {"n1", "n2"} and tasks == {"tn1", "tn2"}
    # A restarted n3 is a new, empty node; it learns the others and they learn it again.
    sim.add("n3")
    sim.dbs["n3"].join_network(NET, "127.0.0.3")
    sim.run(2.0)
    assert sim.converged(NET, ["n1", "n2", "n3"])
    assert set(sim.view("n1", NET)[0]) == {"n1", "n2", "n3"}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_partition_heals_and_updates_made_on_both_sides_converge(seed: int) -> None:
    sim = SimNetworkDB(seed)
    nodes = ["n1", "n2", "n3", "n4"]
    _start(sim, nodes)
    for i, n in enumerate(nodes, start=1):
        sim.dbs[n].join_network(NET, f"127.0.0.{i}")
        sim.dbs[n].set_endpoint(_endpoint(n, f"t{n}", f"10.0.1.{i + 2}"))
        sim.flush(n)
    sim.run(1.0)
    sim.net.partition(["n1", "n2"], ["n3", "n4"])
    sim.run(2.0)
    assert sim.view("n1", NET)[1] == {"tn1", "tn2"}  # the other side's tasks are gone from view
    # Both sides change meanwhile: n1 withdraws its task and starts another, n3 starts one.
    sim.dbs["n1"].delete_endpoint(NET, "tn1")
    sim.dbs["n1"].set_endpoint(_endpoint("n1", "tn1b", "10.0.1.9"))
    sim.dbs["n3"].set_endpoint(_endpoint("n3", "tn3b", "10.0.1.10"))
    for n in ("n1", "n3"):
        sim.flush(n)
    sim.net.heal()
    sim.run(3.0)
    assert sim.converged(NET, nodes)
    assert sim.view("n4", NET)[1] == {"tn1b", "tn2", "tn3", "tn3b", "tn4"}


@pytest.mark.parametrize("seed", SEEDS)
def test_leaving_a_network_withdraws_the_node_and_two_networks_stay_apart(seed: int) -> None:
    sim = SimNetworkDB(seed)
    _start(sim, ["n1", "n2", "n3"])
    sim.dbs["n1"].join_network(NET, "127.0.0.1")
    sim.dbs["n1"].set_endpoint(_endpoint("n1", "a", "10.0.1.3"))
    sim.dbs["n2"].join_network(NET, "127.0.0.2")
    sim.dbs["n3"].join_network(OTHER, "127.0.0.3")
    sim.dbs["n3"].set_endpoint(_endpoint("n3", "b", "10.0.2.3", OTHER))
    for n in ("n1", "n2", "n3"):
        sim.flush(n)
    sim.run(1.5)
    assert sim.view("n2", NET)[1] == {"a"} and sim.view("n2", OTHER)[1] == frozenset()
    assert sim.view("n1", OTHER)[1] == frozenset()
    sim.dbs["n1"].delete_endpoint(NET, "a")
    sim.dbs["n1"].leave_network(NET)
    sim.flush("n1")
    sim.run(1.5)
    assert sim.view("n2", NET) == ({"n2": "127.0.0.2"}, frozenset())
