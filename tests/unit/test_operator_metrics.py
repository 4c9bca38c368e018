"""The operator's ``/metrics`` (``kubetensor_operator.metrics``): the figures themselves, and that
``handlers.reconcile`` and ``handlers.release`` move them for each outcome (the Kubernetes API and the
consensus service are in-memory fakes; the e2e test scrapes the real operator process)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest
from kubetensor.core.metrics import serve
from kubetensor_operator import handlers, kube, metrics
from kubetensor_operator.errors import ConsensusUnavailableError, KubeApiError
from kubetensor_operator.metrics import OperatorMetrics
from kubetensor_operator.model import Deregistration, Manifest
from kubetensor_operator.settings import OperatorSettings

from tests.unit.test_operator_release import SUBNET, FakeGateway, FakeKube, member, runtime, secret

FAMILIES = {
    "kubetensor_operator_reconciles",
    "kubetensor_operator_reconcile_duration_seconds",
    "kubetensor_operator_reconcile_problems",
    "kubetensor_operator_resources",
    "kubetensor_operator_deregistrations",
    "kubetensor_operator_registrations",
    "kubetensor_operator_registration_failures",
}


def value(figures: OperatorMetrics, name: str, **labels: str) -> float:
    found = figures.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def reconciles(figures: OperatorMetrics, kind: str, outcome: str) -> float:
    return value(figures, "kubetensor_operator_reconciles_total", kind=kind, outcome=outcome)


def custom(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "generation": 1},
        "spec": spec,
    }


@dataclass
class ApplyingKube:
    """Enough of the API server for a reconcile: objects by (plural, name), applies echo back."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    fail_with: int = 0
    """Answer every read with this HTTP status (0: no failure)."""
    statuses: list[dict[str, Any]] = field(default_factory=list)

    async def get(self, resource: kube.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        if self.fail_with:
            raise KubeApiError(method="GET", path=name, status=self.fail_with, reason="x", message="down")
        return self.objects.get((resource.plural, name))

    async def create(self, manifest: Manifest) -> Manifest:
        return manifest

    async def apply(self, manifest: Manifest) -> Manifest:
        return manifest

    async def patch_status(
        self, resource: kube.Resource, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self.statuses.append(patch)

    async def post_event(self, involved: Any, *, warning: bool, reason: str, message: str) -> None:
        pass


@dataclass
class AwayGateway:
    """A consensus service that never answers."""

    async def metagraph(self, address: str, netuid: int) -> Any:
        raise ConsensusUnavailableError(address, "connection refused")


def reconciling(fake: ApplyingKube) -> handlers.Runtime:
    settings = OperatorSettings(consensus_address_override="127.0.0.1:1")
    return handlers.Runtime.create(settings, kube_client=fake, gateway=AwayGateway())  # type: ignore[arg-type]


# -- the figures ------------------------------------------------------------------------------------------


def test_every_figure_is_exposed_with_zeros_before_anything_happened() -> None:
    figures = OperatorMetrics()
    assert {family.name for family in figures.registry.collect()} == FAMILIES
    assert reconciles(figures, "Miner", "ok") == 0
    assert value(figures, "kubetensor_operator_resources", kind="Validator", ready="True") == 0
    assert value(figures, "kubetensor_operator_deregistrations_total", kind="Miner", outcome="Retrying") == 0
    assert OperatorMetrics().registry is not figures.registry


def test_the_ready_gauge_counts_each_resource_once_by_its_latest_status() -> None:
    figures = OperatorMetrics()
    figures.ready(("Miner", "a", "m1"), "False")
    figures.ready(("Miner", "a", "m1"), "True")
    figures.ready(("Miner", "b", "m1"), "True")
    figures.ready(("Miner", "b", "m2"), "Unknown")
    figures.ready(("Subnet", "a", "s"), "True")
    assert value(figures, "kubetensor_operator_resources", kind="Miner", ready="True") == 2
    assert value(figures, "kubetensor_operator_resources", kind="Miner", ready="False") == 0
    assert value(figures, "kubetensor_operator_resources", kind="Miner", ready="Unknown") == 1
    assert value(figures, "kubetensor_operator_resources", kind="Subnet", ready="True") == 1
    figures.forget(("Miner", "a", "m1"))
    figures.forget(("Miner", "a", "gone-before"))
    assert value(figures, "kubetensor_operator_resources", kind="Miner", ready="True") == 1


def test_the_endpoint_serves_the_figures_without_names_of_resources() -> None:
    figures = OperatorMetrics()
    figures.ready(("Miner", "secret-namespace", "secret-name"), "True")
    figures.reconciled("Miner", metrics.PROBLEM, seconds=0.2, reason="SubnetNotFound")
    endpoint = serve("127.0.0.1:0", figures.registry)
    try:
        with urllib.request.urlopen(endpoint.url, timeout=5) as response:
            text = response.read().decode()
    finally:
        endpoint.stop()
    assert 'kubetensor_operator_reconciles_total{kind="Miner",outcome="problem"} 1.0' in text
    assert 'kubetensor_operator_reconcile_problems_total{kind="Miner",reason="SubnetNotFound"} 1.0' in text
    assert 'kubetensor_operator_resources{kind="Miner",ready="True"} 1.0' in text
    assert 'kubetensor_operator_reconcile_duration_seconds_count{kind="Miner"} 1.0' in text
    assert "secret-name" not in text
    assert "secret-namespace" not in text


# -- reconcile --------------------------------------------------------------------------------------------


async def test_a_reconcile_that_writes_status_counts_ok_and_the_ready_status() -> None:
    fake = ApplyingKube()
    made = reconciling(fake)
    assert await handlers.reconcile(made, custom("Subnet", "demo", {"netuid": 7})) is None
    assert reconciles(made.metrics, "Subnet", "ok") == 1
    assert value(made.metrics, "kubetensor_operator_reconcile_duration_seconds_count", kind="Subnet") == 1
    # No Deployment is ready: the Subnet counts as not Ready.
    assert fake.statuses
    assert value(made.metrics, "kubetensor_operator_resources", kind="Subnet", ready="False") == 1
    made.forget(("Subnet", "ns", "demo"))
    assert value(made.metrics, "kubetensor_operator_resources", kind="Subnet", ready="False") == 0


async def test_a_reconcile_stopped_by_a_problem_counts_it_with_its_reason() -> None:
    made = reconciling(ApplyingKube())
    problem = await handlers.reconcile(
        made, custom("Miner", "m", {"subnet": "nowhere", "model": {"name": "tiny"}})
    )
    assert problem is not None
    assert reconciles(made.metrics, "Miner", "problem") == 1
    assert reconciles(made.metrics, "Miner", "ok") == 0
    reason = problem.reason.value
    assert (
        value(made.metrics, "kubetensor_operator_reconcile_problems_total", kind="Miner", reason=reason) == 1
    )


async def test_an_invalid_spec_counts_as_a_permanent_error() -> None:
    made = reconciling(ApplyingKube())
    problem = await handlers.reconcile(made, custom("Subnet", "bad", {"netuid": 0}))
    assert problem is not None
    assert problem.reason.value == "InvalidSpec"
    assert reconciles(made.metrics, "Subnet", "permanent_error") == 1
    assert value(made.metrics, "kubetensor_operator_resources", kind="Subnet", ready="False") == 1


@pytest.mark.parametrize(
    ("kind", "status", "outcome"),
    [
        ("Subnet", 503, "temporary_error"),  # applying children: kopf.TemporaryError
        ("Miner", 403, "error"),  # reading its Subnet: the API error itself
    ],
)
async def test_a_reconcile_that_raises_counts_a_temporary_or_unexpected_error(
    kind: str, status: int, outcome: str
) -> None:
    made = reconciling(ApplyingKube(fail_with=status))
    spec = {"netuid": 7} if kind == "Subnet" else {"subnet": "demo", "model": {"name": "tiny"}}
    with pytest.raises((kopf.TemporaryError, KubeApiError)):
        await handlers.reconcile(made, custom(kind, "x", spec))
    assert reconciles(made.metrics, kind, outcome) == 1
    assert sum(reconciles(made.metrics, kind, other) for other in metrics.OUTCOMES) == 1


async def test_a_registration_the_consensus_service_misses_counts_a_failure() -> None:
    hotkey_secret = {**secret(), "metadata": {"name": "m-hotkey", "namespace": "ns"}}
    fake = ApplyingKube({("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): hotkey_secret})
    made = reconciling(fake)
    spec = {"subnet": "demo", "model": {"name": "tiny"}}
    assert await handlers.reconcile(made, custom("Miner", "m", spec)) is None
    assert (
        value(
            made.metrics,
            "kubetensor_operator_registration_failures_total",
            kind="Miner",
            reason="ConsensusUnavailable",
        )
        == 1
    )
    assert value(made.metrics, "kubetensor_operator_registrations_total", kind="Miner") == 0


# -- release ----------------------------------------------------------------------------------------------


def deregistrations(made: handlers.Runtime, outcome: str, kind: str = "Miner") -> float:
    return value(made.metrics, "kubetensor_operator_deregistrations_total", kind=kind, outcome=outcome)


@pytest.mark.parametrize(
    ("answer", "objects", "outcome"),
    [
        (Deregistration(uid=3, block=9), {("subnets", "demo"): SUBNET}, "Deregistered"),
        (None, {("subnets", "demo"): SUBNET}, "NotRegistered"),
        (Deregistration(uid=3, block=9), {}, "DeregistrationSkipped"),
    ],
)
async def test_each_release_outcome_is_counted(
    answer: Deregistration | None, objects: dict[tuple[str, str], dict[str, Any]], outcome: str
) -> None:
    fake = FakeKube({**objects, ("secrets", "m-hotkey"): secret()})
    made = runtime(fake, FakeGateway(answer))
    made.metrics.ready(("Miner", "ns", "m"), "True")
    await handlers.release(made, member())
    assert deregistrations(made, outcome) == 1
    assert sum(deregistrations(made, other) for other in metrics.RELEASE_OUTCOMES) == 1
    assert value(made.metrics, "kubetensor_operator_resources", kind="Miner", ready="True") == 0


async def test_a_release_kopf_retries_counts_as_retrying() -> None:
    fake = FakeKube({("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): secret()})
    made = runtime(fake, FakeGateway(ConsensusUnavailableError("127.0.0.1:1", "refused")))
    with pytest.raises(kopf.TemporaryError):
        await handlers.release(made, member("Validator"))
    assert deregistrations(made, "Retrying", kind="Validator") == 1
    assert deregistrations(made, "Deregistered", kind="Validator") == 0
