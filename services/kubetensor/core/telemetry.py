"""OpenTelemetry tracing for every kubetensor process, configured from the standard ``OTEL_*`` variables.

Each ``__main__`` (and the operator's entry point) calls ``configure(<default service name>)`` once and
``Tracing.shutdown()`` on the way out; everything else opens spans with ``span(...)``. Tracing is on
only when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not ``true``. Off, nothing is created: no
provider, no exporter, no thread, and ``span(...)`` returns one shared null context (a function call).

On, the process gets an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (``OTEL_BSP_*``) and an
OTLP exporter speaking ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: ``grpc`` or ``http/protobuf`` (the
default, as the OpenTelemetry specification says). ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the resource (the caller's default name otherwise);
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` choose the sampler (``parentbased_always_on``
by default). The provider is installed as OpenTelemetry's global one, which is how the API is meant
to be used (instrumented code asks ``trace.get_tracer``; the composition root decides what it gets).

Wire format: W3C Trace Context (``traceparent``, ``tracestate``) everywhere: NATS headers
(``kubetensor.core.subjects``), gRPC metadata (``interceptors``), the HTTP request to vLLM. When tracing
is off the services keep minting ``kubetensor.core.tracecontext.TraceContext`` ids as before, so the
context still flows (vLLM, logs) without an SDK; when on, those ids are the spans' ids
(``current_trace``).

Attribute names: OpenTelemetry semantic conventions where they exist (``rpc.*``, ``messaging.*``,
``gen_ai.*``, ``server.*``), ``kubetensor.*`` otherwise (the constants below).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kubetensor.core.tracecontext import TraceContext

_log = logging.getLogger(__name__)

INSTRUMENTATION = "kubetensor"
"""Instrumentation scope name of every kubetensor span."""

NETUID = "kubetensor.netuid"
UID = "kubetensor.uid"
HOTKEY = "kubetensor.hotkey"
EPOCH = "kubetensor.epoch"
BLOCK = "kubetensor.block"
ROUND = "kubetensor.round"
TASK_ID = "kubetensor.task.id"
OUTCOME = "kubetensor.task.outcome"
SCORE = "kubetensor.score"

_PROPAGATOR = TraceContextTextMapPropagator()
# Mirrors OpenTelemetry's own process-wide provider (set once, by configure): asking the API
# (trace.get_tracer_provider) reads os.environ on every call, a microsecond the off path should not pay.
_installed = False
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
_SAMPLERS = {
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
}

Attributes = Mapping[str, str | bool | int | float]


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` variable holds a value this process cannot use (names the variable)."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass
class Tracing:
    """The process's tracing: a configured SDK provider, or nothing (``enabled`` False)."""

    provider: Any = None
    """The SDK ``TracerProvider`` when tracing is on."""
    exporter: Any = None
    """The OTLP span exporter when tracing is on (tests look at its type)."""

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporter thread (no-op when off)."""
        if self.provider is not None:
            self.provider.shutdown()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def traces_endpoint(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(protocol, traces endpoint URL) the env asks for, or None when tracing is off."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in ("grpc", "http/protobuf"):
        raise TelemetryConfigError(
            "OTEL_EXPORTER_OTLP_PROTOCOL", f"expected 'grpc' or 'http/protobuf', got {protocol!r}"
        )
    specific = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    if specific:
        return protocol, specific
    base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    if not base:
        return None
    # The signal-less endpoint is a base URL: over HTTP the traces path is appended (OTLP exporter spec).
    return protocol, base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"


def _sampler(env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.trace import sampling

    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise TelemetryConfigError(
            "OTEL_TRACES_SAMPLER", f"expected one of {sorted(_SAMPLERS)}, got {name!r}"
        )
    ratio = 1.0
    if name.endswith("traceidratio"):
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            raise TelemetryConfigError(
                "OTEL_TRACES_SAMPLER_ARG", f"expected a ratio in 0..1, got {raw!r}"
            ) from None
        if not 0.0 <= ratio <= 1.0:
            raise TelemetryConfigError("OTEL_TRACES_SAMPLER_ARG", f"expected a ratio in 0..1, got {ratio}")
    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[name.removeprefix("parentbased_")]
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _resource(service_name: str, env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    if env.get("OTEL_SERVICE_NAME", "").strip():
        attributes[SERVICE_NAME] = env["OTEL_SERVICE_NAME"].strip()
    return Resource.create(attributes)


def configure(
    service_name: str, *, env: Mapping[str, str] | None = None, install: bool = True, exporter: Any = None
) -> Tracing:
    """Tracing for this process from ``env`` (``os.environ`` by default); see the module doc.

    ``install=False`` leaves OpenTelemetry's global provider alone (tests); ``exporter`` replaces the
    OTLP exporter (the bench's dropping exporter), and turns tracing on without an endpoint.
    """
    env = os.environ if env is None else env
    target = traces_endpoint(env)
    if target is None and exporter is None:
        return Tracing()
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        assert target is not None
        protocol, endpoint = target
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            exporter = GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            exporter = HttpExporter(endpoint=endpoint)
        _log.info("tracing on: OTLP %s to %s", protocol, endpoint)
    provider = TracerProvider(resource=_resource(service_name, env), sampler=_sampler(env))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if install:
        global _installed
        trace.set_tracer_provider(provider)
        _installed = True
    return Tracing(provider=provider, exporter=exporter)


def enabled() -> bool:
    """True when this process installed a tracer provider (``configure`` found an endpoint)."""
    return _installed


def tracer() -> trace.Tracer:
    """kubetensor's tracer from the installed provider (a no-op tracer when tracing is off)."""
    return trace.get_tracer(INSTRUMENTATION)


# -- the W3C context -------------------------------------------------------------------------------------


def _span_context(parent: TraceContext) -> SpanContext:
    return SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parent.flags),
    )


