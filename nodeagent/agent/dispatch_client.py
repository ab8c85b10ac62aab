"""The agent's end of the task path: the Assignments stream in, UpdateTaskStatus calls out.

Both go to the manager the agent session holds its heartbeat stream with (the leader); while the
session is between managers, the client waits. A manager that answers with ``leader_addr`` is
left for the leader. Each new stream starts with the complete set, so a worker that missed
changes while disconnected is whole again after the first message.

Injected link faults (``swarmlet chaos``) act on both: with the link to the manager partitioned
no stream is opened, one open is dropped (its messages never arrive) and reports fail; a delay
or loss on this node's side of the link holds each report back (what the manager sends is the
manager's egress: its own rules would delay it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc
from swarmlet.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from nodeagent import tls
from nodeagent.agent.dependencies import KINDS, Payload
from nodeagent.agent.worker import Worker
from nodeagent.transport.planes import FaultGate

__all__ = ["DispatchClient"]

log = logging.getLogger(__name__)


class DispatchClient:
    """Keeps an Assignments stream open to the leader and sends status batches there."""

    def __init__(self, node_id: str, leader: Callable[[], str], worker: Worker,
                 time_scale: float = 1.0, faults: FaultGate | None = None) -> None:
        """``leader()`` is the manager the session talks to now ("" while it reconnects);
        ``faults``: the node's injected link faults."""
        self.faults = faults if faults is not None else FaultGate(None, "dispatcher")
        self.node_id = node_id
        self._leader = leader
        self.worker = worker
        self.time_scale = time_scale
        self.redirect = ""
        self.messages = 0  # assignments messages received, for tests and logs
        self._channel: tuple[str, grpc.aio.Channel] | None = None  # reports reuse one connection

    def target(self) -> str:
        """Where to send: the address a manager redirected us to, else the session's manager."""
        return self.redirect or self._leader()

    async def run(self) -> None:
        """Hold the stream until cancelled, reconnecting whenever it ends."""
        while True:
            target = self.target()
            if not target or self.faults.blocked(target):
                await asyncio.sleep(0.05 * self.time_scale)
                continue
            try:
                await self._stream(target)
            except grpc.aio.AioRpcError as exc:
                log.debug("assignments from %s ended: %s", target, exc.details() or exc.code())
                self.redirect = ""
            await asyncio.sleep(0.1 * self.time_scale)

    async def _stream(self, target: str) -> None:
        async with tls.channel(target) as channel:
            stub = dispatcher_pb2_grpc.AssignmentsStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Assignments(dispatcher_pb2.AssignmentsRequest(node_id=self.node_id))
            async for msg in call:
                if self.faults.active and self.faults.blocked(target):
                    call.cancel()  # partitioned: what the manager sent is lost; the next stream
                    return  # starts with the complete set once the link is back
                if msg.leader_addr:
                    self.redirect = str(msg.leader_addr)
                    return
                if msg.error:
                    log.info("assignments refused by %s: %s", target, msg.error)
                    self.redirect = ""
                    return
                self.redirect = target if self.redirect else ""
                self.messages += 1
                self._deliver(msg)

    async def _channel_to(self, target: str) -> grpc.aio.Channel:
        if self._channel is not None and self._channel[0] != target:
            await self.close()
        if self._channel is None:
            self._channel = (target, tls.channel(target))
        return self._channel[1]

    async def close(self) -> None:
        """Close the reports' connection (a new one is opened by the next send)."""
        held, self._channel = self._channel, None
        if held is not None:
            await held[1].close(None)

    def _deliver(self, msg: Any) -> None:
        updates, removals = [], []
        payloads: list[Payload] = []
        payload_removals: list[tuple[str, str]] = []
        for change in msg.changes:
            kind = str(change.kind)
            remove = change.action == dispatcher_pb2.AssignmentChange.REMOVE
            if kind == "task":
                if remove:
                    removals.append(str(change.id))
                else:
                    updates.append(json.loads(change.object))
            elif kind in KINDS:
                if remove:
                    payload_removals.append((kind, str(change.id)))
                    continue
                try:
                    payloads.append(Payload.from_api(kind, json.loads(change.object)))
                except ValueError as exc:  # never log the object: it may hold a secret
                    log.warning("assignments: %s %s ignored (%s)", kind, change.id, exc)
            # any other kind is a newer manager's: skipped
        complete = msg.type == dispatcher_pb2.AssignmentsMessage.COMPLETE
        self.worker.apply(complete, updates, removals, payloads, payload_removals)

    async def send_statuses(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """One UpdateTaskStatus call; raises ConnectionError if it did not get through."""
        target = self.target()
        if not target:
            raise ConnectionError("no manager to report to")
        updates = [
            dispatcher_pb2.TaskStatusUpdate(task_id=task_id, status=json.dumps(status).encode())
            for task_id, status in batch
        ]
        request = dispatcher_pb2.UpdateTaskStatusRequest(node_id=self.node_id, updates=updates)
        # A report into a partitioned link is not answered: the reporter retries it later.
        await self.faults.call(target, 0.0)
        try:
            stub = dispatcher_pb2_grpc.AssignmentsStub(await self._channel_to(target))  # type: ignore[no-untyped-call]
            reply = await stub.UpdateTaskStatus(request, timeout=5.0 * self.time_scale)
        except grpc.aio.AioRpcError as exc:
            await self.close()
            raise ConnectionError(exc.details() or str(exc.code())) from None
        if reply.leader_addr:
            self.redirect = str(reply.leader_addr)
            raise ConnectionError(f"not the leader; the leader is {reply.leader_addr}")
        with contextlib.suppress(Exception):
            log.debug("status batch of %d: %d written, %d ignored", len(batch), reply.written, reply.ignored)
