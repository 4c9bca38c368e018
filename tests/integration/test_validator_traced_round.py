"""A validator round with tracing on: each task is its own ``send`` (a PRODUCER span) and its own
exchange, ``send_round``'s ``on_reply`` hears of exactly the replies their miners signed, as without
tracing, and the miners (tracing too) answer with their spans' traceparent. Real nats-server, real
miners (``MinerService`` + ``TaskSubscriber``, an echo engine) on the lean client, a raw responder that
answers garbage for a third hotkey, and a fourth hotkey nobody serves.

Runs in a child interpreter: tracing installs OpenTelemetry's process-wide provider, which the rest of
the test session must not inherit. The child prints what it saw as JSON; the assertions are here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, pathlib, sys, tempfile
import nats
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from kubetensor.core import telemetry

exporter = InMemorySpanExporter()
tracing = telemetry.configure("validator-test", env={}, exporter=exporter)

from kubetensor.core import bus, subjects
from kubetensor.core.tracecontext import TraceContext
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.validator.taskclient import MinerTaskClient
from tests.bench.support import NETUID
from tests.network_support import addition_round, keypair, running_miners

VALIDATOR = keypair(70)
MINERS = [keypair(71 + i) for i in range(4)]


async def main(server: NatsServer) -> dict:
    miners_nc = await bus.connect_lite(server.url, name="test-miners")
    validator_nc = await bus.connect_lite(server.url, name="test-validator")
    garbage_nc = await nats.connect(server.url)

    async def garbage(msg):
        await garbage_nc.publish(msg.reply, b"\xff\xff")

    try:
        subscribers = await running_miners(miners_nc, MINERS[:2], validator=VALIDATOR, registered=MINERS)
        await garbage_nc.subscribe(subjects.miner_tasks(NETUID, MINERS[2].hotkey), cb=garbage)
        await garbage_nc.flush()
        await miners_nc.flush()
        told = []
        sender = MinerTaskClient(
            validator_nc, keypair=VALIDATOR, on_unsigned=lambda o: told.append(("unsigned", o.value))
        )
        with telemetry.span("validator.round"):
            round_trace = telemetry.current_trace()
            replies = await sender.send_round(
                sender.seal(addition_round(MINERS, netuid=NETUID, nonce=1)),
                timeout_s=1,
                trace=telemetry.current_trace() or TraceContext.start(),
                on_reply=lambda index, reply: told.append((index, reply.outcome.value)),
            )
        for subscriber in subscribers:
            await subscriber.stop(grace=1)
        return {
            "outcomes": [r.outcome.value for r in replies],
            "told": told,
            "round_trace": round_trace.trace_id,
            "reply_traces": [r.trace.trace_id if r.trace else None for r in replies],
        }
    finally:
        await garbage_nc.close()
        await validator_nc.close()
        await miners_nc.close()


server = NatsServer(pathlib.Path(tempfile.mkdtemp()) / "nats").start()
try:
    seen = asyncio.run(main(server))
finally:
    server.stop()
tracing.provider.force_flush()
seen["spans"] = [[s.name, s.kind.name] for s in exporter.get_finished_spans()]
print(json.dumps(seen))
"""


def run_child() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_traced_round_tells_on_reply_only_of_signed_replies() -> None:
    seen = run_child()
    # Two miners answer; the third hotkey's only answer is garbage, the fourth has no responders: both
    # are the tasks' outcomes at the deadline, noted and counted, but never told to ``on_reply``.
    assert seen["outcomes"] == ["ok", "ok", "garbage", "no_responders"]
    told = [tuple(item) for item in seen["told"]]
    assert sorted(item for item in told if item[0] != "unsigned") == [(0, "ok"), (1, "ok")]
    assert sorted(item for item in told if item[0] == "unsigned") == [
        ("unsigned", "garbage"),
        ("unsigned", "no_responders"),
    ]
    # The miners trace (the same process): each signed answer carries its miner's span, in the round's
    # trace (a miner that does not trace answers without headers: test_network.py).
    assert seen["reply_traces"][:2] == [seen["round_trace"]] * 2
    # Tracing was on: one PRODUCER span per task, under the round.
    sends = [name for name, kind in seen["spans"] if kind == "PRODUCER"]
    assert len(sends) == 4
    assert ["validator.round", "INTERNAL"] in seen["spans"]
