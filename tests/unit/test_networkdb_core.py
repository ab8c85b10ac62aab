"""The network database's rules, one input at a time: Lamport merges, tombstones, deaths, scoping."""

from __future__ import annotations

import random

import pytest

from nodeagent.networkdb.core import (
    ENDPOINTS,
    PEERS,
    Broadcast,
    Endpoint,
    Entry,
    NetworkDB,
    NetworkDBConfig,
    Sync,
    decode_entries,
    decode_entry,
    encode_entries,
    encode_entry,
)

pytestmark = pytest.mark.unit

CONFIG = NetworkDBConfig(sync_ticks=2, reap_ticks=4)


def _db(name: str) -> NetworkDB:
    return NetworkDB(name, CONFIG, random.Random(1))


def _ep(task: str, node: str = "n2", addr: str = "10.0.1.3") -> Endpoint:
    return Endpoint("net", task, node, addr, "10.0.1.2", "web", "svc", ("www",), "vip",
                    ((80, "127.0.0.2", 40001),))


def test_a_join_writes_the_peer_entry_broadcasts_it_and_syncs_with_a_live_member() -> None:
    db = _db("n1")
    db.node_alive("n2")
    db.join_network("net", "127.0.0.1")
    out = db.take_outbox()
    assert isinstance(out[0], Broadcast) and out[0].entry.table == PEERS and out[0].entry.value == "127.0.0.1"
    assert isinstance(out[1], Sync) and out[1].to == "n2"
    assert db.peers("net") == {"n1": "127.0.0.1"}
    with pytest.raises(ValueError, match="not joined"):
        db.set_endpoint(Endpoint("other", "t9", "n1", "10.0.9.9", "", "x", "s"))


def test_newer_lamport_times_win_and_stale_copies_lose_to_tombstones() -> None:
    db = _db("n1")
    db.join_network("net", "127.0.0.1")
    v1 = Entry(ENDPOINTS, "net", "t1", "n2", 5, _ep("t1").to_json())
    gone = Entry(ENDPOINTS, "net", "t1", "n2", 7, "", deleted=True)
    db.handle_broadcast(v1)
    assert [e.task_id for e in db.endpoints("net")] == ["t1"]
    db.handle_broadcast(gone)
    assert db.endpoints("net") == []
    db.handle_broadcast(v1)  # a stale copy arriving late
    assert db.endpoints("net") == []
    assert db.clock >= 7  # the clock moved past every time seen
    db.set_endpoint(_ep("t2", "n1"))
    written = Entry(ENDPOINTS, "net", "t2", "n1", db.clock, _ep("t2", "n1").to_json())
    assert db.take_outbox()[-1] == Broadcast(written)


def test_endpoints_of_networks_not_joined_are_not_kept_but_peers_are() -> None:
    db = _db("n1")
    db.handle_broadcast(Entry(PEERS, "net", "n2", "n2", 1, "127.0.0.2"))
    db.handle_broadcast(Entry(ENDPOINTS, "net", "t1", "n2", 2, _ep("t1").to_json()))
    assert db.peers("net") == {"n2": "127.0.0.2"} and db.endpoints("net") == []


def test_a_dead_nodes_entries_are_dropped_and_ignored_until_it_is_alive_again() -> None:
    db = _db("n1")
    db.join_network("net", "127.0.0.1")
    db.node_alive("n2")
    peer = Entry(PEERS, "net", "n2", "n2", 1, "127.0.0.2")
    ep = Entry(ENDPOINTS, "net", "t1", "n2", 2, _ep("t1").to_json())
    db.handle_sync("n2", [peer, ep], reply=True)
    assert set(db.peers("net")) == {"n1", "n2"}
    db.node_dead("n2")
    assert set(db.peers("net")) == {"n1"} and db.endpoints("net") == []
    db.handle_broadcast(ep)  # a third node's stale copy
    assert db.endpoints("net") == []
    db.node_alive("n2")
    db.handle_broadcast(ep)
    assert [e.task_id for e in db.endpoints("net")] == ["t1"]


