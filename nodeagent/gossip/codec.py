"""Gossip messages to protobuf bytes and back (proto/swarmlet/v1/gossip.proto).

Decoding is the trust boundary: anything malformed, oversized or out of range raises
``ValueError``, which the shell counts and drops; the core never sees it.

Limits: a datagram-sized message (probes, gossip) may be at most :data:`MAX_MESSAGE_BYTES`
(64 KiB, the most a UDP datagram can carry); a codec for the reliable half, where full-state
push-pull travels, can be built with ``GossipCodec(max_bytes=MAX_STREAM_BYTES)`` (4 MiB,
gRPC's default receive limit).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from swarmlet.v1 import gossip_pb2 as pb

from nodeagent.gossip.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
    UserMsg,
    WireState,
)

__all__ = ["MAX_MESSAGE_BYTES", "MAX_NAME_CHARS", "MAX_STREAM_BYTES", "GossipCodec"]

#: The largest encoded message the default codec accepts or produces, in bytes.
MAX_MESSAGE_BYTES = 64 * 1024
#: The limit for a codec on the reliable half (full-state exchanges of large clusters).
MAX_STREAM_BYTES = 4 * 1024 * 1024
#: The longest name, address, topic or label a message may carry, in characters.
MAX_NAME_CHARS = 512
# A compound packet holds at most this many parts.
_MAX_PARTS = 1024
_MAX_U64 = (1 << 64) - 1


def _text(value: str, what: str, *, required: bool = True) -> str:
    if required and not value:
        raise ValueError(f"gossip message: {what} is empty")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"gossip message: {what} is longer than {MAX_NAME_CHARS} characters")
    return value


class GossipCodec:
    """Encodes and decodes :mod:`nodeagent.gossip.messages` objects; see the module for limits."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if max_bytes < 64:
            raise ValueError(f"GossipCodec max_bytes must be at least 64, got {max_bytes}")
        self.max_bytes = max_bytes

    # Encoding -------------------------------------------------------------------------------------
    def encode(self, message: Message) -> bytes:
        """Serialize one message; ``ValueError`` if it is not a gossip message or too large."""
        data = self._to_pb(message, nested=False).SerializeToString()
        if len(data) > self.max_bytes:
            raise ValueError(f"gossip message of {len(data)} bytes exceeds the {self.max_bytes}-byte limit")
        return data

    def _to_pb(self, m: object, *, nested: bool) -> pb.GossipMessage:
        out = pb.GossipMessage()
        if isinstance(m, Ping):
            out.ping.seq, out.ping.target, out.ping.source = m.seq, m.target, m.source
        elif isinstance(m, IndirectPing):
            p = out.indirect_ping
            p.seq, p.target, p.target_addr, p.source = m.seq, m.target, m.target_addr, m.source
        elif isinstance(m, Ack):
            out.ack.seq = m.seq
        elif isinstance(m, Nack):
            out.nack.seq = m.seq
        elif isinstance(m, Alive):
            out.alive.incarnation, out.alive.node, out.alive.address = m.incarnation, m.node, m.address
            _meta_to_pb(m.meta, out.alive.meta)
        elif isinstance(m, Suspect):
            out.suspect.incarnation, out.suspect.node, out.suspect.source = m.incarnation, m.node, m.source
        elif isinstance(m, Dead):
            out.dead.incarnation, out.dead.node, out.dead.source = m.incarnation, m.node, m.source
        elif isinstance(m, UserMsg):
            u = out.user
            u.origin, u.msg_id, u.topic, u.payload = m.origin, m.msg_id, m.topic, m.payload
        elif isinstance(m, PushPull):
            pp = out.push_pull
            pp.source, pp.join, pp.reply = m.source, m.join, m.reply
            for e in m.entries:
                entry = pp.entries.add()
                entry.name, entry.address, entry.incarnation = e.name, e.address, e.incarnation
                entry.state = int(e.state)  # type: ignore[assignment]
                _meta_to_pb(e.meta, entry.meta)
        elif isinstance(m, Compound) and not nested:
            for part in m.parts:
                out.compound.parts.append(self._to_pb(part, nested=True))
        else:
            raise ValueError(f"not a gossip message: {type(m).__name__}")
        return out

    # Decoding -------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Message:
        """Parse one message; ``ValueError`` on malformed, oversized or out-of-range input."""
        if len(data) > self.max_bytes:
            raise ValueError(f"gossip message of {len(data)} bytes exceeds the {self.max_bytes}-byte limit")
        msg = pb.GossipMessage()
        try:
            msg.ParseFromString(data)
        except (DecodeError, RuntimeError) as exc:
            raise ValueError(f"malformed gossip message: {exc}") from None
        return self._from_pb(msg, nested=False)

    def _from_pb(self, msg: pb.GossipMessage, *, nested: bool) -> Message:
        kind = msg.WhichOneof("body")
        if kind == "ping":
            p = msg.ping
            return Ping(p.seq, _text(p.target, "ping target"), _text(p.source, "ping source"))
        if kind == "indirect_ping":
            q = msg.indirect_ping
            return IndirectPing(
                q.seq, _text(q.target, "indirect ping target"), _text(q.target_addr, "indirect ping address"),
                _text(q.source, "indirect ping source"),
            )
        if kind == "ack":
            return Ack(msg.ack.seq)
        if kind == "nack":
            return Nack(msg.nack.seq)
        if kind == "alive":
            a = msg.alive
            return Alive(a.incarnation, _text(a.node, "alive node"), _text(a.address, "alive address"),
                         _meta_from_pb(a.meta))
        if kind == "suspect":
            s = msg.suspect
            return Suspect(s.incarnation, _text(s.node, "suspect node"), _text(s.source, "suspect source"))
        if kind == "dead":
            d = msg.dead
            return Dead(d.incarnation, _text(d.node, "dead node"), _text(d.source, "dead source"))
        if kind == "user":
            u = msg.user
            origin, topic = _text(u.origin, "user origin"), _text(u.topic, "user topic")
            return UserMsg(origin, u.msg_id, topic, bytes(u.payload))
        if kind == "push_pull":
            pp = msg.push_pull
            entries = []
            for e in pp.entries:
                if e.state not in (0, 1, 2, 3):
                    raise ValueError(f"gossip message: unknown member state {e.state}")
                entries.append(PushPullEntry(
                    _text(e.name, "member name"), _text(e.address, "member address"), _meta_from_pb(e.meta),
                    e.incarnation, WireState(e.state),
                ))
            return PushPull(_text(pp.source, "push-pull source"), tuple(entries), pp.join, pp.reply)
        if kind == "compound" and not nested:
            parts = msg.compound.parts
            if not parts or len(parts) > _MAX_PARTS:
                raise ValueError(f"gossip message: a compound needs 1 to {_MAX_PARTS} parts")
            return Compound(tuple(self._from_pb(part, nested=True) for part in parts))
        if kind == "compound":
            raise ValueError("gossip message: a compound inside a compound")
        raise ValueError("gossip message: empty body")


def _meta_to_pb(meta: NodeMeta, out: pb.SwimNodeMeta) -> None:
    out.node_id, out.role, out.addr, out.version = meta.node_id, meta.role, meta.addr, meta.version
    for key, value in meta.labels:
        label = out.labels.add()
        label.key, label.value = key, value


def _meta_from_pb(m: pb.SwimNodeMeta) -> NodeMeta:
    labels = tuple((_text(lb.key, "label key"), _text(lb.value, "label value", required=False))
                   for lb in m.labels)
    return NodeMeta(
        _text(m.node_id, "node id", required=False), _text(m.role, "role", required=False),
        _text(m.addr, "node address", required=False), labels, _text(m.version, "version", required=False),
    )
