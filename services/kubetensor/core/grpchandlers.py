"""Server interceptors that wrap a method's behaviour, and the handler they hand back in its place.

``WrappingInterceptor`` is the base of ``grpcserver.ErrorInterceptor`` and
``grpctracing.ServerTracingInterceptor``: each says in ``wrap`` what to do with one method's handler,
and ``replace`` gives a handler of the same kind with the same (de)serializers around a new behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that hands each method's handler (when there is one) to ``wrap``."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrap(handler, handler_call_details)

    def wrap(self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        """The handler to serve ``call`` with instead of ``handler`` (``handler`` itself to leave it)."""
        raise NotImplementedError
