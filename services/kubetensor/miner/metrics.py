"""``MinerMetrics``: the figures a miner exposes on ``/metrics`` (``KT_MINER_METRICS_LISTEN``).

Updated by ``MinerService`` (each task's status) and read at scrape time: its generations in flight and
slots, and, when the engine is vLLM, the engine's own queue (``vllm:num_requests_waiting`` and
``vllm:num_requests_running`` from the engine's ``/metrics``, fetched with a short timeout on each
scrape; absent when the engine does not answer). Served by ``__main__`` through
``kubetensor.core.metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from kubetensor.miner.jobs import Status

_ENGINE_FIGURES = {
    "vllm:num_requests_waiting": (
        "kubetensor_miner_engine_requests_waiting",
        "Requests waiting in the engine's queue (vLLM's num_requests_waiting), as the miner sees it.",
    ),
    "vllm:num_requests_running": (
        "kubetensor_miner_engine_requests_running",
        "Requests the engine is running (vLLM's num_requests_running), as the miner sees it.",
    ),
}


class EngineQueueCollector(Collector):
    """Reads the engine's queue figures from its ``/metrics`` at each scrape."""

    def __init__(self, metrics_url: str, *, timeout_s: float = 1.0) -> None:
        self._url = metrics_url
        self._timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        try:
            response = httpx.get(self._url, timeout=self._timeout_s)
            response.raise_for_status()
        except httpx.HTTPError:
            return
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name in _ENGINE_FIGURES:
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        for source, value in totals.items():
            name, documentation = _ENGINE_FIGURES[source]
            yield GaugeMetricFamily(name, documentation, value=value)


class TaskCounter(Collector):
    """``kubetensor_miner_tasks_total`` by status, counted in plain integers and read at scrape time.

    It exposes what a labelled ``prometheus_client.Counter`` with one child per status would (the
    ``_total`` and ``_created`` samples, the same help and type), but counting a task is one integer
    addition on the event loop, without the counter's lock and checks; a scrape from the metrics
    thread reads the integers as they stand.
    """

    name = "kubetensor_miner_tasks"
    documentation = "Tasks the miner answered, by status (ok, busy, refused, expired, failed)."

    def __init__(self) -> None:
        self.counts = dict.fromkeys(Status, 0)
        self._created = time.time()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["status"])
        for status, count in self.counts.items():
            family.add_metric([status.value], count, created=self._created)
        yield family


class MinerMetrics:
    """One miner's Prometheus figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tasks = TaskCounter()
        self.registry.register(self.tasks)
        self._counts = self.tasks.counts
        self.in_flight = Gauge(
            "kubetensor_miner_generations_in_flight",
            "Generations running now (tasks and direct calls): the miner's own queue depth.",
            registry=self.registry,
        )
        self.slots = Gauge(
            "kubetensor_miner_generation_slots", "Generation slots (max concurrency).", registry=self.registry
        )

    def count(self, status: Status) -> None:
        self._counts[status] += 1

    def watch(self, *, in_flight: Callable[[], float], slots: int) -> None:
        """Report ``in_flight()`` at each scrape, and the slot count."""
        self.in_flight.set_function(in_flight)
        self.slots.set(slots)

    def watch_engine(self, metrics_url: str) -> None:
        """Also report the engine's queue, read from ``metrics_url`` at each scrape."""
        self.registry.register(EngineQueueCollector(metrics_url))
