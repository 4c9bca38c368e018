"""``ConsensusMetrics``: the consensus service's figures on ``/metrics`` (``KT_CONSENSUS_METRICS_LISTEN``).

Updated by ``ConsensusService`` (epoch durations, accepted weight sets, delivered settlements) and read
at scrape time (the current block and the last epoch's number). Served by ``__main__`` through
``kubetensor.core.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_EPOCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConsensusMetrics:
    """One subnet's consensus figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.epoch_seconds = Histogram(
            "kubetensor_consensus_epoch_duration_seconds",
            "Wall time of an epoch (stake read, Yuma, commit).",
            buckets=_EPOCH_BUCKETS,
            registry=r,
        )
        self.epoch = Gauge("kubetensor_consensus_epoch", "Number of the last epoch run.", registry=r)
        self.block = Gauge("kubetensor_consensus_block", "The current block.", registry=r)
        self.weights_accepted = Counter(
            "kubetensor_consensus_weight_sets_accepted", "Weight sets accepted.", registry=r
        )
        self.settlements_delivered = Counter(
            "kubetensor_consensus_settlements_delivered",
            "Settlements the sink (the chain sidecar) acknowledged.",
            registry=r,
        )

    def watch(self, *, block: Callable[[], int], epoch: Callable[[], int]) -> None:
        """Report ``block()`` and ``epoch()`` at each scrape."""
        self.block.set_function(block)
        self.epoch.set_function(epoch)
