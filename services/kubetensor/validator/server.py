"""``create_server``: the validator's gRPC server, which serves health only (for Kubernetes probes).

The validator has no API of its own: it calls out (NATS, the consensus service). Composed by
``__main__``; health is SERVING while the round loop runs and NOT_SERVING once it drains.
"""

from __future__ import annotations

import grpc

from kubetensor.core import grpcserver
from kubetensor.validator.settings import ValidatorSettings

SERVICE_NAME = "kubetensor.v1.Validator"
"""The name the validator's health status is reported under (besides the overall "")."""


def create_server(
    settings: ValidatorSettings, *, health: grpcserver.Health | None = None
) -> tuple[grpc.aio.Server, int]:
    """A server with the health service on ``settings.listen``; returns it and its port."""
    server = grpcserver.new_server()
    (health or grpcserver.Health([SERVICE_NAME])).register(server)
    port: int = server.add_insecure_port(settings.listen)
    return server, port