def test_a_sync_is_answered_once_with_the_peer_table_and_shared_networks_only() -> None:
    db = _db("n1")
    db.join_network("a", "127.0.0.1")
    db.join_network("b", "127.0.0.1")
    db.set_endpoint(Endpoint("a", "ta", "n1", "10.0.1.3", "", "web", "s"))
    db.set_endpoint(Endpoint("b", "tb", "n1", "10.0.2.3", "", "db", "s2"))
    db.take_outbox()
    answer = db.handle_sync("n2", [Entry(PEERS, "a", "n2", "n2", 1, "127.0.0.2")], reply=False)
    assert answer is not None and answer.reply and answer.to == "n2"
    keys = {(e.table, e.network, e.key) for e in answer.entries}
    assert (ENDPOINTS, "a", "ta") in keys and (ENDPOINTS, "b", "tb") not in keys
    assert (PEERS, "b", "n1") in keys
    assert db.handle_sync("n2", [], reply=True) is None


def test_tombstones_are_reaped_and_syncs_run_every_sync_ticks() -> None:
    db = _db("n1")
    db.join_network("net", "127.0.0.1")
    db.node_alive("n2")
    db.handle_broadcast(Entry(PEERS, "net", "n2", "n2", 1, "127.0.0.2"))
    db.set_endpoint(_ep("t1", "n1"))
    db.delete_endpoint("net", "t1")
    db.take_outbox()
    db.tick()
    assert db.take_outbox() == []
    db.tick()
    assert [type(o) for o in db.take_outbox()] == [Sync]
    assert any(e.key == "t1" and e.deleted for e in db._tables.values())
    for _ in range(4):
        db.tick()
    assert not any(e.key == "t1" for e in db._tables.values())


def test_leaving_deletes_own_entries_and_forgets_the_table() -> None:
    db = _db("n1")
    db.join_network("net", "127.0.0.1")
    db.handle_broadcast(Entry(ENDPOINTS, "net", "t2", "n2", 3, _ep("t2").to_json()))
    db.take_outbox()
    db.leave_network("net")
    out = db.take_outbox()
    assert [(o.entry.table, o.entry.deleted) for o in out if isinstance(o, Broadcast)] == [(PEERS, True)]
    assert db.endpoints("net") == [] and db.peers("net") == {} and "net" not in db.joined


def test_the_wire_encoding_round_trips_and_refuses_garbage() -> None:
    entry = Entry(ENDPOINTS, "net", "t1", "n2", 9, _ep("t1").to_json(), False)
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_entries(encode_entries([entry, entry])) == [entry, entry]
    assert Endpoint.from_json(entry.value) == _ep("t1")
    assert len(encode_entry(entry)) < 1024  # fits gossip's user payload
    for bad in (b"{", b"[1,2]", b'["bogus","n","k","o",1,"",false]', b'["peers","n","k","o",-1,"",false]'):
        with pytest.raises(ValueError):
            decode_entry(bad)
    with pytest.raises(ValueError):
        decode_entries(b'{"a":1}')
    with pytest.raises(ValueError):
        Endpoint.from_json("{}")
    with pytest.raises(ValueError):
        NetworkDBConfig(sync_ticks=0)


def test_a_node_leaving_a_network_takes_its_endpoints_with_it_and_stale_copies_stay_out() -> None:
    db = _db("n1")
    db.join_network("net", "127.0.0.1")
    ep = Entry(ENDPOINTS, "net", "t2", "n2", 3, _ep("t2").to_json())
    db.handle_broadcast(Entry(PEERS, "net", "n2", "n2", 2, "127.0.0.2"))
    db.handle_broadcast(ep)
    db.handle_broadcast(Entry(PEERS, "net", "n2", "n2", 5, "", deleted=True))
    assert db.endpoints("net") == [] and set(db.peers("net")) == {"n1"}
    db.handle_broadcast(ep)  # a third node's copy from before the leave
    assert db.endpoints("net") == []
    db.handle_broadcast(Entry(PEERS, "net", "n2", "n2", 8, "127.0.0.2"))  # back on the network
    db.handle_broadcast(Entry(ENDPOINTS, "net", "t3", "n2", 9, _ep("t3").to_json()))
    assert [e.task_id for e in db.endpoints("net")] == ["t3"]