def remote_context(parent: TraceContext | None) -> otel_context.Context | None:
    """An OpenTelemetry context whose current span is the remote ``parent`` (None stays None)."""
    if parent is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(_span_context(parent)))


def remote_context_of(span_context: SpanContext) -> otel_context.Context:
    """A context whose current span is ``span_context`` (a span that ended, or one from elsewhere)."""
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def trace_of(span_context: SpanContext) -> TraceContext | None:
    """``span_context`` as a ``TraceContext`` (None when it is invalid)."""
    if not span_context.is_valid:
        return None
    return TraceContext(
        trace.format_trace_id(span_context.trace_id),
        trace.format_span_id(span_context.span_id),
        int(span_context.trace_flags),
    )


def context_of(span: Span) -> otel_context.Context:
    """A context whose current span is ``span`` (for ``inject`` without making it current)."""
    return trace.set_span_in_context(span)


def current_span_context() -> SpanContext | None:
    """The current span's context when it is a real one (None when tracing is off)."""
    span_context = trace.get_current_span().get_span_context()
    return span_context if span_context.is_valid else None


def current_trace() -> TraceContext | None:
    """The current span as a ``TraceContext`` (None when there is none, as when tracing is off)."""
    return trace_of(trace.get_current_span().get_span_context())


def inject(carrier: MutableMapping[str, str], *, context: otel_context.Context | None = None) -> None:
    """Write the current (or ``context``'s) span into ``carrier`` as ``traceparent``/``tracestate``."""
    _PROPAGATOR.inject(carrier, context=context)


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The remote context a ``traceparent`` in ``carrier`` names (None when absent or invalid)."""
    if not carrier:
        return None
    lowered = {key.lower(): value for key, value in carrier.items()}
    if "traceparent" not in lowered:
        return None
    ctx = _PROPAGATOR.extract(lowered)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def link(span_context: SpanContext, attributes: Attributes | None = None) -> Link:
    """A span link to ``span_context``."""
    return Link(span_context, attributes=dict(attributes) if attributes else None)


# -- spans ------------------------------------------------------------------------------------------------


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    parent: TraceContext | otel_context.Context | None = None,
    links: Sequence[Link] = (),
) -> contextlib.AbstractContextManager[Span | None]:
    """Open ``name`` as the current span (a child of ``parent`` when given, else of the current span).

    Yields the span, or None when tracing is off (then this costs one call and nothing is recorded).
    An exception leaving the block is recorded on the span and sets its status to ERROR.
    """
    if not enabled():
        return _OFF
    ctx = remote_context(parent) if isinstance(parent, TraceContext) else parent
    return tracer().start_as_current_span(
        name, context=ctx, kind=kind, attributes=attributes, links=links or None
    )


@contextlib.contextmanager
def detached(ctx: otel_context.Context | None) -> Iterator[None]:
    """Run the block with ``ctx`` as the current context (nothing when ``ctx`` is None)."""
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
