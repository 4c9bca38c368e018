"""A kubetensor service run as its own process, the way Kubernetes or the devnet runs it.

``ServiceProcess`` starts ``python -m <module>`` in its own process group with the service's settings in
the environment (the caller's ``KT_<SVC>_*`` variables removed, a loopback ``LISTEN`` on port 0 and a
``READY_FILE``), sends its output to a log file, and waits for the ready file the process writes once it
serves. Used by the consensus and chain crash tests and by the operator's e2e support.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


class ServiceProcess:
    """One run of ``python -m module``; ``prefix`` is its settings' prefix, e.g. ``KT_CONSENSUS_``."""

    def __init__(
        self, module: str, *, prefix: str, settings: Mapping[str, str], ready: Path, log: Path
    ) -> None:
        self.module = module
        self.ready = ready
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        env.update({f"{prefix}LISTEN": "127.0.0.1:0", f"{prefix}READY_FILE": str(ready), **settings})
        ready.unlink(missing_ok=True)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def address(self, *, started: float, seconds: float) -> str | None:
        """The address it serves on once its ready file exists; None while it starts.

        AssertionError with the log's tail when the process exited or ``seconds`` since ``started``
        (``time.monotonic()``) went by.
        """
        if self.ready.exists():
            address: str = json.loads(self.ready.read_text())["address"]
            return address
        if self.process.poll() is not None:
            raise AssertionError(f"{self.module} exited with {self.process.returncode}:\n{self.log_tail()}")
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{self.module} was not ready in {seconds:.0f}s:\n{self.log_tail()}")
        return None

    def wait_ready(self, *, seconds: float = 60.0) -> str:
        started = time.monotonic()
        while (address := self.address(started=started, seconds=seconds)) is None:
            time.sleep(0.05)
        return address

    async def wait_ready_async(self, *, seconds: float = 60.0) -> str:
        started = time.monotonic()
        while True:
            address = self.address(started=started, seconds=seconds)
            if address is not None:
                return address
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the process group and reap it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, *, seconds: float = 30.0) -> int:
        """SIGTERM (graceful stop) and its exit code; SIGKILL when it does not exit in ``seconds``."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()
