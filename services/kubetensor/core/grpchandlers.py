"""A gRPC method handler with its behaviour replaced: what every server interceptor of ours returns.

Used by ``grpcserver.ErrorInterceptor`` and ``grpctracing.ServerTracingInterceptor``, which wrap a
method's behaviour and must hand back a handler of the same kind with the same (de)serializers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import grpc

Kind = Literal["unary_unary", "unary_stream", "stream_unary", "stream_stream"]

_BUILDERS: dict[Kind, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def kind(handler: grpc.RpcMethodHandler) -> Kind:
    """Which of the four call shapes ``handler`` serves (the one behaviour it has set)."""
    for name in ("unary_unary", "unary_stream", "stream_unary"):
        if getattr(handler, name) is not None:
            return name
    return "stream_stream"


def behaviour(handler: grpc.RpcMethodHandler) -> Any:
    """The function that serves ``handler``'s calls."""
    return getattr(handler, kind(handler))


def replace(handler: grpc.RpcMethodHandler, new_behaviour: Any) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind and (de)serializers that runs ``new_behaviour``."""
    return _BUILDERS[kind(handler)](
        new_behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
