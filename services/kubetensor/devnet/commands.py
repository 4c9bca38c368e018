"""``kubetensor devnet up``: the typer sub-app ``devnet_app`` and the function behind it, ``run``.

``kubetensor.cli`` mounts ``devnet_app`` (``app.add_typer(devnet_app, name="devnet")``); ``make run``
calls ``kubetensor devnet up``. ``run`` builds (or finds) the models, starts the ``Network``, shows
a table per epoch, and on the way out (``--epochs`` reached, Ctrl-C, SIGTERM, or a component that
exited) relays the last settlements to the chain sidecar, verifies its ledger, prints the summary,
writes ``--summary`` and stops every process it started. Exit code: 0 when the network ran until
told to stop and the chain verified, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import bus
from kubetensor.core.paths import cache_root
from kubetensor.core.stopping import run_until_stopped, wait_out
from kubetensor.devnet import ledger, summary
from kubetensor.devnet.errors import DevnetError, ModelBuildError
from kubetensor.devnet.monitor import EpochRecord, EpochWatcher, ScoreBoard, render
from kubetensor.devnet.network import Network
from kubetensor.devnet.plan import DevnetPlan, default_plan
from kubetensor.sandbox.errors import ProcessStartError

devnet_app = typer.Typer(
    help="The whole network on this machine: nats, consensus, chain, vLLM miners, validators.",
    no_args_is_help=True,
)

POLL_SECONDS = 0.5


def _default_workdir() -> Path:
    return cache_root() / "devnet" / time.strftime("run-%Y%m%d-%H%M%S")


@devnet_app.command("up")
def up(
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many epochs (default: run until Ctrl-C).")
    ] = None,
    tempo: Annotated[float, typer.Option(min=3.0, help="Seconds per epoch.")] = 30.0,
    summary_path: Annotated[
        Path | None, typer.Option("--summary", help="Write the per-epoch summary JSON here on exit.")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Run directory: logs, keys, state (default: a new one in the cache)."),
    ] = None,
) -> None:
    """Start the network, show a table per epoch, stop everything on Ctrl-C or after --epochs."""
    raise typer.Exit(run(epochs=epochs, tempo_seconds=tempo, summary_path=summary_path, workdir=directory))


def run(
    *,
    epochs: int | None = None,
    tempo_seconds: float = 30.0,
    summary_path: Path | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
) -> int:
    """Run a devnet (see the module doc); returns the exit code."""
    return asyncio.run(
        run_async(
            plan=default_plan(tempo_seconds=tempo_seconds),
            epochs=epochs,
            summary_path=summary_path,
            workdir=(workdir or _default_workdir()).expanduser().resolve(),
            console=console or Console(),
        )
    )


async def run_async(
    *,
    plan: DevnetPlan,
    epochs: int | None,
    summary_path: Path | None,
    workdir: Path,
    console: Console,
    engines: dict[str, tuple[str, str]] | None = None,
) -> int:
    """``run`` inside an event loop; ``engines`` lets a caller supply running OpenAI-compatible servers."""

    def say(message: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.done():
            say(f"{sig.name} received: stopping")
            stop.set_result(sig.name)
        else:
            say(f"{sig.name} received: already stopping")

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)

    say(f"devnet in {workdir} (tempo {plan.tempo_seconds:g}s, {plan.tempo_blocks} blocks per epoch)")
    network = Network(plan, workdir=workdir, engines=engines, say=say)
    records: list[EpochRecord] = []
    failure: BaseException | None = None
    verified = False

    async def start_and_watch() -> None:
        model_dirs = None
        if any(m.name not in (engines or {}) for m in plan.miners):
            model_dirs = await _model_dirs(say)
        await network.start(model_dirs=model_dirs)
        say("network up: " + ", ".join(f"{n}=uid {u}" for n, u in network.uids.items()))
        await _watch(network, plan=plan, epochs=epochs, records=records, console=console)

    try:
        try:
            await run_until_stopped(start_and_watch(), stop)
        except (DevnetError, ProcessStartError) as error:
            failure = error
            console.print(f"[red]error:[/red] {error}")
        verified = await _finish(network, plan=plan, say=say)
    finally:
        say("stopping every process")
        await asyncio.to_thread(network.stop)
        for sig in handled:
            loop.remove_signal_handler(sig)
    if records:
        console.print(render(records[-1], title=f"summary: last epoch {records[-1].epoch}"))
        console.print(_incentive_history(records))
    if summary_path is not None:
        summary.write(summary_path, records, chain_verified=verified)
        say(f"summary written to {summary_path}")
    return 1 if failure is not None or not verified else 0


async def _model_dirs(say: Callable[[str], None]) -> dict[str, Path]:
    """Each model quality's directory. Models that are not built yet are built by ``kubetensor models
    build`` in a child process whose output is shown line by line: a signal then stops the build at
    once (training in a thread of this process would hold the exit until it finished)."""
    from kubetensor.models import build

    if all(build.is_built(quality) for quality in build.QUALITIES):
        say("models: found in the cache")
    else:
        say("models: building them once for this machine (cached afterwards)")
        await _build_models(say)
    return {quality: model.path for quality, model in (await asyncio.to_thread(build.build)).items()}


async def _build_models(say: Callable[[str], None]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        "-m",
        "kubetensor.cli",
        "models",
        "build",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        async for line in process.stdout:
            say("models: " + line.decode(errors="replace").rstrip())
        code = await process.wait()
    except BaseException:
        say("models: stopping the build")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        # It was just signalled: wait for it even through further cancellations.
        with contextlib.suppress(asyncio.CancelledError):
            await wait_out([asyncio.ensure_future(process.wait())])
        raise
    if code != 0:
        raise ModelBuildError(code=code)


async def _watch(
    network: Network, *, plan: DevnetPlan, epochs: int | None, records: list[EpochRecord], console: Console
) -> None:
    nc = await bus.connect(network.nats_url, name="devnet", credentials=network.nats_credentials)
    scores = ScoreBoard()
    try:
        await scores.subscribe(nc, netuid=plan.netuid)
        async with ConsensusClient.connect(network.consensus_address, netuid=plan.netuid) as consensus:
            watcher = EpochWatcher(consensus, plan=plan, scores=scores)
            live = Live(console=console, auto_refresh=False) if console.is_terminal else None
            with live or contextlib.nullcontext():
                while epochs is None or len(records) < epochs:
                    network.check()
                    new = await watcher.poll()
                    if new is not None:
                        records.append(new)
                        console.print(render(new))
                    elif live is not None:
                        live.update(_live_status(watcher, scores), refresh=True)
                    await asyncio.sleep(POLL_SECONDS)
    finally:
        await scores.close()
        await nc.close()


def _live_status(watcher: EpochWatcher, scores: ScoreBoard) -> str:
    if not watcher.records:
        return "waiting for epoch 1 (it grants the validators their permits; rounds start after it)"
    last = watcher.records[-1]
    parts = [f"{m.name} {scores.score(m.hotkey):.3f}" for m in last.miners]
    return f"after epoch {last.epoch}: scores now " + ", ".join(parts) + f" ({scores.reports} round reports)"


async def _finish(network: Network, *, plan: DevnetPlan, say: Callable[[str], None]) -> bool:
    """Wait for the last settlements to reach the ledger, then verify both; False if impossible or bad."""
    if network.chain is None or network.consensus is None:
        say("chain verification skipped: the chain sidecar never started")
        return False
    if not (network.chain.alive() and network.consensus.alive()):
        say("chain verification skipped: the consensus service or the chain sidecar is not running")
        return False
    try:
        async with ConsensusClient.connect(network.consensus_address, netuid=plan.netuid) as consensus:
            records = await ledger.delivered(consensus, within_seconds=10.0)
            local = summary.verify_settlements(records)
            report = await ledger.verify(network.chain_address)
    except Exception as error:
        say(f"chain verification failed to run: {error}")
        return False
    undelivered = [r.settlement.epoch for r in records if not r.HasField("receipt")]
    say(f"consensus settlements: {local.summary}")
    if undelivered:
        say(f"settlements of epochs {undelivered} have not reached the ledger")
    say(f"chain verification (ledger at {network.chain_address}): {report.summary}")
    on_ledger = report.settlements == len(records)
    if not on_ledger:
        say(f"the ledger holds {report.settlements} settlements, the consensus service {len(records)}")
    return bool(local.ok and report.ok and not undelivered and on_ledger)


def _incentive_history(records: list[EpochRecord]) -> str:
    lines = ["incentive per epoch:"]
    for r in records:
        lines.append(f"  epoch {r.epoch}: " + ", ".join(f"{m.name}={m.incentive:.4f}" for m in r.miners))
    return "\n".join(lines)
