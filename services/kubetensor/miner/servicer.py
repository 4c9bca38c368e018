"""``MinerServicer``: the miner's gRPC edge (``Generate``, server-streaming) and ``create_server``.

Composed by ``__main__`` and the integration tests. It only translates a ``GenerateRequest`` into a
``MinerService.generate`` call and chunks into ``GenerateChunk``s; a full miner raises
``MinerBusyError`` (UNAVAILABLE) and an engine failure ``EngineError`` (UNAVAILABLE), mapped by
``kubetensor.core.grpcserver.ErrorInterceptor``. Direct inference is not signed and needs no permit:
it is for the pod's own clients (a gateway), not for validators, which come over NATS.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from kubetensor.core import grpcserver
from kubetensor.core.errors import InvalidArgumentError
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.service import MinerService
from kubetensor.miner.settings import MinerSettings
from kubetensor.v1 import miner_pb2, miner_pb2_grpc

SERVICE_NAME = "kubetensor.v1.MinerService"
"""Full gRPC name of the service (also its health-check name)."""
DEFAULT_MAX_TOKENS = 64
"""Tokens generated when a request leaves ``max_tokens`` at 0."""


class MinerServicer(miner_pb2_grpc.MinerServiceServicer):
    """Direct, streamed inference on the miner's engine."""

    def __init__(self, service: MinerService) -> None:
        self._service = service

    async def Generate(
        self, request: miner_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[miner_pb2.GenerateChunk]:
        if not request.prompt:
            raise InvalidArgumentError("prompt", "required: the text to complete")
        if not 0.0 <= request.temperature <= 2.0:
            raise InvalidArgumentError("temperature", f"expected 0..2, got {request.temperature}")
        metadata = {item.key: item.value for item in (context.invocation_metadata() or ())}
        received = TraceContext.parse(str(metadata.get("traceparent", "")) or None)
        chunks = self._service.generate(
            prompt=request.prompt,
            max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=request.temperature,
            trace=received.child() if received is not None else None,
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                # The engine's last event may carry only the token count: nothing to stream.
                if chunk.text or chunk.finish_reason:
                    yield miner_pb2.GenerateChunk(text=chunk.text, finish_reason=chunk.finish_reason)


def create_server(
    settings: MinerSettings, service: MinerService, *, health: grpcserver.Health | None = None
) -> tuple[grpc.aio.Server, int]:
    """A server with the miner and health services on ``settings.listen``; returns it and its port."""
    server = grpcserver.new_server()
    miner_pb2_grpc.add_MinerServiceServicer_to_server(MinerServicer(service), server)
    (health or grpcserver.Health([SERVICE_NAME])).register(server)
    port: int = server.add_insecure_port(settings.listen)
    return server, port
