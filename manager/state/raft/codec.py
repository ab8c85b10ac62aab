"""Raft messages to protobuf bytes and back (swarmlet.v1.RaftMessage).

Decoding checks what the core relies on, so a malformed or hostile frame is refused with
``ValueError`` and never reaches the state machine.
"""

from __future__ import annotations

from typing import cast

from google.protobuf.message import DecodeError
from swarmlet.v1 import raft_pb2

from manager.state.raft.messages import Message, MessageType
from manager.state.raft.types import ConfState, Entry, EntryType, SnapshotMeta

__all__ = ["RaftCodec"]



def _message_type(value: int) -> raft_pb2.RaftMessageType:
    # The wire values equal the Python enum's; protobuf takes a plain int for an enum field.
    return cast(raft_pb2.RaftMessageType, value)


def _entry_type(value: int) -> raft_pb2.RaftEntryType:
    return cast(raft_pb2.RaftEntryType, value)


class RaftCodec:
    """Implements :class:`nodeagent.transport.Codec` for Raft messages."""

    def encode(self, message: Message) -> bytes:
        """Serialize one message."""
        pb = raft_pb2.RaftMessage(
            type=_message_type(int(message.type)),
            to=message.to,
            sender=message.sender,
            term=message.term,
            log_term=message.log_term,
            index=message.index,
            commit=message.commit,
            reject=message.reject,
            reject_hint=message.reject_hint,
            snapshot_data=message.snapshot_data,
            context=message.context,
            target=message.target,
        )
        for e in message.entries:
            pb.entries.add(index=e.index, term=e.term, type=_entry_type(int(e.type)), data=e.data)
        if message.snapshot is not None:
            meta = message.snapshot
            pb.snapshot.index = meta.index
            pb.snapshot.term = meta.term
            pb.snapshot.conf.voters.extend(meta.conf.voters)
            pb.snapshot.conf.learners.extend(meta.conf.learners)
        return pb.SerializeToString()

    def decode(self, data: bytes) -> Message:
        """Parse one message; ``ValueError`` if the bytes are not a valid Raft message."""
        pb = raft_pb2.RaftMessage()
        try:
            pb.ParseFromString(data)
        except DecodeError as exc:
            raise ValueError(f"malformed Raft message: {exc}") from None
        try:
            kind = MessageType(pb.type)
        except ValueError:
            raise ValueError(f"unknown Raft message type {pb.type}") from None
        if not pb.to or not pb.sender:
            raise ValueError("a Raft message must name its sender and recipient")
        entries = []
        expected = pb.index + 1
        for e in pb.entries:
            try:
                entry_type = EntryType(e.type)
            except ValueError:
                raise ValueError(f"unknown Raft entry type {e.type}") from None
            if e.index != expected:
                raise ValueError(f"Raft entries must be consecutive after {pb.index}: got {e.index}")
            expected += 1
            entries.append(Entry(e.index, e.term, entry_type, e.data))
        snapshot = None
        if pb.HasField("snapshot"):
            conf = ConfState(tuple(pb.snapshot.conf.voters), tuple(pb.snapshot.conf.learners))
            snapshot = SnapshotMeta(pb.snapshot.index, pb.snapshot.term, conf)
        if kind == MessageType.SNAPSHOT and snapshot is None:
            raise ValueError("a SNAPSHOT message must carry the snapshot's metadata")
        return Message(
            type=kind,
            to=pb.to,
            sender=pb.sender,
            term=pb.term,
            log_term=pb.log_term,
            index=pb.index,
            entries=tuple(entries),
            commit=pb.commit,
            reject=pb.reject,
            reject_hint=pb.reject_hint,
            snapshot=snapshot,
            snapshot_data=pb.snapshot_data,
            context=pb.context,
            target=pb.target,
        )
