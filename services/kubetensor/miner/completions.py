"""``CompletionsClient``: streaming text completions from an OpenAI-compatible server (vLLM) over httpx.

The miner's only client of its engine: ``MinerService`` calls ``stream``; ``__main__`` calls
``wait_ready`` and ``close``. It speaks the plain OpenAI completions API (``POST /v1/completions`` with
``"stream": true``, server-sent events ``data: {...}`` ending with ``data: [DONE]``), so vLLM's
official image, the CPU build, or any compatible engine can stand in. ``stream_options.include_usage``
asks for the token count in a last, choice-less event; engines that ignore it still work (the count is
then the number of text events). The W3C ``traceparent`` goes along as an HTTP header (vLLM continues
the trace when its OpenTelemetry export is on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from kubetensor.core import telemetry
from kubetensor.core.subjects import TRACEPARENT
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.errors import EngineError
from kubetensor.miner.jobs import Chunk

_log = logging.getLogger(__name__)
_DATA = "data:"
_DONE = "[DONE]"


def _error_text(body: bytes) -> str:
    """The engine's error message from an error body (OpenAI ``{"error": {"message"}}`` or raw text)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return body[:300].decode(errors="replace")
    if isinstance(decoded, dict):
        error = decoded.get("error", decoded)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        if "message" in decoded:
            return str(decoded["message"])[:300]
    return str(decoded)[:300]


def parse_event(data: str) -> Chunk | None:
    """The chunk one SSE ``data:`` payload carries (None for a usage-less, text-less event)."""
    try:
        event: Any = json.loads(data)
    except ValueError:
        raise EngineError(f"the engine streamed a malformed event: {data[:120]!r}") from None
    if not isinstance(event, dict):
        raise EngineError(f"the engine streamed a non-object event: {data[:120]!r}")
    if "error" in event:
        raise EngineError(f"the engine failed mid-stream: {_error_text(data.encode())}")
    usage = event.get("usage")
    tokens = (
        int(usage["completion_tokens"]) if isinstance(usage, dict) and "completion_tokens" in usage else None
    )
    choices = event.get("choices") or []
    if not choices:
        return None if tokens is None else Chunk(text="", completion_tokens=tokens)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise EngineError(f"the engine streamed a malformed choice: {data[:120]!r}")
    return Chunk(
        text=str(choice.get("text") or ""),
        finish_reason=str(choice.get("finish_reason") or ""),
        completion_tokens=tokens,
    )


class CompletionsClient:
    """A streaming client of one model on an OpenAI-compatible server."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        request_seconds: float = 60.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (an in-process engine for benchmarks and tests)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(request_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self.model = model
        """The served model name requests ask for ("" until ``wait_ready`` picks the server's first)."""

    async def close(self) -> None:
        await self._http.aclose()

    async def models(self) -> list[str]:
        """The model names the server serves (``GET /v1/models``)."""
        try:
            response = await self._http.get("/v1/models")
        except httpx.HTTPError as error:
            raise EngineError(f"the engine at {self._http.base_url} is unreachable: {error!r}") from None
        if response.status_code != 200:
            raise EngineError(
                f"GET /v1/models answered {response.status_code}: {_error_text(response.content)}"
            )
        try:
            return [str(model["id"]) for model in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise EngineError("GET /v1/models answered something that is not a model list") from None

    async def wait_ready(self, *, within_seconds: float, poll_seconds: float = 1.0) -> str:
        """Wait until the server lists models; pick the first when no model was named. Returns the model."""
        deadline = time.monotonic() + within_seconds
        next_log = time.monotonic()
        while True:
            try:
                served = await self.models()
            except EngineError as error:
                if time.monotonic() >= deadline:
                    raise EngineError(f"no engine after {within_seconds:.0f}s: {error}") from None
                if time.monotonic() >= next_log:
                    _log.info("waiting for the engine at %s (%s)", self._http.base_url, error)
                    next_log = time.monotonic() + 10.0
                await asyncio.sleep(poll_seconds)
                continue
            if not self.model:
                if not served:
                    raise EngineError("the engine serves no model")
                self.model = served[0]
            elif self.model not in served:
                raise EngineError(f"the engine serves {served}, not the configured model {self.model!r}")
            return self.model

    async def stream(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream the completion of ``prompt``; the last chunk has a ``finish_reason``."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {TRACEPARENT: trace.traceparent} if trace is not None else {}
        if telemetry.enabled():
            async for chunk in self._traced_stream(body, headers):
                yield chunk
            return
        async for chunk in self._stream(body, headers):
            yield chunk

    async def _traced_stream(self, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[Chunk]:
        """``_stream`` inside a gen_ai CLIENT span, whose context goes to the engine as ``traceparent``.

        The span is not made current: an async generator may be closed from another context.
        """
        span: Span = telemetry.tracer().start_span(
            f"text_completion {self.model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "text_completion",
                "gen_ai.system": "vllm",
                "gen_ai.request.model": self.model,
                "gen_ai.request.max_tokens": body["max_tokens"],
                "gen_ai.request.temperature": body["temperature"],
                "server.address": self._http.base_url.host,
                "server.port": self._http.base_url.port or 80,
                "http.request.method": "POST",
                "url.path": "/v1/completions",
            },
        )
        headers = dict(headers)
        telemetry.inject(headers, context=telemetry.context_of(span))
        tokens: int | None = None
        events = 0
        finish = ""
        try:
            async for chunk in self._stream(body, headers):
                events += bool(chunk.text)
                finish = chunk.finish_reason or finish
                if chunk.completion_tokens is not None:
                    tokens = chunk.completion_tokens
                yield chunk
        except BaseException as error:
            if not isinstance(error, GeneratorExit):
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            raise
        finally:
            span.set_attribute("gen_ai.usage.output_tokens", tokens if tokens is not None else events)
            if finish:
                span.set_attribute("gen_ai.response.finish_reasons", [finish])
            span.end()

    async def _stream(self, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[Chunk]:
        try:
            async with self._http.stream("POST", "/v1/completions", json=body, headers=headers) as response:
                if response.status_code != 200:
                    content = await response.aread()
                    raise EngineError(
                        f"POST /v1/completions answered {response.status_code}: {_error_text(content)}"
                    )
                async for line in response.aiter_lines():
                    if not line.startswith(_DATA):
                        continue
                    data = line[len(_DATA) :].strip()
                    if data == _DONE:
                        return
                    chunk = parse_event(data)
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as error:
            raise EngineError(f"the engine request failed: {error!r}") from None
