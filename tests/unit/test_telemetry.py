"""``kubetensor.core.telemetry`` configuration from ``OTEL_*``: off unless an endpoint is set, and then
the exporter, endpoint, resource and sampler the variables ask for. The spans themselves are checked
end to end against a real Jaeger (``tests/e2e/test_tracing_network.py``); the cost of tracing is
measured by ``tests/bench/bench_tracing.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from kubetensor.core import telemetry
from kubetensor.core.tracecontext import TraceContext
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import sampling

SAMPLER = "OTEL_TRACES_SAMPLER"
ARG = "OTEL_TRACES_SAMPLER_ARG"
TRACES = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


def _threads() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"},
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
            "OTEL_TRACES_EXPORTER": "none",
        },
    ],
)
def test_tracing_is_off_without_an_endpoint_or_when_disabled(env: dict[str, str]) -> None:
    before = _threads()
    tracing = telemetry.configure("kubetensor-test", env=env)
    assert not tracing.enabled
    assert tracing.provider is None
    assert tracing.exporter is None
    assert _threads() == before
    tracing.shutdown()


def test_an_unconfigured_process_creates_no_exporter_and_spans_cost_nothing() -> None:
    # A fresh interpreter with no OTEL_* variables, as a service starts: configure() installs nothing,
    # span() hands back the shared null context and no exporter module is even imported.
    code = """
import os, sys, threading
for key in [k for k in os.environ if k.startswith("OTEL_")]:
    del os.environ[key]
from kubetensor.core import telemetry
tracing = telemetry.configure("kubetensor-miner")
with telemetry.span("x") as span:
    assert span is None
assert not tracing.enabled and not telemetry.enabled()
assert telemetry.current_trace() is None
exporters = [m for m in sys.modules if m.startswith("opentelemetry.exporter")]
sdk = [m for m in sys.modules if m.startswith("opentelemetry.sdk.trace.export")]
print(len(exporters), len(sdk), threading.active_count())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "1"]


@pytest.mark.parametrize(
    ("env", "exporter", "endpoint"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            HttpExporter,
            "http://collector:4318/v1/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            GrpcExporter,
            "http://collector:4317",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            HttpExporter,
            "http://traces:9999/custom",
        ),
    ],
)
def test_the_exporter_follows_the_protocol_and_endpoint_variables(
    env: dict[str, str], exporter: type, endpoint: str
) -> None:
    assert telemetry.traces_endpoint(env) == (
        "grpc" if exporter is GrpcExporter else "http/protobuf",
        endpoint,
    )
    tracing = telemetry.configure("kubetensor-test", env=env, install=False)
    try:
        assert tracing.enabled
        assert isinstance(tracing.exporter, exporter)
        assert not telemetry.enabled()  # install=False leaves the process's global provider alone
    finally:
        tracing.shutdown()


def test_the_resource_takes_the_service_name_and_attributes_from_the_environment() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,k8s.namespace.name=kt",
    }
    tracing = telemetry.configure("kubetensor-validator", env=env, install=False)
    named = telemetry.configure(
        "kubetensor-validator", env={**env, "OTEL_SERVICE_NAME": "v-a"}, install=False
    )
    try:
        attributes = tracing.provider.resource.attributes
        assert attributes["service.name"] == "kubetensor-validator"
        assert attributes["deployment.environment"] == "test"
        assert attributes["k8s.namespace.name"] == "kt"
        assert named.provider.resource.attributes["service.name"] == "v-a"
    finally:
        tracing.shutdown()
        named.shutdown()


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({}, "ParentBased{root:AlwaysOnSampler"),
        (
            {SAMPLER: "traceidratio", ARG: "0.25"},
            "TraceIdRatioBased{0.25}",
        ),
        (
            {SAMPLER: "parentbased_traceidratio", ARG: "0.5"},
            "TraceIdRatioBased{0.5}",
        ),
        ({SAMPLER: "always_off"}, "AlwaysOffSampler"),
    ],
)
def test_the_sampler_follows_the_sampler_variables(env: dict[str, str], description: str) -> None:
    tracing = telemetry.configure(
        "kubetensor-test", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env}, install=False
    )
    try:
        sampler: sampling.Sampler = tracing.provider.sampler
        assert description in sampler.get_description()
    finally:
        tracing.shutdown()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({SAMPLER: "sometimes"}, SAMPLER),
        (
            {SAMPLER: "traceidratio", ARG: "half"},
            ARG,
        ),
        ({SAMPLER: "traceidratio", ARG: "2"}, ARG),
    ],
)
def test_a_bad_variable_is_refused_by_name(env: dict[str, str], variable: str) -> None:
    with pytest.raises(telemetry.TelemetryConfigError) as raised:
        telemetry.configure("kubetensor-test", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})
    assert raised.value.variable == variable
    assert variable in str(raised.value)


def test_w3c_context_round_trips_between_tracecontext_and_opentelemetry() -> None:
    parent = TraceContext.start()
    carrier: dict[str, str] = {}
    telemetry.inject(carrier, context=telemetry.remote_context(parent))
    assert carrier["traceparent"] == parent.traceparent
    extracted = telemetry.extract({"TraceParent": parent.traceparent})
    assert extracted is not None
    from opentelemetry import trace

    span_context = trace.get_current_span(extracted).get_span_context()
    assert telemetry.trace_of(span_context) == parent
    assert telemetry.extract({"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}) is None
    assert telemetry.extract(None) is None
