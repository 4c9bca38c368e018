"""gRPC spans with the trace context in the call's metadata: a client and a server interceptor.

``grpcserver.new_server`` installs ``ServerTracingInterceptor`` outermost when tracing is on; every
gRPC client of the services builds its channel with ``channel(address)``, which adds
``ClientTracingInterceptor`` when tracing is on. Off (``telemetry.enabled()`` False when the channel or
server is built), neither is installed, so calls pay nothing.

Spans follow the RPC semantic conventions: name ``<package.Service>/<Method>``, kind CLIENT or SERVER,
``rpc.system=grpc``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``, ``server.address``.
The client writes W3C ``traceparent``/``tracestate`` into the metadata; the server continues it. Unary
calls and server-streaming handlers are traced; health checks are not (probes would drown the traces).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from kubetensor.core import grpchandlers, telemetry

_HEALTH = "/grpc.health.v1.Health/"


def _names(method: str | bytes) -> tuple[str, str, str]:
    """(span name, rpc.service, rpc.method) of a full method name ``/pkg.Service/Method``."""
    text = method.decode() if isinstance(method, bytes) else method
    service, _, name = text.lstrip("/").partition("/")
    return f"{service}/{name}", service, name


def _attributes(method: str | bytes) -> tuple[str, dict[str, str | int]]:
    name, service, rpc_method = _names(method)
    return name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method}


class ClientTracingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A CLIENT span per unary call, its context sent in the call's metadata."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server: dict[str, str | int] = {"server.address": host or address}
        if port.isdigit():
            self._server["server.port"] = int(port)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        name, attributes = _attributes(client_call_details.method)
        with telemetry.span(name, kind=SpanKind.CLIENT, attributes={**attributes, **self._server}) as span:
            carrier: dict[str, str] = {}
            telemetry.inject(carrier)
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *carrier.items())
            details = client_call_details._replace(metadata=metadata)
            call = await continuation(details, request)
            try:
                response = await call
            except grpc.aio.AioRpcError as error:
                if span is not None:
                    span.set_attribute("rpc.grpc.status_code", error.code().value[0])
                raise
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
            return response


def channel(address: str, **kwargs: Any) -> grpc.aio.Channel:
    """An insecure ``grpc.aio`` channel to ``address``, traced when tracing is on."""
    interceptors = [ClientTracingInterceptor(address)] if telemetry.enabled() else None
    return grpc.aio.insecure_channel(address, interceptors=interceptors, **kwargs)


def _status(span: Span | None, context: grpc.aio.ServicerContext) -> None:
    if span is None:
        return
    code = context.code()
    if code is None or code == grpc.StatusCode.OK:
        span.set_attribute("rpc.grpc.status_code", 0)
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    span.set_status(Status(StatusCode.ERROR, str(context.details() or code.name)))


def _server_unary(behaviour: Callable[..., Any], method: str, metadata: Any) -> Callable[..., Awaitable[Any]]:
    name, attributes = _attributes(method)
    parent = telemetry.extract(dict(metadata or ()))

    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with telemetry.span(name, kind=SpanKind.SERVER, attributes=attributes, parent=parent) as span:
            try:
                result = behaviour(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                _status(span, context)

    return wrapper


def _server_stream(
    behaviour: Callable[..., Any], method: str, metadata: Any
) -> Callable[..., AsyncIterator[Any]]:
    name, attributes = _attributes(method)
    parent = telemetry.extract(dict(metadata or ()))

    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with telemetry.span(name, kind=SpanKind.SERVER, attributes=attributes, parent=parent) as span:
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                _status(span, context)

    return wrapper


class ServerTracingInterceptor(grpchandlers.WrappingInterceptor):
    """A SERVER span per unary or server-streaming call, continuing the caller's trace."""

    def wrap(self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = call.method
        if method.startswith(_HEALTH):
            return handler
        metadata = call.invocation_metadata
        behaviour = grpchandlers.behaviour(handler)
        if grpchandlers.kind(handler) == "unary_unary":
            return grpchandlers.replace(handler, _server_unary(behaviour, method, metadata))
        if grpchandlers.kind(handler) == "unary_stream" and inspect.isasyncgenfunction(behaviour):
            return grpchandlers.replace(handler, _server_stream(behaviour, method, metadata))
        return handler
