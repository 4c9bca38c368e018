"""One task followed from the validator's round to the chain's settlement, in a real trace collector.

A short network of real processes (nats-server, the chain sidecar's ledger, the consensus service, two
miners on vLLM (CPU build) and one validator, ``kubetensor.devnet.network``) exports OTLP over gRPC to a
real Jaeger v2 (``jaeger`` fixture, built from the Go module proxy). Then, through Jaeger's query API:

- one trace holds the validator's round, its task request over NATS and the miner's handling of it
  (the NATS header carried the context), the miner's generation and its call to vLLM, the scores and
  the weight submission over gRPC (client and server spans: the gRPC metadata carried the context);
- an epoch span of the consensus service links to that round's weight submission, and the epoch's own
  trace holds the delivery of its settlement and the chain sidecar's settlement write.

The same network serves each service's Prometheus endpoint; a second test scrapes them twice and
checks that the figures move. The vLLM server comes from the session's ``vllm_server_factory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kubetensor.core.keys import Keypair
from kubetensor.devnet.network import Network
from kubetensor.devnet.plan import TAO, DevnetPlan, MinerPlan, ValidatorPlan
from kubetensor.sandbox.jaeger import JaegerServer
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.fixtures import VllmFactory
from tests.network_support import eventually

pytestmark = pytest.mark.slow

TEMPO_SECONDS = 8.0
WAIT = 240.0
SET_WEIGHTS = "kubetensor.v1.ConsensusService/SetWeights"
SUBMIT_SETTLEMENT = "kubetensor.v1.ChainService/SubmitSettlement"


def _plan() -> DevnetPlan:
    return DevnetPlan(
        netuid=1,
        coldkey=Keypair.generate(),
        miners=tuple(MinerPlan(name=f"miner-{n}", model="good", keypair=Keypair.generate()) for n in "ab"),
        validators=(ValidatorPlan(name="validator-a", stake_rao=600 * TAO, keypair=Keypair.generate()),),
        tempo_seconds=TEMPO_SECONDS,
        tempo_blocks=8,
    )


@pytest.fixture(scope="module")
async def traced_network(
    vllm_server_factory: VllmFactory, jaeger: JaegerServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Network]:
    plan = _plan()
    server = vllm_server_factory("good")
    engines = {miner.name: (server.base_url, server.served_name) for miner in plan.miners}
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **{f"KT_{svc}_METRICS_LISTEN": "127.0.0.1:0" for svc in ("CHAIN", "CONSENSUS", "MINER", "VALIDATOR")},
    }
    running = Network(plan, workdir=tmp_path_factory.mktemp("traced"), engines=engines, component_env=env)
    try:
        await running.start()
        yield running
    finally:
        running.stop()


# -- reading Jaeger's JSON model ------------------------------------------------------------------------


class Trace:
    """One trace from Jaeger's query API, indexed by span id."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.trace_id: str = raw["traceID"]
        self.services = {pid: process["serviceName"] for pid, process in raw["processes"].items()}
        self.spans: dict[str, dict[str, Any]] = {span["spanID"]: span for span in raw["spans"]}

    def service(self, span: dict[str, Any]) -> str:
        return self.services[span["processID"]]

    def named(self, operation: str, *, service: str | None = None) -> list[dict[str, Any]]:
        return [
            span
            for span in self.spans.values()
            if span["operationName"] == operation and (service is None or self.service(span) == service)
        ]

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        for ref in span.get("references") or []:
            if ref["refType"] == "CHILD_OF":
                return self.spans.get(ref["spanID"])
        return None

    def ancestors(self, span: dict[str, Any]) -> list[str]:
        """Operation names from the span's parent up to the root."""
        names: list[str] = []
        current = self.parent(span)
        while current is not None:
            names.append(current["operationName"])
            current = self.parent(current)
        return names


def tag(span: dict[str, Any], key: str) -> Any:
    for item in span.get("tags") or []:
        if item["key"] == key:
            return item["value"]
    return None


