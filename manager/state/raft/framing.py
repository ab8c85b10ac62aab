"""Frames of the Raft stream: several encoded messages in one gRPC write.

Each message is preceded by its length as a varint (protobuf's length-delimited framing). Under
load one frame carries many messages, which is most of the shell's throughput: a gRPC write costs
far more than the bytes in it.
"""

from __future__ import annotations

__all__ = ["pack_frame", "unpack_frame"]


def pack_frame(messages: list[bytes]) -> bytes:
    """Join encoded messages into one stream frame, each preceded by its length as a varint
    (protobuf's length-delimited framing)."""
    out = bytearray()
    for m in messages:
        n = len(m)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += m
    return bytes(out)


def unpack_frame(frame: bytes) -> list[bytes]:
    """Split a frame made by :func:`pack_frame`; ``ValueError`` if it is cut short or malformed."""
    out: list[bytes] = []
    pos, end = 0, len(frame)
    while pos < end:
        n = shift = 0
        while True:
            if pos >= end or shift > 35:
                raise ValueError("truncated length prefix")
            byte = frame[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + n > end:
            raise ValueError("truncated message")
        out.append(frame[pos : pos + n])
        pos += n
    return out
