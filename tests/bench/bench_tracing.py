"""Benchmark of tracing's cost on the miner's path: the same task with spans off and on, same run.

Run by hand or by ``make bench`` as ``python tests/bench/bench_tracing.py --out results.json``; imported
by ``tests/bench/test_bench_tracing_smoke.py``, which runs it tiny and checks the JSON shape.

One real nats-server and one miner child process per mode (this file with ``--serve MODE``), each a
real ``MinerService`` + ``TaskSubscriber`` (signature check, permit cache, replay guard, signed answer)
and the real ``CompletionsClient`` on an in-process echo engine (an httpx mock transport streaming the
right answer as server-sent events: no vLLM, the engine is not what is measured), each on its own
hotkey, all running at once:

* ``off``: no ``OTEL_*`` endpoint: ``telemetry.configure`` installs nothing (the production default);
* ``on_drop``: the SDK with a ``BatchSpanProcessor`` into an exporter that drops every batch: the
  cost of making the spans (consumer, generation, the engine call with its ``traceparent``) and
  queueing them;
* ``on_otlp``: the SDK exporting OTLP over gRPC to a real Jaeger v2 (when the pinned binary is
  built; otherwise the JSON says it was not run).

The parent (a validator's ``MinerTaskClient``, tracing off, sending a ``traceparent`` as validators do)
sends ``--requests`` tasks one at a time to each mode in turn, rotating the order so no mode always
goes first, and times each request/reply. Each child also reports the CPU time its process spent per
task (the exporter thread included). The JSON holds p50/p99/mean per mode in milliseconds, the ratios
and differences to ``off``, and the CPU microseconds per task. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pathlib
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import httpx

try:
    from tests.bench import support
except ModuleNotFoundError:  # run as a script: this folder is on sys.path (support finds kubetensor)
    import support

from kubetensor.core import bus, telemetry
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.completions import CompletionsClient
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.service import MinerService
from kubetensor.miner.subscriber import TaskSubscriber
from kubetensor.models import task
from kubetensor.validator.rounds import Outcome, OutgoingTask
from kubetensor.validator.taskclient import MinerTaskClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

NETUID = support.NETUID
VALIDATOR = Keypair(b"\x02" * 32)
MODES = ("off", "on_drop", "on_otlp")


def miner_key(mode: str) -> Keypair:
    return Keypair((MODES.index(mode) + 2000).to_bytes(4, "big") * 8)


def metagraph() -> MetagraphView:
    return support.metagraph(validator=VALIDATOR.hotkey, miners=(miner_key(mode).hotkey for mode in MODES))


def echo_engine() -> CompletionsClient:
    """The miner's real engine client on an in-process OpenAI-compatible echo: the right answer to an
    addition prompt at once, streamed as server-sent events (no vLLM, no socket)."""

    def answer(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["prompt"]
        left, _, right = prompt.removesuffix("=").partition("+")
        text = task.Problem(int(left), int(right)).answer
        events = [
            {"choices": [{"text": text, "finish_reason": None}]},
            {"choices": [{"text": "", "finish_reason": "stop"}]},
            {"choices": [], "usage": {"completion_tokens": 4}},
        ]
        body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    return CompletionsClient(
        base_url="http://echo.invalid", model="echo", transport=httpx.MockTransport(answer)
    )


class DroppingExporter(SpanExporter):
    """Accepts every batch and keeps nothing (counts the spans, so the run can show they were made)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


# -- the miner process ----------------------------------------------------------------------------------


async def serve(mode: str, *, nats_url: str, otlp: str) -> None:
    """One traced (or not) miner until stdin closes; prints "ready", then its CPU seconds per line read."""
    if mode == "on_drop":
        tracing = telemetry.configure("bench-miner", env={}, exporter=DroppingExporter())
    elif mode == "on_otlp":
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        tracing = telemetry.configure("bench-miner", env=env)
    else:
        tracing = telemetry.configure("bench-miner", env={})
    assert tracing.enabled == (mode != "off")
    nc = await bus.connect(nats_url, name=f"bench-tracing-{mode}")
    view = metagraph()

    async def fetch() -> MetagraphView:
        return view

    permits = PermitCache(fetch, netuid=NETUID, refresh_seconds=3600)
    await permits.refresh()
    service = MinerService(
        keypair=miner_key(mode), netuid=NETUID, engine=echo_engine(), permits=permits, max_concurrency=8
    )
    subscriber = TaskSubscriber(nc, service)
    await subscriber.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(f"{time.process_time():.6f}", flush=True)
    await subscriber.stop(grace=1)
    await nc.close()
    tracing.shutdown()