def links(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [ref for ref in span.get("references") or [] if ref["refType"] == "FOLLOWS_FROM"]


def _task_is_complete(round_trace: Trace) -> bool:
    """The round trace holds a task a miner generated (through vLLM) and the round's weight submission."""
    return bool(
        round_trace.named("validator.round", service="kubetensor-validator")
        and round_trace.named("text_completion addition-good", service="kubetensor-miner")
        and round_trace.named(SET_WEIGHTS, service="kubetensor-consensus")
    )


# -- the tests ------------------------------------------------------------------------------------------


async def test_one_trace_follows_a_task_from_round_to_settlement(
    traced_network: Network, jaeger: JaegerServer
) -> None:
    found: dict[str, Any] = {}

    async def an_epoch_links_to_a_complete_round() -> bool:
        traced_network.check()
        for raw in jaeger.traces("kubetensor-consensus", operation="consensus.epoch"):
            epoch_trace = Trace(raw)
            for epoch in epoch_trace.named("consensus.epoch"):
                for link in links(epoch):
                    fetched = jaeger.trace(link["traceID"])
                    if fetched is not None and _task_is_complete(Trace(fetched)):
                        found.update(epoch_trace=epoch_trace, epoch=epoch, link=link, round=Trace(fetched))
                        return True
        await asyncio.sleep(1.0)
        return False

    await eventually(an_epoch_links_to_a_complete_round, what="an epoch linked to a round", seconds=WAIT)
    round_trace: Trace = found["round"]
    epoch: dict[str, Any] = found["epoch"]
    link: dict[str, Any] = found["link"]
    netuid = traced_network.plan.netuid

    # The round is the root of its trace.
    [round_span] = round_trace.named("validator.round")
    assert round_trace.parent(round_span) is None
    assert tag(round_span, "kubetensor.netuid") == netuid
    assert tag(round_span, "kubetensor.hotkey") == traced_network.plan.validators[0].keypair.hotkey

    # The miner's vLLM call sits under its generation, under its handling of the NATS message, under
    # the validator's request: the context crossed NATS in the message headers.
    [vllm_call, *_] = round_trace.named("text_completion addition-good", service="kubetensor-miner")
    assert tag(vllm_call, "gen_ai.operation.name") == "text_completion"
    assert tag(vllm_call, "gen_ai.request.model") == "addition-good"
    assert tag(vllm_call, "gen_ai.usage.output_tokens") >= 1
    assert round_trace.ancestors(vllm_call)[:4] == [
        "miner.generate",
        "process kt.{netuid}.miner.{hotkey}.task",
        "send kt.{netuid}.miner.{hotkey}.task",
        "validator.round",
    ]
    consumer = round_trace.parent(round_trace.parent(vllm_call) or {})
    assert consumer is not None
    assert round_trace.service(consumer) == "kubetensor-miner"
    assert tag(consumer, "messaging.system") == "nats"
    assert tag(consumer, "span.kind") == "consumer"
    producer = round_trace.parent(consumer)
    assert producer is not None
    assert round_trace.service(producer) == "kubetensor-validator"
    assert tag(producer, "span.kind") == "producer"
    assert tag(producer, "messaging.destination.name") == tag(consumer, "messaging.destination.name")
    assert tag(producer, "kubetensor.task.outcome") == "ok"

    # Each miner's task was scored in the round.
    scores = round_trace.named("validator.score")
    assert scores
    assert all(round_trace.parent(s) is round_span for s in scores)
    miners = {m.keypair.hotkey for m in traced_network.plan.miners}
    assert {tag(s, "kubetensor.hotkey") for s in scores} <= miners

    # The epoch links to this round's weight submission: the consensus server span, whose parent is the
    # validator's client span (gRPC metadata carried the context) in the round.
    linked = round_trace.spans[link["spanID"]]
    assert linked["operationName"] == SET_WEIGHTS
    assert round_trace.service(linked) == "kubetensor-consensus"
    assert tag(linked, "rpc.system") == "grpc"
    assert tag(linked, "span.kind") == "server"
    assert round_trace.ancestors(linked) == [SET_WEIGHTS, "validator.round"]
    client = round_trace.parent(linked)
    assert client is not None
    assert round_trace.service(client) == "kubetensor-validator"
    assert tag(epoch, "kubetensor.netuid") == netuid
    assert tag(epoch, "kubetensor.epoch") >= 1

    # The settlement of that epoch is written in the epoch's trace, by the chain sidecar.
    epoch_trace_id = found["epoch_trace"].trace_id
    settled: list[Trace] = []

    async def settlement_written() -> bool:
        fetched = jaeger.trace(epoch_trace_id)
        trace = Trace(fetched) if fetched is not None else None
        if trace is not None and trace.named("chain.settlement.write", service="kubetensor-chain"):
            settled.append(trace)
            return True
        await asyncio.sleep(0.5)
        return False

    await eventually(settlement_written, what="the epoch's settlement write span", seconds=60)
    [write] = settled[0].named("chain.settlement.write")
    assert tag(write, "kubetensor.epoch") == tag(epoch, "kubetensor.epoch")
    assert tag(write, "kubetensor.settlement.hash") == tag(epoch, "kubetensor.settlement.hash")
    assert tag(write, "kubetensor.block") >= 1
    assert settled[0].ancestors(write) == [
        SUBMIT_SETTLEMENT,
        SUBMIT_SETTLEMENT,
        "consensus.deliver_settlement",
        "consensus.epoch",
    ]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in scraped.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


async def test_metrics_endpoints_count_tasks_scores_epochs_and_settlements(traced_network: Network) -> None:
    network = traced_network
    ports = {
        name: int(component.info["metrics_port"])
        for name, component in [
            ("chain", network.chain),
            ("consensus", network.consensus),
            *network.miners.items(),
            *network.validators.items(),
        ]
        if component is not None
    }
    assert all(port > 0 for port in ports.values()), ports
    miner_hotkeys = {name: m.keypair.hotkey for name, m in ((m.name, m) for m in network.plan.miners)}

    async def settled_once() -> bool:
        network.check()
        scraped = _scrape(ports["chain"])
        return _value(scraped, "kubetensor_chain_settlement_block", netuid="1") > 0

    await eventually(settled_once, what="a settlement on the chain's metrics", seconds=WAIT)
    before = {name: _scrape(port) for name, port in ports.items()}

    async def moved() -> bool:
        network.check()
        now = _scrape(ports["validator-a"])
        return all(
            _value(now, "kubetensor_validator_tasks_answered_total", hotkey=hotkey)
            > _value(before["validator-a"], "kubetensor_validator_tasks_answered_total", hotkey=hotkey)
            for hotkey in miner_hotkeys.values()
        ) and _value(_scrape(ports["consensus"]), "kubetensor_consensus_epoch") > _value(
            before["consensus"], "kubetensor_consensus_epoch"
        )

    await eventually(moved, what="task and epoch counters to move", seconds=WAIT)
    after = {name: _scrape(port) for name, port in ports.items()}

    validator = after["validator-a"]
    for hotkey in miner_hotkeys.values():
        sent = _value(validator, "kubetensor_validator_tasks_sent_total", hotkey=hotkey)
        answered = _value(validator, "kubetensor_validator_tasks_answered_total", hotkey=hotkey)
        failed = _value(validator, "kubetensor_validator_tasks_failed_total", hotkey=hotkey)
        timed_out = _value(validator, "kubetensor_validator_tasks_timed_out_total", hotkey=hotkey)
        assert sent == answered + failed + timed_out
        assert answered >= 1
        assert 0 <= _value(validator, "kubetensor_validator_miner_score", hotkey=hotkey) <= 1
        assert 0 < _value(validator, "kubetensor_validator_miner_moving_average", hotkey=hotkey) <= 1
    assert _value(validator, "kubetensor_validator_task_score_count") >= 2
    assert _value(validator, "kubetensor_validator_rounds_total") > _value(
        before["validator-a"], "kubetensor_validator_rounds_total"
    )

    for name in miner_hotkeys:
        miner, earlier = after[name], before[name]
        assert _value(miner, "kubetensor_miner_tasks_total", status="ok") > _value(
            earlier, "kubetensor_miner_tasks_total", status="ok"
        )
        assert _value(miner, "kubetensor_miner_generation_slots") >= 1
        assert ("kubetensor_miner_generations_in_flight", ()) in miner
        # vLLM's own queue, read from its /metrics at scrape time.
        assert ("kubetensor_miner_engine_requests_waiting", ()) in miner
        assert ("kubetensor_miner_engine_requests_running", ()) in miner

    consensus = after["consensus"]
    assert _value(consensus, "kubetensor_consensus_epoch") >= 2
    assert _value(consensus, "kubetensor_consensus_epoch_duration_seconds_count") >= 1
    assert _value(consensus, "kubetensor_consensus_weight_sets_accepted_total") >= 1
    assert _value(consensus, "kubetensor_consensus_block") >= _value(consensus, "kubetensor_consensus_epoch")

    chain = after["chain"]
    height = _value(chain, "kubetensor_chain_block_height")
    assert 0 < _value(chain, "kubetensor_chain_settlement_block", netuid="1") <= height
    assert _value(chain, "kubetensor_chain_settlement_epoch", netuid="1") >= 1
