"""The gRPC server plumbing every kubetensor service shares: error mapping, health, termination.

Each service's ``servicer.create_server`` builds its server with ``new_server()`` (which installs
``ErrorInterceptor`` first) and registers a ``Health``; each ``__main__`` waits with
``wait_for_termination()`` and then drains (health NOT_SERVING, ``server.stop(grace)``).

``ErrorInterceptor`` maps ``kubetensor.core.errors`` categories to status codes by one table. An error
outside the table (a bug) is logged with its traceback and answered with INTERNAL and a generic message,
so internals never leak to clients.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kubetensor.core import errors, grpchandlers, grpctracing, telemetry

_log = logging.getLogger(__name__)

STATUS_CODES: dict[type[errors.KubetensorError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    errors.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    errors.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
}
"""The one table from error category to gRPC status code."""


def status_code_for(error: BaseException) -> grpc.StatusCode:
    """The status code ``error`` is answered with: its category's, or INTERNAL for anything else."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


async def _abort(error: Exception, context: grpc.aio.ServicerContext, *, method: str) -> None:
    code = status_code_for(error)
    if code == grpc.StatusCode.INTERNAL:
        _log.error("%s failed with an unexpected error", method, exc_info=error)
        await context.abort(code, f"internal error in {method}; the server log has the details")
    else:
        await context.abort(code, str(error))


def _wrap_unary(behaviour: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            result = behaviour(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(error, context, method=method)

    return wrapper


def _wrap_stream(behaviour: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behaviour(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(error, context, method=method)

    return wrapper


def _wrap(behaviour: Callable[..., Any] | None, method: str, *, streaming: bool) -> Any:
    if behaviour is None:
        return None
    # A streaming handler is either an async generator or a coroutine that writes with context.write
    # (the health Watch); only the first yields responses the wrapper has to pass through.
    if streaming and inspect.isasyncgenfunction(behaviour):
        return _wrap_stream(behaviour, method)
    return _wrap_unary(behaviour, method)


class ErrorInterceptor(grpchandlers.WrappingInterceptor):
    """Answers ``KubetensorError`` with its category's code and anything else with INTERNAL."""

    def wrap(self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = call.method
        wrapped = _wrap(
            grpchandlers.behaviour(handler),
            method,
            streaming=grpchandlers.kind(handler) in ("unary_stream", "stream_stream"),
        )
        return grpchandlers.replace(handler, wrapped)


def new_server(*, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """A ``grpc.aio`` server whose first interceptor is ``ErrorInterceptor``.

    When tracing is on, ``grpctracing.ServerTracingInterceptor`` goes outside it, so each call's span
    sees the status the error mapping answered with.
    """
    tracing = [grpctracing.ServerTracingInterceptor()] if telemetry.enabled() else []
    return grpc.aio.server(interceptors=[*tracing, ErrorInterceptor(), *interceptors])


class Health:
    """The standard ``grpc.health.v1`` service for one server, overall and per named service."""

    def __init__(self, service_names: Sequence[str] = ()) -> None:
        self._servicer = health.aio.HealthServicer()
        self._names = ("", *service_names)

    def register(self, server: grpc.aio.Server) -> None:
        """Add the health service to ``server`` (before it starts)."""
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    async def set_serving(self) -> None:
        """Report SERVING for the server and every named service."""
        for name in self._names:
            await self._servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        """Report NOT_SERVING from now on (the first step of a graceful shutdown)."""
        await self._servicer.enter_graceful_shutdown()


async def wait_for_termination(signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> str:
    """Wait until the process receives one of ``signals``; return its name."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig.name)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
