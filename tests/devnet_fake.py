"""``python -m tests.devnet_fake WORKDIR [EPOCHS]``: the devnet with FakeEngines instead of vLLM.

Used by tests/integration/test_devnet.py to run the real devnet orchestration (nats-server, chain
sidecar, consensus, miner and validator processes) in a child process it can signal, without the
cost of three vLLM servers. Exits with ``run_async``'s code. For a test that finds it hanging,
SIGUSR1 prints every asyncio task's stack and SIGUSR2 every thread's (faulthandler).
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from pathlib import Path

from kubetensor.devnet.commands import run_async
from kubetensor.devnet.plan import default_plan
from rich.console import Console

from tests.network_support import FakeEngine


def main() -> int:
    workdir = Path(sys.argv[1])
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else None
    plan = default_plan(tempo_seconds=6.0)
    engines = {
        m.name: FakeEngine(mode="answer" if m.model == "good" else "garbage").start() for m in plan.miners
    }
    faulthandler.register(signal.SIGUSR2, all_threads=True)

    async def devnet() -> int:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_tasks)
        return await run_async(
            plan=plan,
            epochs=epochs,
            summary_path=workdir / "summary.json",
            workdir=workdir,
            console=Console(width=120),
            engines={name: (engine.base_url, engine.model) for name, engine in engines.items()},
        )

    try:
        return asyncio.run(devnet())
    finally:
        for engine in engines.values():
            engine.stop()


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
