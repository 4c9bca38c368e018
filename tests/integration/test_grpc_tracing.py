"""Tracing over gRPC with the consensus service behind a real grpc.aio server: the client span writes the
context into the call's metadata and the server span continues it; a refused call is an error on both
sides with its status code; an epoch span links to the weight submissions it used and the delivery of
its settlement is its child.

Runs in a child interpreter: tracing installs OpenTelemetry's process-wide provider, which the rest of
the test session must not inherit. The child records spans with the SDK's in-memory exporter and prints
them as JSON; the assertions are here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.consensus_support import VALIDATORS

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, pathlib, sys, tempfile
import grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from kubetensor.core import telemetry

exporter = InMemorySpanExporter()
tracing = telemetry.configure("consensus-test", env={}, exporter=exporter)

from kubetensor.consensus.client import ConsensusClient
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.servicer import create_server
from kubetensor.consensus.settings import ConsensusSettings
from tests.consensus_support import COLDKEY, MINERS, NETUID, TEMPO, VALIDATORS, build, eventually


async def main() -> str:
    clock = ManualClock()
    node = build(pathlib.Path(tempfile.mkdtemp()) / "state.sqlite3", clock=clock)
    server, port = create_server(ConsensusSettings(listen="127.0.0.1:0"), node.service)
    await node.service.start()
    await server.start()
    refused = ""
    try:
        async with ConsensusClient.connect(f"127.0.0.1:{port}", netuid=NETUID) as client:
            for key in (*VALIDATORS, *MINERS):
                await client.register(key, coldkey=COLDKEY, nonce=1)
            clock.advance(TEMPO)
            await eventually(lambda: len(node.store.settlements()) == 1, what="epoch 1")
            with telemetry.span("validator.round"):
                await client.set_weights(VALIDATORS[0], weights=[(2, 300), (3, 100)], nonce=5)
            try:
                await client.set_weights(VALIDATORS[0], weights=[(2, 1)], nonce=4)
            except grpc.aio.AioRpcError as error:
                refused = error.code().name
            clock.advance(TEMPO)
            await eventually(lambda: len(node.store.settlements()) == 2, what="epoch 2")
            await eventually(lambda: not node.store.undelivered(), what="delivery")
    finally:
        await server.stop(None)
        await node.service.stop()
        node.store.close()
    return refused


refused = asyncio.run(main())
tracing.provider.force_flush()
spans = [
    {
        "name": s.name,
        "kind": s.kind.name,
        "trace_id": s.context.trace_id,
        "span_id": s.context.span_id,
        "parent": s.parent.span_id if s.parent else None,
        "links": [[link.context.span_id, dict(link.attributes or {})] for link in s.links],
        "attributes": dict(s.attributes or {}),
        "status": s.status.status_code.name,
    }
    for s in exporter.get_finished_spans()
]
print(json.dumps({"refused": refused, "spans": spans}))
"""


def _run() -> tuple[str, list[dict[str, Any]]]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out["refused"], out["spans"]


def test_grpc_context_crosses_metadata_and_the_epoch_links_to_the_weights_it_used() -> None:
    refused, spans = _run()
    by_id = {span["span_id"]: span for span in spans}
    set_weights = [s for s in spans if s["name"] == "kubetensor.v1.ConsensusService/SetWeights"]
    clients = [s for s in set_weights if s["kind"] == "CLIENT"]
    servers = [s for s in set_weights if s["kind"] == "SERVER"]
    assert len(clients) == len(servers) == 2

    # The accepted call: round > client > server, one trace (the metadata carried the context).
    [round_span] = [s for s in spans if s["name"] == "validator.round"]
    accepted_client = next(s for s in clients if s["parent"] == round_span["span_id"])
    accepted_server = next(s for s in servers if s["parent"] == accepted_client["span_id"])
    assert accepted_server["trace_id"] == accepted_client["trace_id"] == round_span["trace_id"]
    for span in (accepted_client, accepted_server):
        assert span["attributes"]["rpc.system"] == "grpc"
        assert span["attributes"]["rpc.service"] == "kubetensor.v1.ConsensusService"
        assert span["attributes"]["rpc.method"] == "SetWeights"
        assert span["attributes"]["rpc.grpc.status_code"] == 0
        assert span["status"] != "ERROR"
    assert accepted_client["attributes"]["server.address"] == "127.0.0.1"

    # The refused call (a stale nonce): an error on both sides, with its status code.
    assert refused == "FAILED_PRECONDITION"
    refused_client = next(s for s in clients if s is not accepted_client)
    refused_server = next(s for s in servers if s is not accepted_server)
    assert refused_server["parent"] == refused_client["span_id"]
    for span in (refused_client, refused_server):
        assert span["attributes"]["rpc.grpc.status_code"] == 9
        assert span["status"] == "ERROR"

    # Epoch 1 ran before any weights; epoch 2 links to the accepted submission (the server span).
    epochs = {s["attributes"]["kubetensor.epoch"]: s for s in spans if s["name"] == "consensus.epoch"}
    assert set(epochs) == {1, 2}
    assert epochs[1]["links"] == []
    [[linked, attributes]] = epochs[2]["links"]
    assert linked == accepted_server["span_id"]
    assert attributes == {"kubetensor.hotkey": VALIDATORS[0].hotkey}
    assert epochs[2]["trace_id"] != round_span["trace_id"]

    # Each epoch's settlement is delivered in the epoch's own trace.
    deliveries = [s for s in spans if s["name"] == "consensus.deliver_settlement"]
    assert {by_id[d["parent"]]["attributes"]["kubetensor.epoch"] for d in deliveries} == {1, 2}
    for delivery in deliveries:
        epoch = by_id[delivery["parent"]]
        assert epoch["name"] == "consensus.epoch"
        assert delivery["attributes"]["kubetensor.epoch"] == epoch["attributes"]["kubetensor.epoch"]

    # Health checks are not traced; registrations are.
    assert not [s for s in spans if s["name"].startswith("grpc.health")]
    assert len([s for s in spans if s["name"].endswith("/RegisterNeuron") and s["kind"] == "SERVER"]) == 5
