"""The process around a service's ``serve()``, shared by every ``__main__``: logging, tracing, ready file.

Each composition root (``kubetensor.<svc>.__main__``) loads its settings, then calls ``run`` with its
``serve`` coroutine function: logging is configured, tracing is set up for the service's name and shut
down (flushed) at the end, and a refusal to start (the service's own error types) is one clear log
line and an exit code rather than a traceback. Once serving, ``serve`` writes the ready file that tests
and the devnet wait for with ``write_ready_file``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kubetensor.core import telemetry

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (a name such as ``"info"``), one line a record."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def run(
    serve: Callable[[], Coroutine[Any, Any, None]],
    *,
    service_name: str,
    log: logging.Logger,
    refusals: tuple[type[BaseException], ...],
    refusal: str = "not starting",
    exit_code: int = 2,
) -> None:
    """Run ``serve()`` to its end with tracing configured as ``service_name``.

    An exception of one of ``refusals`` types is logged as ``"<refusal>: <error>"`` and becomes
    ``SystemExit(exit_code)``; tracing is shut down (spans flushed) in every case.
    """
    tracing = telemetry.configure(service_name)
    try:
        asyncio.run(serve())
    except refusals as error:
        log.error("%s: %s", refusal, error)
        raise SystemExit(exit_code) from None
    finally:
        tracing.shutdown()


def write_ready_file(path: Path, *, address: str, port: int, metrics_port: int, **identity: str) -> None:
    """Write the ready file atomically (a reader never sees half of it).

    It is the JSON object ``{"address", "port", "pid", **identity, "metrics_port"}``, where
    ``identity`` names the process's key (``hotkey=`` for neurons, ``authority=`` for the chain).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(
        json.dumps(
            {"address": address, "port": port, "pid": os.getpid(), **identity, "metrics_port": metrics_port}
        )
    )
    partial.replace(path)
