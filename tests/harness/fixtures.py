"""pytest fixtures that start real servers; slow ones are session-scoped.

- ``tools``: the pinned binaries (built by ``make tools``); a missing one fails the fixture that needs
  it with the command to run (``ToolNotFoundError``), it never skips.
- ``nats_server``: nats-server with JetStream.
- ``jaeger``: Jaeger v2 (an OpenTelemetry Collector distribution) keeping traces in memory, OTLP in on
  free ports, its query API out (``JaegerServer.trace``/``traces``).
- ``kube_cluster``: etcd + kube-apiserver (client certs, RBAC) + controller-manager + scheduler + kwok
  with fake GPU nodes (``nvidia.com/gpu`` capacity, ``nvidia.com/gpu=present:NoSchedule`` taint) and
  plain CPU nodes; ``kube_cluster.kubeconfig`` is the admin kubeconfig.
- ``small_models``: the project's models, built once per machine (cached by content hash).
- ``vllm_server``: vLLM's OpenAI-compatible server on the best model; ``vllm_server_factory(quality)``
  starts (once per session) a server for another quality.

Start-up failures raise ``ProcessStartError``, whose message names the binary and shows its log tail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubetensor.models import build
from kubetensor.sandbox.controlplane import ControlPlane
from kubetensor.sandbox.jaeger import JaegerServer
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.sandbox.tools import Tools
from kubetensor.sandbox.vllmserver import VllmServer


@pytest.fixture(scope="session")
def tools() -> Tools:
    """The pinned binaries; a fixture that needs a missing one fails with ToolNotFoundError (`make tools`)."""
    return Tools.discover()


@pytest.fixture(scope="session")
def nats_server(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"), tools=tools).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def jaeger(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    server = JaegerServer(tmp_path_factory.mktemp("jaeger"), tools=tools).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube_cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("kube"), tools=tools)
    plane.start(timeout=180)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def small_models() -> dict[str, build.BuiltModel]:
    return build.build()


VllmFactory = Callable[[str], VllmServer]


@pytest.fixture(scope="session")
def vllm_server_factory(
    small_models: dict[str, build.BuiltModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmFactory]:
    servers: dict[str, VllmServer] = {}
    logs: Path = tmp_path_factory.mktemp("vllm")

    def start(quality: str) -> VllmServer:
        if quality not in servers:
            model = small_models[quality]
            servers[quality] = VllmServer(
                model_dir=model.path, served_name=f"addition-{quality}", log_path=logs / f"{quality}.log"
            ).start()
        return servers[quality]

    try:
        yield start
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def vllm_server(vllm_server_factory: VllmFactory) -> VllmServer:
    return vllm_server_factory("good")
