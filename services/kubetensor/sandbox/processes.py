"""Child processes with a log file, a health probe and a clean stop.

Each server runs in its own process session (so a stop reaches its children too), writes stdout and
stderr to one log file, and is considered started only once its health probe answers. A server that
exits or never gets healthy raises ProcessStartError with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetensor.sandbox.errors import ProcessStartError

Probe = Callable[[], bool]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry))
    return members


def stop_pid(pid: int, *, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # Reap it if it is our child; otherwise poll /proc.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not group_members(pid):
                return
            time.sleep(0.05)


@dataclass
class ManagedProcess:
    """One server binary run as a child process."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    def start(self, *, probe: Probe, timeout: float = 60.0) -> None:
        """Start the process and wait until ``probe()`` is true; stop it and raise if it never is."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            try:
                self.popen = subprocess.Popen(
                    list(self.argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessStartError(
                    self.name, f"could not exec {self.argv[0]}: {exc}", log_tail=""
                ) from exc
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                raise ProcessStartError(
                    self.name,
                    f"exited with code {code} before it was healthy",
                    log_tail=log_tail(self.log_path),
                )
            if _probe_ok(probe):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessStartError(
                    self.name, f"not healthy after {timeout:.0f}s", log_tail=log_tail(self.log_path)
                )
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop the process and everything in its session; safe to call twice."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            stop_pid(self.popen.pid, grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _probe_ok(probe: Probe) -> bool:
    try:
        return probe()
    except Exception:
        return False


def insecure_context() -> ssl.SSLContext:
    # Component health ports serve self-signed certificates; only /healthz is read over them.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_ok(url: str, *, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def http_json(url: str, *, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5, context=context) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data
