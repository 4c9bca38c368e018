"""Helpers the network benchmarks share: the metagraph they run on, a child process, latency stats.

Imported by ``bench_network.py`` and ``bench_tracing.py`` (as ``tests.bench.support`` under pytest, as
``support`` when they run as scripts); it puts ``services/`` on ``sys.path`` when kubetensor is not
installed. Nothing here times anything itself.
"""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

try:
    import kubetensor  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "services"))

from kubetensor.core.metagraphview import MetagraphView, NeuronView

NETUID = 1


def metagraph(*, validator: str, miners: Iterable[str]) -> MetagraphView:
    """Subnet ``NETUID``'s view: uid 0 the permitted, staked ``validator`` hotkey, then one uid per miner."""

    def neuron(uid: int, hotkey: str, *, permit: bool) -> NeuronView:
        return NeuronView(
            uid=uid,
            hotkey=hotkey,
            validator_permit=permit,
            stake_rao=600 * 10**9 if permit else 0,
            incentive=0.0,
            dividends=0.0,
            validator_trust=0.0,
            emission_rao=0,
        )

    return MetagraphView(
        netuid=NETUID,
        block=1,
        epoch=1,
        neurons=(
            neuron(0, validator, permit=True),
            *(neuron(uid, hotkey, permit=False) for uid, hotkey in enumerate(miners, start=1)),
        ),
    )


def latency_stats(times: list[float], *, count: str) -> dict[str, float]:
    """p50, p99 and mean of ``times`` (milliseconds), and how many there were under the key ``count``."""
    ordered = sorted(times)
    p99_index = min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[p99_index],
        "mean_ms": statistics.fmean(ordered),
        count: len(ordered),
    }


def machine() -> dict[str, Any]:
    """What the JSON says about the machine the run was on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }


class Child:
    """A child process of the benchmark script (``script`` with ``args``), talking over stdin/stdout.

    The child prints "ready" once it serves; closing its stdin tells it to stop.
    """

    def __init__(
        self, script: str, args: list[str], *, what: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        if self.line() != "ready":
            self.close()
            raise RuntimeError(f"the {what} did not start (exit {self.process.poll()})")

    def line(self) -> str:
        """The child's next line of output, stripped."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        """Close the child's stdin and wait for it to exit (killed after 20 s)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
