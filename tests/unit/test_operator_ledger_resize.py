"""Growing a Subnet's ledger claim: quantities compared by value (``model.quantity_value``), the
grow / same / shrink decision (``desired.ledger_resize``) and what the Subnet's status says about a size
the claim cannot take (``conditions``)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.utils.quantity import parse_quantity
from kubetensor_operator import conditions, desired, model
from kubetensor_operator.conditions import Reason, Workload
from kubetensor_operator.desired import Images, Owner

IMAGES = Images(kubetensor="registry.example/kubetensor:1", vllm="registry.example/vllm:1")
SUBNET = Owner(kind="Subnet", name="demo", namespace="ns", uid="uid-s1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def claim(size: str | int = "1Gi", **ledger: Any) -> dict[str, Any] | None:
    spec = model.SubnetSpec.parse({"netuid": 3, "ledger": {"size": size, **ledger}})
    found = [
        o
        for o in desired.subnet_objects(spec, owner=SUBNET, images=IMAGES)
        if o["kind"] == "PersistentVolumeClaim"
    ]
    return found[0] if found else None


def live(request: str = "1Gi") -> dict[str, Any]:
    """The claim as the API server returns it for a Subnet created with ``request``."""
    created = claim(request)
    assert created is not None
    stored = copy.deepcopy(created)
    stored["metadata"].update(uid="uid-pvc", resourceVersion="7")
    stored["spec"].update(volumeName="pv-1", volumeMode="Filesystem")
    stored["status"] = {"phase": "Bound", "capacity": {"storage": request}}
    return stored


@pytest.mark.parametrize(
    "text",
    ["1Gi", "1024Mi", "2G", "1.5Gi", "500M", "100m", "2e3", "1E3", ".5Ki", "+3", "7", "0.25", "3E", "1Ei"],
)
def test_quantity_value_agrees_with_the_kubernetes_client(text: str) -> None:
    assert model.quantity_value(text) == parse_quantity(text)


def test_quantity_value_orders_binary_and_decimal_suffixes_by_value() -> None:
    assert model.quantity_value("1Gi") == model.quantity_value("1024Mi") == model.quantity_value(1073741824)
    assert model.quantity_value("1G") < model.quantity_value("1Gi") < model.quantity_value("2G")
    assert model.quantity_value("1500Mi") == Decimal(1500 * 2**20)


@pytest.mark.parametrize("text", ["", "Gi", "1GB", "1 Gi", "1e1.5", "1ki", "--1", "1e99999999"])
def test_quantity_value_refuses_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        model.quantity_value(text)


def test_a_larger_size_grows_only_the_claims_storage_request() -> None:
    wanted = claim("2Gi")
    assert wanted is not None
    resize = desired.ledger_resize(wanted, live("1Gi"))
    assert resize == desired.LedgerResize(claim="demo-ledger", current="1Gi", wanted="2Gi", direction="grow")
    assert resize.patch() == {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}


def test_a_smaller_size_is_a_shrink_never_a_patch() -> None:
    wanted = claim("1G")
    assert wanted is not None
    resize = desired.ledger_resize(wanted, live("1Gi"))
    assert resize is not None
    assert (resize.direction, resize.current, resize.wanted) == ("shrink", "1Gi", "1G")


@pytest.mark.parametrize(
    ("size", "request_"), [("1Gi", "1Gi"), ("1024Mi", "1Gi"), (1073741824, "1Gi"), ("2G", "2e9")]
)
def test_the_same_size_in_other_units_changes_nothing(size: str | int, request_: str) -> None:
    wanted = claim(size)
    assert wanted is not None
    assert desired.ledger_resize(wanted, live(request_)) is None


def test_no_live_claim_yet_changes_nothing() -> None:
    wanted = claim("2Gi")
    assert wanted is not None
    assert desired.ledger_resize(wanted, None) is None


def test_a_claim_the_operator_did_not_create_is_never_resized() -> None:
    wanted = claim("2Gi")
    assert wanted is not None
    foreign = live("1Gi")
    del foreign["metadata"]["labels"][desired.LABEL_MANAGED_BY]
    assert desired.ledger_resize(wanted, foreign) is None
    foreign["metadata"]["labels"][desired.LABEL_MANAGED_BY] = "someone-else"
    assert desired.ledger_resize(wanted, foreign) is None


def test_retained_and_owned_claims_resize_alike() -> None:
    for policy in ("Retain", "Delete"):
        wanted = claim("5Gi", reclaimPolicy=policy)
        assert wanted is not None
        resize = desired.ledger_resize(wanted, live("1Gi"))
        assert resize is not None
        assert resize.direction == "grow"


def test_an_ephemeral_ledger_has_no_claim_to_resize() -> None:
    assert claim("5Gi", ephemeral=True) is None


def test_a_ledger_problem_degrades_the_subnet_but_keeps_it_ready() -> None:
    serving = Workload.from_deployment(
        {
            "metadata": {"generation": 1},
            "spec": {"replicas": 1},
            "status": {
                "observedGeneration": 1,
                "replicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "updatedReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}],
            },
        }
    )
    refused = conditions.ledger_resize_refused(
        claim="demo-ledger",
        current="1Gi",
        wanted="2Gi",
        refusal="only dynamically provisioned pvc can be resized",
    )
    verdicts = {
        v.type: v for v in conditions.subnet_verdicts(serving, consensus_problem=None, ledger_problem=refused)
    }
    assert verdicts["Ready"].status is True
    assert (verdicts["Degraded"].status, verdicts["Degraded"].reason) == (True, Reason.LEDGER_RESIZE_REFUSED)
    assert verdicts["Degraded"].message == refused.message
    fine = {v.type: v for v in conditions.subnet_verdicts(serving, consensus_problem=None)}
    assert (fine["Degraded"].status, fine["Degraded"].reason) == (False, Reason.AS_EXPECTED)


def test_ledger_messages_name_the_field_the_claim_and_the_fix() -> None:
    refused = conditions.ledger_resize_refused(
        claim="demo-ledger", current="1Gi", wanted="2Gi", refusal="storageclass does not allow expansion"
    )
    assert refused.reason is Reason.LEDGER_RESIZE_REFUSED
    for part in ("spec.ledger.size 2Gi", "demo-ledger", "from 1Gi", "storageclass does not allow expansion"):
        assert part in refused.message
    assert "allowVolumeExpansion: true" in refused.message
    shrink = conditions.ledger_shrink_refused(claim="demo-ledger", current="2Gi", wanted="1Gi")
    assert shrink.reason is Reason.LEDGER_SHRINK_REFUSED
    assert shrink.message.startswith(
        "spec.ledger.size 1Gi is smaller than PersistentVolumeClaim demo-ledger's 2Gi"
    )
    assert "cannot shrink" in shrink.message


def test_a_lasting_ledger_refusal_posts_one_warning_not_one_per_resync() -> None:
    refused = conditions.ledger_resize_refused(claim="demo-ledger", current="1Gi", wanted="2Gi", refusal="no")
    verdict = conditions.degraded(Workload(found=True, desired=1), ledger=refused)
    fine = [conditions.Verdict(conditions.DEGRADED, False, Reason.AS_EXPECTED, "nothing needs attention")]
    before = conditions.evaluate(fine, generation=1, previous=[], now=T0)
    first = conditions.evaluate([verdict], generation=2, previous=before, now=T0)
    assert [(c["reason"], warning) for c, warning in conditions.transitions(before, first)] == [
        (Reason.LEDGER_RESIZE_REFUSED, True)
    ]
    again = conditions.evaluate([verdict], generation=2, previous=first, now=T0)
    assert conditions.transitions(first, again) == []
    assert conditions.status_changed({"conditions": first}, {"conditions": again}) == {}
