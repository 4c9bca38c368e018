"""``ValidatorMetrics``: the figures a validator exposes on ``/metrics`` (``KT_VALIDATOR_METRICS_LISTEN``).

Updated by ``ValidatorService`` after each round (``observe_round``); served by ``__main__`` through
``kubetensor.core.metrics``. Per miner (labels ``uid``, ``hotkey``): tasks sent, answered, failed (any
outcome but ok and timeout, with its ``outcome``) and timed out; the last score and the moving average.
Per round: the count, the duration, and the distribution of task scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kubetensor.validator.rounds import Outcome, RoundSummary

_MINER = ["uid", "hotkey"]
_SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class ValidatorMetrics:
    """One validator's Prometheus figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tasks_sent = Counter(
            "kubetensor_validator_tasks_sent", "Tasks sent to a miner.", _MINER, registry=r
        )
        self.tasks_answered = Counter(
            "kubetensor_validator_tasks_answered",
            "Tasks a miner answered (a verified ok reply).",
            _MINER,
            registry=r,
        )
        self.tasks_failed = Counter(
            "kubetensor_validator_tasks_failed",
            "Tasks that ended in neither an answer nor a timeout, by outcome.",
            [*_MINER, "outcome"],
            registry=r,
        )
        self.tasks_timed_out = Counter(
            "kubetensor_validator_tasks_timed_out",
            "Tasks with no answer before the deadline.",
            _MINER,
            registry=r,
        )
        self.score = Gauge(
            "kubetensor_validator_miner_score", "The miner's score in the last round.", _MINER, registry=r
        )
        self.moving_average = Gauge(
            "kubetensor_validator_miner_moving_average",
            "The miner's moving-average score.",
            _MINER,
            registry=r,
        )
        self.task_scores = Histogram(
            "kubetensor_validator_task_score",
            "Scores given to tasks (0..1).",
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.rounds = Counter("kubetensor_validator_rounds", "Rounds run.", registry=r)
        self.round_seconds = Histogram(
            "kubetensor_validator_round_duration_seconds", "Wall time of a round.", registry=r
        )
        self.weights_set = Counter(
            "kubetensor_validator_weights_set", "Weight sets the consensus service accepted.", registry=r
        )
        self._series: dict[tuple[int, str], _MinerSeries] = {}

    def observe_round(self, summary: RoundSummary) -> None:
        """Count one finished round."""
        self.rounds.inc()
        self.round_seconds.observe(summary.duration_s)
        if summary.weights:
            self.weights_set.inc()
        for scored in summary.scores:
            miner = self._miner(scored.uid, scored.hotkey)
            miner.sent.inc()
            if scored.outcome is Outcome.OK:
                miner.answered.inc()
            elif scored.outcome is Outcome.TIMEOUT:
                miner.timed_out.inc()
            else:
                self.tasks_failed.labels(str(scored.uid), scored.hotkey, scored.outcome.value).inc()
            miner.score.set(scored.score)
            miner.moving_average.set(scored.moving_average)
            self.task_scores.observe(scored.score)

    def _miner(self, uid: int, hotkey: str) -> _MinerSeries:
        # A label lookup hashes and locks on every call; a round touches five series per miner, so the
        # children are looked up once per (uid, hotkey) and kept (a registry holds them anyway).
        series = self._series.get((uid, hotkey))
        if series is None:
            labels = (str(uid), hotkey)
            series = _MinerSeries(
                sent=self.tasks_sent.labels(*labels),
                answered=self.tasks_answered.labels(*labels),
                timed_out=self.tasks_timed_out.labels(*labels),
                score=self.score.labels(*labels),
                moving_average=self.moving_average.labels(*labels),
            )
            self._series[(uid, hotkey)] = series
        return series


@dataclass(frozen=True)
class _MinerSeries:
    """One miner's labelled children of the per-miner counters and gauges."""

    sent: Counter
    answered: Counter
    timed_out: Counter
    score: Gauge
    moving_average: Gauge
