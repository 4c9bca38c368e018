"""``ChainMetrics``: the figures the chain sidecar exposes on ``/metrics`` (``KT_CHAIN_METRICS_LISTEN``).

Read at scrape time from ``ChainService`` (the block height) and updated by it as settlements are
recorded (per subnet: the last settled epoch and the block that holds it, the settlement height).
Served by ``__main__`` through ``kubetensor.core.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class ChainMetrics:
    """The ledger's figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.height = Gauge("kubetensor_chain_block_height", "Height of the ledger's head block.", registry=r)
        self.settlement_block = Gauge(
            "kubetensor_chain_settlement_block",
            "Block holding the subnet's last recorded settlement (the settlement height).",
            ["netuid"],
            registry=r,
        )
        self.settlement_epoch = Gauge(
            "kubetensor_chain_settlement_epoch",
            "Epoch of the subnet's last recorded settlement.",
            ["netuid"],
            registry=r,
        )
        self.settlements = Counter(
            "kubetensor_chain_settlements_recorded",
            "Settlements recorded (new ones, not repeats).",
            ["netuid"],
            registry=r,
        )

    def watch(self, *, height: Callable[[], int]) -> None:
        """Report ``height()`` at each scrape."""
        self.height.set_function(height)

    def settled(self, *, netuid: int, epoch: int, block: int) -> None:
        """Count a newly recorded settlement."""
        label = str(netuid)
        self.settlements.labels(label).inc()
        self.settlement_epoch.labels(label).set(epoch)
        self.settlement_block.labels(label).set(block)
