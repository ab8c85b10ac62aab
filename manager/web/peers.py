"""Asking other node agents what they see, and changing their link faults: the web view's client.

Every node serves ``AgentAdmin`` on its gossip port (:class:`nodeagent.gossip.shell.AgentAdminServicer`):
``Members`` is the membership as that node sees it, ``GetLinkFaults`` / ``SetLinkFaults`` its
injected link faults. The manager reaches every node's gossip port already (gossip runs there),
so this is the one sound way to show each node's own view: /metrics only has counts by state,
not who is suspected. A node that does not answer within the timeout is shown as unreachable:
what its view is cannot be known from here, which is itself what the page must say.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from swarmlet.v1 import transport_pb2, transport_pb2_grpc

from nodeagent import tls
from nodeagent.transport.faults import LinkFaultRule, faults_from_proto, faults_to_proto

__all__ = ["PeerAdmin", "rule_json"]

_generated: Any = transport_pb2_grpc


def rule_json(rule: LinkFaultRule) -> dict[str, Any]:
    """A link fault rule as the page shows it."""
    return {"peers": list(rule.peers), "drop": rule.drop, "delay": rule.delay,
            "duplicate": rule.duplicate, "partition": rule.partition}


class PeerAdmin:
    """One gRPC channel per node's gossip address, kept while the web view runs."""

    def __init__(self, timeout: float) -> None:
        """``timeout``: seconds one call may take before the node counts as unreachable."""
        self.timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tls_generation = tls.generation()

    def _stub(self, address: str) -> Any:
        if self._tls_generation != tls.generation():
            # New certificates (the join, a renewal): channels keep the credentials they were
            # made with, so the old ones are dropped (grpc closes them when collected).
            self._tls_generation = tls.generation()
            self._channels.clear()
        channel = self._channels.get(address)
        if channel is None:
            channel = tls.channel(address, manager=False)  # a gossip port: any joined node's
            self._channels[address] = channel
        return _generated.AgentAdminStub(channel)

    async def view(self, address: str) -> dict[str, Any]:
        """The node's membership view and its link faults: ``{"ok", "members", "health", "faults"}``,
        or ``{"ok": False, "error": ...}`` when it does not answer."""
        stub = self._stub(address)
        try:
            members, faults = await asyncio.gather(
                stub.Members(transport_pb2.MembersRequest(), timeout=self.timeout),
                stub.GetLinkFaults(transport_pb2.LinkFaults(), timeout=self.timeout),
            )
        except grpc.aio.AioRpcError as exc:
            return {"ok": False, "error": f"{address} does not answer ({exc.code().name.lower()})"}
        return {
            "ok": True,
            "members": {m.name: m.state for m in members.members if m.name != members.self},
            "health": int(members.health),
            "faults": [rule_json(r) for r in faults_from_proto(faults)],
        }

    async def get_faults(self, address: str) -> list[LinkFaultRule]:
        """The rules in force at ``address``; ConnectionError when it does not answer."""
        try:
            reply = await self._stub(address).GetLinkFaults(transport_pb2.LinkFaults(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"{address} does not answer ({exc.code().name.lower()})") from None
        return faults_from_proto(reply)

    async def set_faults(self, address: str, rules: list[LinkFaultRule]) -> list[LinkFaultRule]:
        """Replace the rules at ``address``; ValueError if refused, ConnectionError if unreachable."""
        try:
            reply = await self._stub(address).SetLinkFaults(faults_to_proto(rules), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValueError(exc.details() or "invalid rule") from None
            raise ConnectionError(f"{address} does not answer ({exc.code().name.lower()})") from None
        return faults_from_proto(reply)

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(c.close(None) for c in channels.values()), return_exceptions=True)
