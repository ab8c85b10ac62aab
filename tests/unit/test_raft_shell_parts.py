"""The Raft shell's parts that need no cluster: the leader probe, the address book, pending callers."""

from __future__ import annotations

import asyncio
import pathlib
import socket

import pytest

from manager.state.raft.addresses import AddressBook
from manager.state.raft.errors import NotLeaderError, ProposalDropped
from manager.state.raft.pending import PendingRequests
from manager.state.raft.probe import LeaderProbe, split_address
from manager.state.raft.types import Entry, EntryType


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.1:2377", ("10.0.0.1", 2377)),
        ("[::1]:2377", ("::1", 2377)),
        ("manager1", None),
        (":2377", None),
    ],
)
def test_split_address(address: str, expected: tuple[str, int] | None) -> None:
    assert split_address(address) == expected


def test_the_probe_reports_a_leader_whose_port_refuses_and_only_then() -> None:
    async def scenario() -> list[tuple[str, int]]:
        reports: list[tuple[str, int]] = []
        listening = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        live = f"127.0.0.1:{listening.sockets[0].getsockname()[1]}"
        dead = f"127.0.0.1:{_free_port()}"  # nothing listens there
        book = {"a": dead, "b": live}
        probe = LeaderProbe(book.__getitem__, lambda leader, term: reports.append((leader, term)))
        probe.stream_broke("a", "a", 7)  # the leader's stream broke: refused, so reported
        probe.stream_broke("b", "b", 7)  # it still listens: a broken connection, not a dead leader
        probe.stream_broke("c", "a", 7)  # a follower's stream: not probed at all
        await asyncio.sleep(0.2)
        await probe.close()
        listening.close()
        await listening.wait_closed()
        return reports

    assert asyncio.run(scenario()) == [("a", 7)]


def test_the_address_book_is_kept_on_disk(tmp_path: pathlib.Path) -> None:
    book = AddressBook(tmp_path / "peers.json", {"a": "10.0.0.1:2377"})
    assert book.set("b", "10.0.0.2:2377")
    assert not book.set("b", "10.0.0.2:2377")  # no change
    assert not book.set("c", "")  # no address
    again = AddressBook(tmp_path / "peers.json", {"a": "10.0.0.9:2377"})
    again.load()
    assert again.all() == {"a": "10.0.0.9:2377", "b": "10.0.0.2:2377"}  # what is known wins
    assert again.get("zzz") == ""


def test_pending_callers_are_answered_dropped_or_sent_to_the_new_leader() -> None:
    class Node:
        term = 3

        def __init__(self) -> None:
            self.next = 10

        def propose(self, data: bytes) -> int:
            self.next += 1
            return self.next

    async def scenario() -> None:
        pending = PendingRequests()
        first, second = pending.propose(b"x"), pending.propose(b"y")
        pending.place(Node(), lambda leader: "")  # type: ignore[arg-type]
        assert (await first, await second) == ((11, 3), (12, 3))
        kept, replaced = pending.result_of(11), pending.result_of(12)
        pending.applied(Entry(11, 3, EntryType.NORMAL, b"x"), "ok", None)
        pending.applied(Entry(12, 4, EntryType.NORMAL, b"other"), None, None)  # a new leader's entry
        assert await kept == "ok"
        with pytest.raises(ProposalDropped):
            await replaced
        late = pending.propose(b"z")
        pending.leader_changed("m2", "10.0.0.2:2377")
        with pytest.raises(NotLeaderError, match=r"m2 at 10\.0\.0\.2:2377"):
            await late

    asyncio.run(scenario())
