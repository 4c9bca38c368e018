"""The bundled NATS of the chart, run for real: the pinned nats-server started with the rendered
``nats.conf`` enables JetStream, answers the probes' ``/healthz?js-enabled-only=true`` and takes a
JetStream stream; with ``nats.auth.existingSecret`` it takes only the Secret's credentials, as the
services read them from a Subnet's ``spec.natsAuth`` Secret. Only the ports and the pod's mount paths are
swapped for local ones; the container's environment comes from the rendered StatefulSet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from kubetensor.core import bus, natsauth, natslite
from kubetensor.sandbox.processes import free_port, tcp_open
from kubetensor.sandbox.tools import Tools

from tests.chart_support import one, render, render_values

pytestmark = pytest.mark.slow


async def add_stream(url: str) -> str:
    connection = await nats.connect(url)
    try:
        stream = await connection.jetstream().add_stream(name="probe", subjects=["probe.>"])
        return str(stream.config.name)
    finally:
        await connection.close()


@contextlib.contextmanager
def bundled_nats(
    objects: list[dict[str, Any]], tmp_path: Path, secret: dict[str, str]
) -> Iterator[tuple[int, int, str]]:
    """The rendered server on local ports, its environment as the pod's (``secret``: the Secret's data);
    yields the client and monitor ports and the readiness probe's path."""
    config = one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    (container,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    env = {"POD_NAME": "kubetensor-nats-0"}
    for variable in container["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference is not None:
            env[variable["name"]] = secret[reference["key"]]
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
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tcp_open(client) and tcp_open(monitor)):
            assert process.poll() is None, (tmp_path / "nats.log").read_text()
            assert time.monotonic() < deadline, "nats-server did not listen"
            time.sleep(0.05)
        yield client, monitor, container["readinessProbe"]["httpGet"]["path"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_rendered_nats_config_serves_jetstream_and_its_probe_path(tmp_path: Path) -> None:
    with bundled_nats(render(), tmp_path, {}) as (client, monitor, probe_path):
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{probe_path}", timeout=5) as response:
            assert response.status == 200
        assert asyncio.run(add_stream(f"nats://127.0.0.1:{client}")) == "probe"
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as response:
            varz = json.loads(response.read())
        assert varz["server_name"] == "kubetensor-nats-0"
        # The values' sizes (256Mi, 8Gi) are read as binary units.
        assert varz["jetstream"]["config"]["max_memory"] == 256 * 2**20
        assert varz["jetstream"]["config"]["max_storage"] == 8 * 2**30


async def exchange(url: str, credentials: natsauth.NatsCredentials | None = None) -> bytes:
    """One message through the server at ``url`` with the client the services take their tasks with."""
    client = await bus.connect_tasks(url, name="chart-auth", credentials=credentials)
    try:
        received: list[bytes] = []
        await bus.subscribe(client, "kt.auth.probe", cb=lambda msg: received.append(msg.data))
        await client.flush()
        await client.publish("kt.auth.probe", b"through")
        await client.flush()
        for _ in range(100):
            if received:
                return received[0]
            await asyncio.sleep(0.05)
        raise AssertionError("the message did not come back")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("mode", "secret"),
    [("token", {"token": "t0ken-for_the-chart"}), ("user", {"user": "kt", "password": "pass-word_42"})],
)
def test_with_an_auth_secret_the_bundled_nats_takes_only_its_credentials(
    tmp_path: Path, mode: str, secret: dict[str, str]
) -> None:
    """The Secret the chart's server reads and the one a Subnet names have one shape: the folder a
    service reads (the Secret mounted) gets through; no credentials, or wrong ones, do not. The
    credentials are not in the rendered ConfigMap."""
    objects = render_values(tmp_path, {"nats": {"auth": {"existingSecret": "nats-auth", "mode": mode}}})
    config = one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    assert all(value not in config for value in secret.values())
    mounted = tmp_path / "mounted-secret"
    mounted.mkdir()
    for key, value in secret.items():
        (mounted / key).write_text(value)
    with bundled_nats(objects, tmp_path, secret) as (client, _, _):
        url = f"nats://127.0.0.1:{client}"
        with pytest.raises(natslite.NatsServerError, match="requires authentication and none was given"):
            asyncio.run(exchange(url))
        wrong = "nats://wrong@" if mode == "token" else "nats://kt:wrong@"
        with pytest.raises(natslite.NatsServerError, match="Authorization Violation"):
            asyncio.run(exchange(f"{wrong}127.0.0.1:{client}"))
        credentials = natsauth.for_service(url, auth_dir=mounted, setting="KT_MINER_NATS_AUTH_DIR")
        assert asyncio.run(exchange(url, credentials)) == b"through"
