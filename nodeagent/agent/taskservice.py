"""The node's task service on its gossip port: what runs here, and task logs for managers.

Served beside AgentAdmin on 7946/tcp (``NodeTasks`` in proto/swarmlet/v1/agent_tasks.proto).
Managers call :func:`task_logs` to answer ``docker service logs`` and ``docker task logs``
(the Engine API route is the manager's): it reaches the node that runs the task, by that node's
gossip address (:func:`node_gossip_address` finds it from the gossip membership, whose member
names are node IDs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from swarmlet.v1 import agent_tasks_pb2, agent_tasks_pb2_grpc

from nodeagent import tls
from nodeagent.agent.logs import LogLine, LogStore, format_time_ns

__all__ = ["NodeTasksServicer", "list_payloads", "list_tasks", "node_gossip_address", "task_logs"]


class NodeTasksServicer(agent_tasks_pb2_grpc.NodeTasksServicer):
    """Answers ListTasks from the worker's runners and TaskLogs from the node's log store."""

    def __init__(self, rows: Callable[[], list[dict[str, Any]]], logs: LogStore,
                 payloads: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        """``rows()`` lists the worker's tasks (:meth:`Worker.rows`); ``payloads()`` the secrets
        and configs held (:meth:`Dependencies.rows`: names and sizes, never data)."""
        self.rows = rows
        self.logs = logs
        self.payloads = payloads

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service to a gRPC server (the gossip transport's)."""
        agent_tasks_pb2_grpc.add_NodeTasksServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    async def ListTasks(
        self, request: agent_tasks_pb2.ListTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_tasks_pb2.ListTasksResponse:
        """Every task the worker runs or ran and still holds."""
        rows = [agent_tasks_pb2.TaskRow(**row) for row in self.rows()]
        return agent_tasks_pb2.ListTasksResponse(tasks=rows)

    async def ListPayloads(
        self, request: agent_tasks_pb2.ListPayloadsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_tasks_pb2.ListPayloadsResponse:
        """The secrets and configs this node holds for its tasks (never their data)."""
        rows = [agent_tasks_pb2.PayloadRow(**row) for row in (self.payloads() if self.payloads else [])]
        return agent_tasks_pb2.ListPayloadsResponse(payloads=rows)

    async def TaskLogs(
        self, request: agent_tasks_pb2.TaskLogsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[agent_tasks_pb2.LogLine]:
        """The task's lines; NOT_FOUND if this node has no log for it."""
        log = self.logs.get(request.task_id)
        if log is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id} has no logs on this node")
            return
        lines = log.read(follow=request.follow, tail=int(request.tail), since_ns=int(request.since_ns))
        async for line in lines:
            yield agent_tasks_pb2.LogLine(
                time_ns=line.time_ns, stream=line.stream, line=line.text.encode(), task_id=line.task_id
            )


async def task_logs(node_addr: str, task_id: str, *, follow: bool = False, tail: int = 0,
                    timestamps: bool = False, since_ns: int = 0) -> AsyncIterator[LogLine]:
    """A task's log lines from the node that runs it, oldest first.

    ``node_addr`` is the node's gossip address (host:port, see :func:`node_gossip_address`);
    ``tail`` <= 0 means every line kept; ``follow`` goes on with new lines until the task ends
    or the caller stops iterating; ``timestamps`` fills each line's ``timestamp`` (RFC 3339 with
    nanoseconds, as Docker prints them). Raises LookupError when the node has no log for the
    task and ConnectionError when the node cannot be reached.
    """
    request = agent_tasks_pb2.TaskLogsRequest(task_id=task_id, follow=follow, tail=tail, since_ns=since_ns)
    async with tls.channel(node_addr, manager=False) as channel:
        stub = agent_tasks_pb2_grpc.NodeTasksStub(channel)  # type: ignore[no-untyped-call]
        call = stub.TaskLogs(request)
        try:
            async for pb in call:
                yield LogLine(
                    task_id=pb.task_id, stream=pb.stream, time_ns=pb.time_ns,
                    text=pb.line.decode(errors="replace"),
                    timestamp=format_time_ns(pb.time_ns) if timestamps else "",
                )  # fmt: skip
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LookupError(exc.details()) from None
            raise ConnectionError(f"{node_addr}: {exc.details() or exc.code()}") from None
        finally:
            call.cancel()


async def list_tasks(node_addr: str, timeout: float = 2.0) -> list[dict[str, str]]:
    """The tasks a node runs (task_id, name, image, state, desired_state, address)."""
    async with tls.channel(node_addr, manager=False) as channel:
        stub = agent_tasks_pb2_grpc.NodeTasksStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = await stub.ListTasks(agent_tasks_pb2.ListTasksRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"{node_addr}: {exc.details() or exc.code()}") from None
    fields = ("task_id", "name", "image", "state", "desired_state", "address")
    return [{**{f: str(getattr(row, f)) for f in fields}, "files": ",".join(row.files)}
            for row in reply.tasks]  # fmt: skip


async def list_payloads(node_addr: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The secrets and configs a node holds: kind, id, name, size, templated (never the data)."""
    async with tls.channel(node_addr, manager=False) as channel:
        stub = agent_tasks_pb2_grpc.NodeTasksStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = await stub.ListPayloads(agent_tasks_pb2.ListPayloadsRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"{node_addr}: {exc.details() or exc.code()}") from None
    return [{"kind": r.kind, "id": r.id, "name": r.name, "size": int(r.size), "templated": bool(r.templated)}
            for r in reply.payloads]  # fmt: skip


def node_gossip_address(gossip: Any, node_id: str) -> str | None:
    """The gossip address (host:port) of ``node_id`` as this node's membership knows it."""
    for member in gossip.members():
        if getattr(member, "name", None) == node_id:
            address = getattr(member, "address", None) or getattr(member, "addr", None)
            return str(address) if address else None
    return None
