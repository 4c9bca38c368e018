"""A real Jaeger v2 on loopback, keeping traces in memory: the trace collector of the tracing tests.

Used by the ``jaeger`` fixture (``tests/harness/fixtures.py``) and anyone who wants to look at a
devnet's traces. Jaeger v2 is an OpenTelemetry Collector distribution; with no ``--config`` it runs an
all-in-one configuration on fixed ports (4317, 4318, 16686, 13133, ...), so this writes its own
configuration with free ports: OTLP over gRPC (``otlp_grpc_endpoint``) and HTTP (``otlp_http_endpoint``)
in, memory storage, the query API (``query_url``: ``/api/traces/<trace id>``,
``/api/traces?service=<name>``) and the v2 health check out. The binary comes from ``tools/build.sh``.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetensor.sandbox.processes import ManagedProcess, free_port, http_ok
from kubetensor.sandbox.tools import Tools

_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


@dataclass
class JaegerServer:
    """Jaeger v2 with memory storage writing its config and log into ``directory``."""

    directory: Path
    tools: Tools | None = None
    process: ManagedProcess | None = None
    grpc_port: int = 0
    http_port: int = 0
    query_port: int = 0

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for OTLP over gRPC."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for OTLP over HTTP (the exporter appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the query API and the UI."""
        return f"http://127.0.0.1:{self.query_port}"

    def start(self, *, timeout: float = 60.0) -> JaegerServer:
        tools = self.tools or Tools.discover()
        self.grpc_port, self.http_port, self.query_port = free_port(), free_port(), free_port()
        health = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "jaeger.yaml"
        config.write_text(
            _CONFIG.format(
                query=self.query_port,
                query_grpc=free_port(),
                health=health,
                grpc=self.grpc_port,
                http=self.http_port,
            )
        )
        self.process = ManagedProcess(
            name="jaeger",
            argv=[str(tools.path("jaeger")), "--config", str(config)],
            log_path=self.directory / "jaeger.log",
            # Jaeger is itself instrumented: never let it trace into itself (or anywhere) from the
            # OTEL_* variables the processes it collects from were given.
            env={"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "none"},
        )
        ready = f"http://127.0.0.1:{health}/status"
        self.process.start(
            probe=lambda: http_ok(ready) and http_ok(f"{self.query_url}/api/services"), timeout=timeout
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    # -- the query API --------------------------------------------------------------------------------

    def _get(self, path: str, **query: str | int) -> Any:
        url = f"{self.query_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {"data": []}
            raise

    def services(self) -> list[str]:
        """The service names Jaeger has spans of."""
        return list(self._get("/api/services").get("data") or [])

    def traces(self, service: str, *, operation: str = "", limit: int = 100) -> list[dict[str, Any]]:
        """Recent traces with a span of ``service`` (and ``operation``), in Jaeger's JSON model."""
        query: dict[str, str | int] = {"service": service, "limit": limit, "lookback": "1h"}
        if operation:
            query["operation"] = operation
        return list(self._get("/api/traces", **query).get("data") or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One whole trace by its 32-hex id (None when Jaeger has none)."""
        data = self._get(f"/api/traces/{trace_id}").get("data") or []
        return data[0] if data else None
