"""``OperatorMetrics``: the operator's figures on ``/metrics`` (``KT_OPERATOR_METRICS_LISTEN``).

Updated by ``handlers``: every reconcile (by kind and outcome, and its duration), the Ready condition of
every resource whose status the operator computed (a gauge by kind and Ready status, refreshed at each
reconcile, resync and refresh), the finalizer's deregistrations by outcome, and registrations. Labels
are bounded: kinds, outcomes and condition reasons only; never a resource's name, namespace or hotkey.
Served by ``__main__`` through ``kubetensor.core.metrics`` on a registry of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

KINDS = ("Subnet", "Miner", "Validator")
NEURON_KINDS = ("Miner", "Validator")
READY_STATUSES = ("True", "False", "Unknown")

OK = "ok"
"""Children applied and status written."""
PROBLEM = "problem"
"""Stopped by a problem reported in status (missing Subnet, bad hotkey Secret, ...); retried at resync."""
TEMPORARY_ERROR = "temporary_error"
"""kopf retries soon (the API server could not be reached)."""
PERMANENT_ERROR = "permanent_error"
"""kopf gives up until the spec changes (an invalid spec)."""
ERROR = "error"
"""An unexpected exception (kopf retries it)."""
OUTCOMES = (OK, PROBLEM, TEMPORARY_ERROR, PERMANENT_ERROR, ERROR)

DEREGISTERED = "Deregistered"
NOT_REGISTERED = "NotRegistered"
DEREGISTRATION_SKIPPED = "DeregistrationSkipped"
RETRYING = "Retrying"
"""The finalizer stays and kopf retries (the consensus service or the API server is away)."""
RELEASE_OUTCOMES = (DEREGISTERED, NOT_REGISTERED, DEREGISTRATION_SKIPPED, RETRYING)

_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Key = tuple[str, str, str]
"""(kind, namespace, name) of a custom resource (kept in memory only, never a label)."""


class OperatorMetrics:
    """The operator's figures on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "kubetensor_operator_reconciles",
            "Reconciles (create, resume, spec update and resync) by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "kubetensor_operator_reconcile_duration_seconds",
            "Wall time of a reconcile, its lock wait included, by kind.",
            ["kind"],
            buckets=_RECONCILE_BUCKETS,
            registry=r,
        )
        self.problems = Counter(
            "kubetensor_operator_reconcile_problems",
            "Reconciles stopped by a problem reported in status, by kind and condition reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.resources = Gauge(
            "kubetensor_operator_resources",
            "Resources whose status the operator computed, by kind and status of their Ready condition.",
            ["kind", "ready"],
            registry=r,
        )
        self.deregistrations = Counter(
            "kubetensor_operator_deregistrations",
            "Finalizer runs of deleted Miners and Validators by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.registrations = Counter(
            "kubetensor_operator_registrations",
            "Hotkeys the operator registered (a new uid) by kind.",
            ["kind"],
            registry=r,
        )
        self.registration_failures = Counter(
            "kubetensor_operator_registration_failures",
            "Failed registration attempts by kind and reason (ConsensusUnavailable, RegistrationRefused).",
            ["kind", "reason"],
            registry=r,
        )
        self._ready: dict[Key, str] = {}
        for kind in KINDS:
            self.reconcile_seconds.labels(kind)
            for outcome in OUTCOMES:
                self.reconciles.labels(kind, outcome)
            for ready in READY_STATUSES:
                self.resources.labels(kind, ready).set(0)
        for kind in NEURON_KINDS:
            self.registrations.labels(kind)
            for outcome in RELEASE_OUTCOMES:
                self.deregistrations.labels(kind, outcome)

    def reconciled(self, kind: str, outcome: str, *, seconds: float, reason: str = "") -> None:
        """One reconcile of a ``kind`` ended with ``outcome`` (``reason``: the problem's, if any)."""
        self.reconciles.labels(kind, outcome).inc()
        self.reconcile_seconds.labels(kind).observe(seconds)
        if reason:
            self.problems.labels(kind, reason).inc()

    def ready(self, key: Key, status: str) -> None:
        """The Ready condition of ``key`` now has ``status`` (True, False or Unknown)."""
        if self._ready.get(key) == status:
            return
        self._ready[key] = status
        self._count(key[0])

    def forget(self, key: Key) -> None:
        """``key`` is gone: it no longer counts."""
        if self._ready.pop(key, None) is not None:
            self._count(key[0])

    def _count(self, kind: str) -> None:
        counts = dict.fromkeys(READY_STATUSES, 0)
        for (other, _, _), status in self._ready.items():
            if other == kind:
                counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            self.resources.labels(kind, status).set(count)

    def released(self, kind: str, outcome: str) -> None:
        """The finalizer of a deleted ``kind`` ended with ``outcome`` (a Release reason or ``RETRYING``)."""
        self.deregistrations.labels(kind, outcome).inc()

    def registered(self, kind: str) -> None:
        self.registrations.labels(kind).inc()

    def registration_failed(self, kind: str, reason: str) -> None:
        self.registration_failures.labels(kind, reason).inc()
