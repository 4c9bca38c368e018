"""A real nats-server with JetStream on loopback, for the devnet and the tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetensor.sandbox.processes import ManagedProcess, free_port, http_ok
from kubetensor.sandbox.tools import Tools


@dataclass
class NatsServer:
    """nats-server with JetStream storing into ``directory``; ``url`` is set once started."""

    directory: Path
    tools: Tools | None = None
    process: ManagedProcess | None = None
    port: int = 0
    monitor_port: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0, port: int = 0, extra_args: Sequence[str] = ()) -> NatsServer:
        """Start on ``port`` (a free one when 0: a stopped server started again on its old port is a
        restart), with ``extra_args`` added to nats-server's command line."""
        tools = self.tools or Tools.discover()
        self.port, self.monitor_port = port or free_port(), free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            name="nats-server",
            argv=[
                str(tools.path("nats-server")),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
                "-js",
                "-sd",
                str(self.directory / "jetstream"),
                "--server_name",
                "kubetensor-local",
                *extra_args,
            ],
            log_path=self.directory / "nats-server.log",
        )
        health = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        self.process.start(probe=lambda: http_ok(health), timeout=timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
