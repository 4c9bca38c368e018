"""The Prometheus endpoint every kubetensor process can serve: ``GET /metrics`` on ``*_METRICS_LISTEN``.

Each service defines its figures in its own ``metrics.py`` (``ValidatorMetrics``, ``MinerMetrics``, ...)
on a registry of its own (a ``prometheus_client.CollectorRegistry`` made per process, never the
library's global one, so two services in one test process do not collide); each ``__main__`` serves
that registry with ``serve(settings.metrics_listen, registry)`` when the setting is not empty, and
stops it on the way out. The server is prometheus_client's own (a daemon thread), so scraping never
waits on the service's event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server; ``port`` is the bound port (useful after asking for port 0)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a ``host:port`` setting (``[::]:9090`` and ``:9090`` work too)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics listen address: expected host:port, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(listen: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve ``registry`` on ``listen`` (host:port; port 0 picks a free one) until ``stop``."""
    host, port = parse_listen(listen)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(host=host, port=int(server.server_port), _server=server, _thread=thread)
