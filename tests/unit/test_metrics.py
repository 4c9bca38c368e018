"""The Prometheus figures of each service and the endpoint that serves them (``kubetensor.core.metrics``).

The endpoint is a real HTTP server on a free loopback port, scraped with httpx; the whole network's
endpoints are scraped end to end in ``tests/e2e/test_tracing_network.py``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from kubetensor.chain.metrics import ChainMetrics
from kubetensor.core import metrics
from kubetensor.miner.jobs import Status
from kubetensor.miner.metrics import MinerMetrics
from kubetensor.validator.metrics import ValidatorMetrics
from kubetensor.validator.rounds import Outcome, RoundSummary, ScoredTask
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scored(uid: int, outcome: Outcome, score: float) -> ScoredTask:
    return ScoredTask(
        task_id=f"t{uid}",
        uid=uid,
        hotkey=f"{uid:064x}",
        outcome=outcome,
        correctness=score,
        score=score,
        latency_s=0.1,
        moving_average=score / 2,
    )


def test_replies_their_miner_did_not_sign_are_counted_by_outcome() -> None:
    validator = ValidatorMetrics()
    for outcome in (Outcome.GARBAGE, Outcome.NO_RESPONDERS, Outcome.GARBAGE):
        validator.unsigned_reply(outcome)
    samples = _samples(_exposition(validator.registry))
    assert samples[("kubetensor_validator_unsigned_replies_total", frozenset({("outcome", "garbage")}))] == 2
    assert (
        samples[("kubetensor_validator_unsigned_replies_total", frozenset({("outcome", "no_responders")}))]
        == 1
    )


def test_the_endpoint_serves_its_registry_on_a_free_port_and_stops() -> None:
    miner = MinerMetrics()
    miner.watch(in_flight=lambda: 3, slots=8)
    endpoint = metrics.serve("127.0.0.1:0", miner.registry)
    try:
        assert endpoint.port > 0
        before = _samples(httpx.get(endpoint.url, timeout=5).text)
        miner.count(Status.OK)
        miner.count(Status.BUSY)
        after = _samples(httpx.get(endpoint.url, timeout=5).text)
    finally:
        endpoint.stop()
    ok = ("kubetensor_miner_tasks_total", frozenset({("status", "ok")}))
    busy = ("kubetensor_miner_tasks_total", frozenset({("status", "busy")}))
    assert after[ok] == before[ok] + 1
    assert after[busy] == before[busy] + 1
    assert after[("kubetensor_miner_generations_in_flight", frozenset())] == 3
    assert after[("kubetensor_miner_generation_slots", frozenset())] == 8
    with pytest.raises(httpx.TransportError):
        httpx.get(endpoint.url, timeout=2)


def test_a_miner_whose_engine_does_not_answer_still_serves_its_own_figures() -> None:
    miner = MinerMetrics()
    miner.watch_engine("http://127.0.0.1:9/metrics")  # the discard port: nothing listens
    names = {name for name, _ in _samples(_exposition(miner.registry))}
    assert "kubetensor_miner_tasks_total" in names
    assert "kubetensor_miner_engine_requests_waiting" not in names


def _exposition(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_a_round_counts_each_miners_task_by_outcome() -> None:
    validator = ValidatorMetrics()
    summary = RoundSummary(
        netuid=1,
        round=1,
        started_unix_ms=0,
        duration_s=0.5,
        scores=(
            _scored(1, Outcome.OK, 0.9),
            _scored(2, Outcome.TIMEOUT, 0.0),
            _scored(3, Outcome.BAD_SIGNATURE, 0.0),
        ),
        weights=((1, 65535),),
    )
    validator.observe_round(summary)
    validator.observe_round(summary)
    samples = _samples(_exposition(validator.registry))

    def miner(name: str, uid: int, **extra: str) -> float:
        labels = frozenset({("uid", str(uid)), ("hotkey", f"{uid:064x}"), *extra.items()})
        return samples.get((name, labels), 0.0)

    for uid in (1, 2, 3):
        assert miner("kubetensor_validator_tasks_sent_total", uid) == 2
    assert miner("kubetensor_validator_tasks_answered_total", 1) == 2
    assert miner("kubetensor_validator_tasks_timed_out_total", 2) == 2
    assert miner("kubetensor_validator_tasks_failed_total", 3, outcome="bad_signature") == 2
    assert miner("kubetensor_validator_tasks_answered_total", 2) == 0
    assert miner("kubetensor_validator_miner_score", 1) == pytest.approx(0.9)
    assert miner("kubetensor_validator_miner_moving_average", 1) == pytest.approx(0.45)
    assert samples[("kubetensor_validator_rounds_total", frozenset())] == 2
    assert samples[("kubetensor_validator_weights_set_total", frozenset())] == 2
    assert samples[("kubetensor_validator_task_score_count", frozenset())] == 6


def test_a_settlement_moves_the_chains_settlement_height() -> None:
    chain = ChainMetrics()
    chain.watch(height=lambda: 12)
    chain.settled(netuid=1, epoch=3, block=11)
    samples = _samples(_exposition(chain.registry))
    assert samples[("kubetensor_chain_block_height", frozenset())] == 12
    assert samples[("kubetensor_chain_settlement_block", frozenset({("netuid", "1")}))] == 11
    assert samples[("kubetensor_chain_settlement_epoch", frozenset({("netuid", "1")}))] == 3
    assert samples[("kubetensor_chain_settlements_recorded_total", frozenset({("netuid", "1")}))] == 1


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::]:9100", ("::", 9100)), (":0", ("0.0.0.0", 0))],
)
def test_listen_addresses_parse(listen: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9100", "host:", "host:port"])
def test_a_bad_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        metrics.parse_listen(listen)


def test_validator_per_miner_figures_expose_as_labelled_counters_and_gauges_would() -> None:
    """The per-miner figures are plain numbers behind a collector; scraped, they read exactly as the
    labelled prometheus ``Counter``s and ``Gauge``s they replace (same families, samples, values and
    ``_created`` series; only the creation timestamps differ)."""
    from prometheus_client import Counter, Gauge

    rounds = [
        (_scored(1, Outcome.OK, 0.9), _scored(2, Outcome.TIMEOUT, 0.0), _scored(4, Outcome.OK, 0.4)),
        (
            _scored(1, Outcome.GARBAGE, 0.0),
            _scored(3, Outcome.BAD_SIGNATURE, 0.0),
            _scored(4, Outcome.BUSY, 0.0),
        ),
        (_scored(1, Outcome.OK, 0.8), _scored(3, Outcome.BAD_SIGNATURE, 0.0)),
    ]
    validator = ValidatorMetrics()
    reference = CollectorRegistry()
    miner = ["uid", "hotkey"]
    sent = Counter("kubetensor_validator_tasks_sent", "", miner, registry=reference)
    answered = Counter("kubetensor_validator_tasks_answered", "", miner, registry=reference)
    failed = Counter("kubetensor_validator_tasks_failed", "", [*miner, "outcome"], registry=reference)
    timed_out = Counter("kubetensor_validator_tasks_timed_out", "", miner, registry=reference)
    score = Gauge("kubetensor_validator_miner_score", "", miner, registry=reference)
    average = Gauge("kubetensor_validator_miner_moving_average", "", miner, registry=reference)
    for scores in rounds:
        validator.observe_round(
            RoundSummary(netuid=1, round=1, started_unix_ms=0, duration_s=0.1, scores=scores)
        )
        for scored in scores:
            labels = (str(scored.uid), scored.hotkey)
            sent.labels(*labels).inc()
            answered.labels(*labels).inc(scored.outcome is Outcome.OK)
            timed_out.labels(*labels).inc(scored.outcome is Outcome.TIMEOUT)
            if scored.outcome not in (Outcome.OK, Outcome.TIMEOUT):
                failed.labels(*labels, scored.outcome.value).inc()
            score.labels(*labels).set(scored.score)
            average.labels(*labels).set(scored.moving_average)

    def per_miner(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        samples = _samples(text)
        return {
            key: 0.0 if key[0].endswith("_created") else value
            for key, value in samples.items()
            if "uid" in dict(key[1])
        }

    expected = per_miner(_exposition(reference))
    assert per_miner(_exposition(validator.registry)) == expected
    assert (
        "kubetensor_validator_tasks_failed_created",
        frozenset({("uid", "3"), ("hotkey", f"{3:064x}"), ("outcome", "bad_signature")}),
    ) in expected


def test_validator_task_scores_expose_as_a_prometheus_histogram_would() -> None:
    from prometheus_client import Histogram

    rounds = [
        (_scored(1, Outcome.OK, 0.9), _scored(2, Outcome.TIMEOUT, 0.0), _scored(4, Outcome.OK, 0.4)),
        (_scored(1, Outcome.OK, 1.0), _scored(3, Outcome.OK, 0.95), _scored(4, Outcome.OK, 0.951)),
        (
            _scored(1, Outcome.OK, 0.1),
            _scored(3, Outcome.OK, 0.35),
            _scored(4, Outcome.OK, -0.5),
            _scored(5, Outcome.OK, float("nan")),
        ),
    ]
    validator = ValidatorMetrics()
    reference = CollectorRegistry()
    documentation = "Scores given to tasks (0..1)."
    buckets = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
    histogram = Histogram(
        "kubetensor_validator_task_score", documentation, buckets=buckets, registry=reference
    )
    for scores in rounds:
        validator.observe_round(
            RoundSummary(netuid=1, round=1, started_unix_ms=0, duration_s=0.1, scores=scores)
        )
        for scored in scores:
            histogram.observe(scored.score)

    def task_scores(text: str) -> list[str]:
        # Every line of the family, the creation timestamp's value left out.
        return [
            line.rsplit(" ", 1)[0] if line.startswith("kubetensor_validator_task_score_created") else line
            for line in text.splitlines()
            if "kubetensor_validator_task_score" in line
        ]

    expected = task_scores(_exposition(reference))
    assert task_scores(_exposition(validator.registry)) == expected
    assert 'kubetensor_validator_task_score_bucket{le="0.95"} 7.0' in expected


def test_the_miners_task_counter_exposes_what_a_prometheus_counter_would() -> None:
    reference = CollectorRegistry()
    documentation = MinerMetrics().tasks.documentation
    counter = Counter("kubetensor_miner_tasks", documentation, ["status"], registry=reference)
    children = {status: counter.labels(status.value) for status in Status}
    miner = MinerMetrics()
    for status in (Status.OK, Status.OK, Status.BUSY, Status.FAILED):
        children[status].inc()
        miner.count(status)
    ours = generate_latest(miner.registry).decode()
    theirs = generate_latest(reference).decode()
    tasks = [line for line in ours.splitlines() if "kubetensor_miner_tasks" in line]
    # Equal line for line, but for the creation times.
    created = re.compile(r"(_created\{[^}]*\}) \S+$")
    assert [created.sub(r"\1", line) for line in tasks] == [
        created.sub(r"\1", line) for line in theirs.splitlines()
    ]
    assert _samples(ours)[("kubetensor_miner_tasks_total", frozenset({("status", "ok")}))] == 2
