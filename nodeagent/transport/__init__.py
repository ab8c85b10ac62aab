"""The seam between a protocol shell and the network.

A :class:`Transport` has two halves, as memberlist's does:

* a best-effort *packet* half (UDP-like: may be lost, duplicated or reordered), used for
  SWIM probes and gossip;
* a reliable *stream* half (TCP/gRPC-stream-like: delivered once and in order per peer for as
  long as the link is up, lost when it is not), used for push-pull state exchange and Raft.

Both halves carry *message objects*, never bytes. The real transport encodes them with the
protobuf codec of its protocol; the simulated network hands the (immutable) objects over as they
are, which keeps a 10,000-node simulation fast, and can be told to round-trip every message
through a codec when a test wants to prove the codec too.

The cores themselves never see a Transport: their shells drain the core's outbox into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Codec", "MessageHandler", "Transport"]

#: ``handler(sender_address, message, reliable)``: called for every message that arrives.
MessageHandler = Callable[[str, Any, bool], None]


class Transport(Protocol):
    """What a protocol shell needs from the network."""

    @property
    def address(self) -> str:
        """This endpoint's address, as peers name it (``host:port`` or a simulated name)."""
        ...

    def send_packet(self, to: str, message: Any) -> None:
        """Send best-effort: the message may be lost, duplicated, delayed or reordered."""
        ...

    def send_stream(self, to: str, message: Any) -> None:
        """Send reliably: delivered once, in order per peer, unless the peer is unreachable."""
        ...

    def set_handler(self, handler: MessageHandler) -> None:
        """Install the function that receives every incoming message."""
        ...


class Codec(Protocol):
    """Turns a protocol's message objects into bytes and back."""

    def encode(self, message: Any) -> bytes:
        """Serialize one message."""
        ...

    def decode(self, data: bytes) -> Any:
        """Parse one message; raise ``ValueError`` on malformed input."""
        ...
