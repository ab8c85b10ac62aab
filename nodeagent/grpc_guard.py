"""Putting a check in front of a gRPC handler: used by every server guard (the managers' 2377
guard in ``manager/ca/service.py``, the gossip port's :class:`nodeagent.tls.NodeGuard`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

__all__ = ["Check", "guarded_handler"]

Check = Callable[[Any], "tuple[grpc.StatusCode, str] | None"]


def guarded_handler(handler: Any, check: Check) -> Any:
    """``handler`` (a grpc RpcMethodHandler) behind ``check(context)``: a status and message to
    abort with, or None to go on. Works for the four kinds of handlers, generators or not."""

    async def gate(context: Any) -> None:
        refused = check(context)
        if refused is not None:
            await context.abort(refused[0], refused[1])

    def unary_response(inner: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            await gate(context)
            return await inner(request, context)
        return run

    def stream_response(inner: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            await gate(context)
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for message in result:
                    yield message
            else:
                await result
        return run

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary_response),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, stream_response),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, unary_response),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream_response),
    )
    for attr, make, wrap in kinds:
        inner = getattr(handler, attr)
        if inner is not None:
            return make(wrap(inner), request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler
