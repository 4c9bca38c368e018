"""The bundled NATS of the chart, run for real: the pinned nats-server started with the rendered
``nats.conf`` enables JetStream, answers the probes' ``/healthz?js-enabled-only=true`` and takes a
JetStream stream. Only the ports and the pod's mount paths are swapped for local ones."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import nats
import pytest
from kubetensor.sandbox.processes import free_port, tcp_open
from kubetensor.sandbox.tools import Tools

from tests.chart_support import one, render

pytestmark = pytest.mark.slow


async def add_stream(url: str) -> str:
    connection = await nats.connect(url)
    try:
        stream = await connection.jetstream().add_stream(name="probe", subjects=["probe.>"])
        return str(stream.config.name)
    finally:
        await connection.close()


def test_rendered_nats_config_serves_jetstream_and_its_probe_path(tmp_path: Path) -> None:
    objects = render()
    config = one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    (container,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    probe_path = container["readinessProbe"]["httpGet"]["path"]
    client, monitor = free_port(), free_port()
    local = (
        config.replace("port: 4222", f"port: {client}\nhost: 127.0.0.1")
        .replace("http_port: 8222", f"http_port: {monitor}")
        .replace("/var/run/nats", str(tmp_path))
        .replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}")
    )
    path = tmp_path / "nats.conf"
    path.write_text(local)
    log = (tmp_path / "nats.log").open("wb")
    process = subprocess.Popen(
        [str(Tools.discover().path("nats-server")), "-c", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"POD_NAME": "kubetensor-nats-0"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (tcp_open(client) and tcp_open(monitor)):
            assert process.poll() is None, (tmp_path / "nats.log").read_text()
            assert time.monotonic() < deadline, "nats-server did not listen"
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{probe_path}", timeout=5) as response:
            assert response.status == 200
        assert asyncio.run(add_stream(f"nats://127.0.0.1:{client}")) == "probe"
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as response:
            varz = json.loads(response.read())
        assert varz["server_name"] == "kubetensor-nats-0"
        # The values' sizes (256Mi, 8Gi) are read as binary units.
        assert varz["jetstream"]["config"]["max_memory"] == 256 * 2**20
        assert varz["jetstream"]["config"]["max_storage"] == 8 * 2**30
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