class Miner(support.Child):
    """The miner child process of one mode."""

    def __init__(self, mode: str, *, nats_url: str, otlp: str) -> None:
        self.mode = mode
        super().__init__(
            __file__,
            ["--serve", mode, "--nats", nats_url, "--otlp", otlp],
            what=f"{mode} miner",
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )

    def cpu_seconds(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("cpu\n")
        self.process.stdin.flush()
        return float(self.line())


# -- the requester ----------------------------------------------------------------------------------


async def measure(
    modes: list[str], *, nats_url: str, otlp: str, requests: int, warmup: int
) -> dict[str, Any]:
    miners = {mode: Miner(mode, nats_url=nats_url, otlp=otlp) for mode in modes}
    nc = await bus.connect(nats_url, name="bench-tracing-validator")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, float] = {}
    failures: list[str] = []
    try:
        sender = MinerTaskClient(nc, keypair=VALIDATOR)
        nonces = itertools.count(time.time_ns())

        async def one(mode: str) -> float:
            nonce = next(nonces)
            outgoing = OutgoingTask(
                task_id=f"t{nonce}",
                netuid=NETUID,
                task_type="addition",
                prompt="47+85=",
                max_tokens=6,
                miner_hotkey=miner_key(mode).hotkey,
                nonce=nonce,
                deadline_unix_ms=time.time_ns() // 1_000_000 + 5_000,
            )
            started = time.perf_counter()
            [sealed] = sender.seal([outgoing])
            reply = await sender.send(sealed, timeout_s=5.0, trace=TraceContext.start())
            elapsed = (time.perf_counter() - started) * 1000
            if reply.outcome is not Outcome.OK:
                failures.append(f"{mode}: {reply.outcome.value} {reply.detail}")
            return elapsed

        for _ in range(warmup):
            for mode in modes:
                await one(mode)
        start_cpu = {mode: miner.cpu_seconds() for mode, miner in miners.items()}
        for i in range(requests):
            # Rotate which mode goes first, so none always follows the same neighbour.
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
                times[mode].append(await one(mode))
        for mode, miner in miners.items():
            cpu[mode] = (miner.cpu_seconds() - start_cpu[mode]) / requests * 1e6
    finally:
        await nc.close()
        for miner in miners.values():
            miner.close()
    result: dict[str, Any] = {mode: support.latency_stats(times[mode], count="requests") for mode in modes}
    result["miner_cpu_us_per_task"] = cpu
    result["non_ok_replies"] = failures[:10]
    for mode in modes:
        if mode != "off":
            result[f"{mode}_vs_off_p50"] = result[mode]["p50_ms"] / result["off"]["p50_ms"]
            result[f"{mode}_vs_off_p99"] = result[mode]["p99_ms"] / result["off"]["p99_ms"]
            result[f"{mode}_minus_off_p50_us"] = (result[mode]["p50_ms"] - result["off"]["p50_ms"]) * 1000
            result[f"{mode}_cpu_minus_off_us"] = cpu[mode] - cpu["off"]
    return result


async def run(*, requests: int, warmup: int, collector: bool) -> dict[str, Any]:
    from kubetensor.sandbox.errors import ToolNotFoundError
    from kubetensor.sandbox.jaeger import JaegerServer
    from kubetensor.sandbox.natsserver import NatsServer

    with tempfile.TemporaryDirectory(prefix="kt-bench-tracing-") as scratch:
        workdir = pathlib.Path(scratch)
        server = NatsServer(workdir / "nats").start()
        jaeger: JaegerServer | None = None
        otlp_status = "measured"
        try:
            modes = ["off", "on_drop"]
            if collector:
                try:
                    jaeger = JaegerServer(workdir / "jaeger").start()
                    modes.append("on_otlp")
                except ToolNotFoundError as error:
                    otlp_status = f"not_run: {error}"
            else:
                otlp_status = "not_run: --no-collector"
            otlp = jaeger.otlp_grpc_endpoint if jaeger is not None else ""
            result = await measure(modes, nats_url=server.url, otlp=otlp, requests=requests, warmup=warmup)
            if jaeger is not None:
                # The spans did reach the collector (the run measured real export, not a dead end).
                await asyncio.sleep(1.5)
                result["on_otlp_traces_in_collector"] = len(jaeger.traces("bench-miner", limit=1000))
        finally:
            if jaeger is not None:
                jaeger.stop()
            server.stop()
    return {
        "benchmark": "miner_tracing_overhead",
        "machine": support.machine(),
        "modes": modes,
        "on_otlp": otlp_status,
        "result": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, help="where to write the JSON results")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per mode")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per mode first")
    parser.add_argument("--no-collector", action="store_true", help="skip the on_otlp mode (no Jaeger)")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--nats", default="", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, nats_url=args.nats, otlp=args.otlp))
        return 0
    if args.out is None:
        parser.error("--out is required")
    results = asyncio.run(run(requests=args.requests, warmup=args.warmup, collector=not args.no_collector))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    result = results["result"]
    for mode in results["modes"]:
        print(
            f"{mode:>8}: p50 {result[mode]['p50_ms']:.3f} ms  p99 {result[mode]['p99_ms']:.3f} ms  "
            f"miner CPU {result['miner_cpu_us_per_task'][mode]:.0f} us/task"
        )
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, `kill`) is handled as Ctrl-C is: asyncio.run cancels the main task and the
    # servers the bench started are stopped. A background job starts with SIGINT ignored; undo that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    sys.exit(main())
