"""``ValidatorMetrics``: the figures a validator exposes on ``/metrics`` (``KT_VALIDATOR_METRICS_LISTEN``).

Updated by ``ValidatorService`` after each round (``observe_round``); served by ``__main__`` through
``kubetensor.core.metrics``. Per miner (labels ``uid``, ``hotkey``): tasks sent, answered, failed (any
outcome but ok and timeout, with its ``outcome``) and timed out; the last score and the moving average.
Per round: the count, the duration, and the distribution of task scores. And the replies on a task's
reply subject that its miner did not sign, by outcome (``unsigned_reply``). The per-miner figures and the
score distribution are plain numbers that collectors turn into labelled counters and gauges, and into a
histogram, when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from kubetensor.validator.rounds import Outcome, RoundSummary

_MINER = ["uid", "hotkey"]
# How prometheus_client writes a bucket's bound (untyped there).
_bound_label = cast(Callable[[float], str], floatToGoString)
_SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class _Miner:
    """One miner's figures since it was first seen (plain numbers: a round updates five per miner, and a
    labelled prometheus child takes a lock and a check on each update)."""

    __slots__ = ("answered", "created", "failed", "moving_average", "score", "sent", "timed_out")

    def __init__(self) -> None:
        self.created = time.time()
        self.sent = 0.0
        self.answered = 0.0
        self.timed_out = 0.0
        self.failed: dict[str, tuple[float, float]] = {}
        """Per outcome: the count and when its series appeared (at the first task of that outcome)."""
        self.score = 0.0
        self.moving_average = 0.0


class _MinerCollector(Collector):
    """The per-miner families, built from ``_Miner`` records at scrape time.

    Exposed exactly as labelled ``Counter``s (``_total`` and ``_created`` samples) and ``Gauge``s would be.
    Scrapes run on the metrics server's thread while the event loop updates the records: each scrape
    works on copies (a dict copy is atomic under the GIL), so it never sees a dict change size.
    """

    def __init__(self) -> None:
        self.miners: dict[tuple[int, str], _Miner] = {}

    def describe(self) -> list[Metric]:
        return self._families([])

    def collect(self) -> list[Metric]:
        return self._families(list(self.miners.copy().items()))

    @staticmethod
    def _families(miners: list[tuple[tuple[int, str], _Miner]]) -> list[Metric]:
        sent = CounterMetricFamily("kubetensor_validator_tasks_sent", "Tasks sent to a miner.", labels=_MINER)
        answered = CounterMetricFamily(
            "kubetensor_validator_tasks_answered",
            "Tasks a miner answered (a verified ok reply).",
            labels=_MINER,
        )
        failed = CounterMetricFamily(
            "kubetensor_validator_tasks_failed",
            "Tasks that ended in neither an answer nor a timeout, by outcome.",
            labels=[*_MINER, "outcome"],
        )
        timed_out = CounterMetricFamily(
            "kubetensor_validator_tasks_timed_out", "Tasks with no answer before the deadline.", labels=_MINER
        )
        score = GaugeMetricFamily(
            "kubetensor_validator_miner_score", "The miner's score in the last round.", labels=_MINER
        )
        moving_average = GaugeMetricFamily(
            "kubetensor_validator_miner_moving_average", "The miner's moving-average score.", labels=_MINER
        )
        for (uid, hotkey), miner in miners:
            labels = [str(uid), hotkey]
            sent.add_metric(labels, miner.sent, created=miner.created)
            answered.add_metric(labels, miner.answered, created=miner.created)
            timed_out.add_metric(labels, miner.timed_out, created=miner.created)
            for outcome, (count, created) in miner.failed.copy().items():
                failed.add_metric([*labels, outcome], count, created=created)
            score.add_metric(labels, miner.score)
            moving_average.add_metric(labels, miner.moving_average)
        return [sent, answered, failed, timed_out, score, moving_average]


class _ScoreHistogram(Collector):
    """``kubetensor_validator_task_score``: the distribution of task scores, counted in plain numbers (a
    round observes one score per miner, and a prometheus ``Histogram`` takes a lock per bucket and sum
    update), exposed exactly as that ``Histogram`` would be (buckets, ``_count``, ``_sum``, ``_created``)."""

    NAME = "kubetensor_validator_task_score"
    DOCUMENTATION = "Scores given to tasks (0..1)."

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = [*buckets, float("inf")]
        self._labels = [_bound_label(bound) for bound in self._bounds]
        self.counts = [0] * len(self._bounds)
        """Per bucket (not cumulative): the scores at most its bound and above the one before."""
        self.sum = 0.0
        self._created = time.time()

    def observe(self, scores: list[float]) -> None:
        """Count ``scores``."""
        counts, bounds, where = self.counts, self._bounds, bisect.bisect_left
        # Added one by one, in order, as a Histogram would (math.fsum or sum() may round differently).
        total = self.sum
        for score in scores:
            # NaN is at most no bound: a Histogram counts it in no bucket (only in the sum).
            if score == score:
                counts[where(bounds, score)] += 1
            total += score
        self.sum = total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.NAME, self.DOCUMENTATION)]

    def collect(self) -> list[Metric]:
        # Scrapes run on the metrics server's thread: read a copy (a list copy is atomic under the GIL).
        counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, []
        for label, count in zip(self._labels, counts, strict=True):
            cumulative += count
            buckets.append((label, float(cumulative)))
        family = HistogramMetricFamily(self.NAME, self.DOCUMENTATION)
        family.add_metric([], buckets, sum_value=total)
        family.samples.append(Sample(f"{self.NAME}_created", {}, self._created))
        return [family]


class ValidatorMetrics:
    """One validator's Prometheus figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._miners = _MinerCollector()
        r.register(self._miners)
        self._scores = _ScoreHistogram(_SCORE_BUCKETS)
        r.register(self._scores)
        self.rounds = Counter("kubetensor_validator_rounds", "Rounds run.", registry=r)
        self.round_seconds = Histogram(
            "kubetensor_validator_round_duration_seconds", "Wall time of a round.", registry=r
        )
        self.weights_set = Counter(
            "kubetensor_validator_weights_set", "Weight sets the consensus service accepted.", registry=r
        )
        self.unsigned_replies = Counter(
            "kubetensor_validator_unsigned_replies",
            "Replies on a task's reply subject that its miner did not sign (not a TaskResponse, another "
            "task's answer, another key, a bad signature, a no-responders status), by outcome; they do "
            "not end the task's wait, and a signed answer after them still counts. Many where miners "
            "are up: someone answers for them.",
            ["outcome"],
            registry=r,
        )

    def unsigned_reply(self, outcome: Outcome) -> None:
        """Count one reply its miner did not sign (``MinerTaskClient``'s ``on_unsigned``)."""
        self.unsigned_replies.labels(outcome.value).inc()

    def observe_round(self, summary: RoundSummary) -> None:
        """Count one finished round."""
        self.rounds.inc()
        self.round_seconds.observe(summary.duration_s)
        if summary.weights:
            self.weights_set.inc()
        miners = self._miners.miners
        scores = []
        for scored in summary.scores:
            key = (scored.uid, scored.hotkey)
            miner = miners.get(key)
            if miner is None:
                miner = miners[key] = _Miner()
            miner.sent += 1.0
            outcome = scored.outcome
            if outcome is Outcome.OK:
                miner.answered += 1.0
            elif outcome is Outcome.TIMEOUT:
                miner.timed_out += 1.0
            else:
                failed = miner.failed.get(outcome.value)
                miner.failed[outcome.value] = (
                    (1.0, time.time()) if failed is None else (failed[0] + 1.0, failed[1])
                )
            miner.score = scored.score
            miner.moving_average = scored.moving_average
            scores.append(scored.score)
        self._scores.observe(scores)
