"""The peer baseline for bench_network.py: the same fan-out round through Bittensor's own dendrite/axon.

Runs in a SEPARATE virtualenv with ``bittensor==10.5.0`` (it imports nothing from kubetensor);
``make bench-dendrite`` builds that environment from ``requirements/bittensor-baseline.txt``
(``tools/bittensor-venv.sh``), runs this, then bench_network.py with its JSON. By hand::

    bt=$(bash tools/bittensor-venv.sh)
    $bt tests/bench/dendrite_baseline.py --out dendrite.json
    .venv/bin/python tests/bench/bench_network.py --out results.json --dendrite dendrite.json

A child process (this file with ``--serve N``) runs N axons (each Bittensor's FastAPI/uvicorn server
with its default signature and nonce verification) whose forward function answers the addition prompt
at once, like bench_network.py's echo engine. The parent's dendrite (signed requests over HTTP, aiohttp)
sends one synapse to all N axons concurrently per round (``dendrite.forward``), with a 12 s timeout.
p50/p99 in milliseconds per size go to the JSON; no timing is asserted anywhere.
"""

# No ``from __future__ import annotations``: the axon reads the forward function's annotation as a class.
import argparse
import asyncio
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import bittensor as bt
from bittensor.utils import networking
from bittensor_wallet import Wallet

# The dendrite asks public web services for its external IP at construction (to put it in each
# request's header); this machine has no way out, and the IP changes nothing measured here.
networking.get_external_ip = lambda: "127.0.0.1"


class Addition(bt.Synapse):  # type: ignore[misc]
    prompt: str = ""
    completion: Optional[str] = None  # noqa: UP045 (pydantic model field, evaluated at runtime)

    def deserialize(self) -> Optional[str]:  # noqa: UP045
        return self.completion


def answer(prompt: str) -> str:
    left, _, right = prompt.removesuffix("=").partition("+")
    return str(int(left) + int(right))[::-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wallet(root: pathlib.Path, name: str) -> Wallet:
    w = Wallet(name=name, hotkey="default", path=str(root))
    w.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return w


def serve(count: int) -> None:
    """Start ``count`` axons, print their infos as one JSON line, serve until stdin closes."""

    async def forward(synapse: Addition) -> Addition:
        synapse.completion = answer(synapse.prompt)
        return synapse

    axons = []
    with tempfile.TemporaryDirectory(prefix="bt-axons-") as root:
        infos = []
        for i in range(count):
            w = wallet(pathlib.Path(root), f"miner{i}")
            port = free_port()
            axon = bt.Axon(wallet=w, ip="127.0.0.1", port=port, external_ip="127.0.0.1", external_port=port)
            axon.attach(forward_fn=forward)
            axon.start()
            axons.append(axon)
            infos.append(
                {"port": port, "hotkey": w.hotkey.ss58_address, "coldkey": w.coldkeypub.ss58_address}
            )
        # Wait until every axon accepts connections.
        for info in infos:
            for _ in range(200):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", info["port"])) == 0:
                        break
                time.sleep(0.05)
        print(json.dumps(infos), flush=True)
        sys.stdin.read()
        for axon in axons:
            axon.stop()


def measure(count: int, *, rounds: int, warmup: int) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        infos = json.loads(child.stdout.readline())
        times, failures = asyncio.run(fan_out(infos, rounds=rounds, warmup=warmup))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
    ordered = sorted(times)
    return {
        "miners": count,
        "dendrite": {
            "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))],
            "mean_ms": statistics.fmean(ordered),
            "rounds": len(ordered),
        },
        "failed_responses": failures,
    }


async def fan_out(infos: list[dict[str, Any]], *, rounds: int, warmup: int) -> tuple[list[float], int]:
    """Time ``rounds`` dendrite rounds to every axon (after ``warmup``); also count wrong answers."""
    axons = [
        bt.AxonInfo(
            version=1, ip="127.0.0.1", port=i["port"], ip_type=4, hotkey=i["hotkey"], coldkey=i["coldkey"]
        )
        for i in infos
    ]
    times: list[float] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="bt-validator-") as root:
        dendrite = bt.Dendrite(wallet=wallet(pathlib.Path(root), "validator"))
        for index in range(warmup + rounds):
            started = time.perf_counter()
            responses = await dendrite.forward(
                axons=axons, synapse=Addition(prompt="47+85="), timeout=12.0, deserialize=False
            )
            elapsed = (time.perf_counter() - started) * 1000
            failures += sum(1 for r in responses if r.completion != "231")
            if index >= warmup:
                times.append(elapsed)
        await dendrite.aclose_session()
    return times, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--sizes", default="16,64")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.out is None:
        parser.error("--out is required")
    cases = [measure(int(size), rounds=args.rounds, warmup=args.warmup) for size in args.sizes.split(",")]
    result = {
        "benchmark": "dendrite_fanout_round",
        "bittensor": bt.__version__,
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
        "cases": cases,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for case in cases:
        d = case["dendrite"]
        print(f"{case['miners']:>3} axons: p50 {d['p50_ms']:.1f} ms p99 {d['p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
