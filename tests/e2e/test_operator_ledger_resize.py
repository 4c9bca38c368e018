"""Growing a Subnet's ledger on a real control plane: a larger ``spec.ledger.size`` patches a Bound claim
whose StorageClass allows expansion (a ``LedgerResizing`` Event); the API server's refusal for a class
that does not, and a size below the claim's, show in Degraded and one Warning Event while the Subnet
stays Ready and the claim keeps its size. There is no provisioner here: each claim is pre-bound to a
PersistentVolume of its StorageClass."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubetensor.sandbox.controlplane import ControlPlane

from tests.operator_support import (
    RESYNC_SECONDS,
    OperatorHandle,
    apply,
    condition,
    get,
    kubectl,
    prebound_volume,
    subnet,
    wait_for,
)

# Starts the control plane, a consensus process and the operator.
pytestmark = pytest.mark.slow


def storage_class(name: str, *, expandable: bool) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "allowVolumeExpansion": expandable,
        "volumeBindingMode": "Immediate",
    }


@pytest.fixture
def storage(kube_cluster: ControlPlane, namespace: str) -> Iterator[dict[str, str]]:
    """StorageClasses ``expandable`` and ``fixed`` and a 1Gi volume of each, pre-bound to the claims of
    Subnets ``grow`` and ``fixed``: {"grow": class name, "fixed": class name}. Removed afterwards."""
    suffix = secrets.token_hex(3)
    classes = {"grow": f"kt-expandable-{suffix}", "fixed": f"kt-fixed-{suffix}"}
    docs = [
        storage_class(classes["grow"], expandable=True),
        storage_class(classes["fixed"], expandable=False),
        *(
            prebound_volume(f"{cls}-pv", namespace=namespace, claim=f"{name}-ledger", storage_class_name=cls)
            for name, cls in classes.items()
        ),
    ]
    created = kubectl(
        kube_cluster,
        "apply",
        "-f",
        "-",
        input_text=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
    )
    assert created.returncode == 0, created.stderr
    try:
        yield classes
    finally:
        for cls in classes.values():
            kubectl(kube_cluster, "delete", "persistentvolume", f"{cls}-pv", "--wait=false")
            kubectl(kube_cluster, "delete", "storageclass", cls, "--wait=false")


def ledger_subnet(name: str, *, storage_class_name: str, size: str = "1Gi") -> dict[str, Any]:
    return subnet(
        name, ledger={"size": size, "storageClassName": storage_class_name, "reclaimPolicy": "Delete"}
    )


def set_size(cluster: ControlPlane, namespace: str, name: str, size: str) -> None:
    patch = json.dumps({"spec": {"ledger": {"size": size}}})
    done = kubectl(cluster, "patch", "subnet", name, "-n", namespace, "--type=merge", "-p", patch)
    assert done.returncode == 0, done.stderr


def reconciled(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    """The Subnet once its status speaks for its current spec, Ready."""
    obj = get(cluster, namespace, "subnet", name)
    status = obj.get("status") or {}
    current = status.get("observedGeneration") == obj["metadata"]["generation"]
    return obj if current and condition(obj, "Ready").get("status") == "True" else None


def degraded_by(cluster: ControlPlane, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    obj = reconciled(cluster, namespace, name)
    return obj if obj and condition(obj, "Degraded").get("reason") == reason else None


def requested(cluster: ControlPlane, namespace: str, claim: str) -> str:
    return str(get(cluster, namespace, "pvc", claim)["spec"]["resources"]["requests"]["storage"])


def events(cluster: ControlPlane, namespace: str, reason: str, subnet_name: str) -> list[dict[str, Any]]:
    listed = get(cluster, namespace, "events", "--field-selector", f"reason={reason}")["items"]
    return [
        e
        for e in listed
        if e["involvedObject"]["kind"] == "Subnet" and e["involvedObject"]["name"] == subnet_name
    ]


def test_a_larger_ledger_size_grows_an_expandable_claim_and_a_refusal_or_shrink_degrades_only(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str, storage: dict[str, str]
) -> None:
    apply(
        kube_cluster,
        namespace,
        ledger_subnet("grow", storage_class_name=storage["grow"]),
        ledger_subnet("fixed", storage_class_name=storage["fixed"]),
    )
    for name in ("grow", "fixed"):
        wait_for(lambda name=name: reconciled(kube_cluster, namespace, name), what=f"Subnet {name} Ready")
        assert get(kube_cluster, namespace, "pvc", f"{name}-ledger")["status"]["phase"] == "Bound"

    # A class without allowVolumeExpansion: the API server refuses; the Subnet serves on, Degraded says why.
    set_size(kube_cluster, namespace, "fixed", "2Gi")
    obj = wait_for(
        lambda: degraded_by(kube_cluster, namespace, "fixed", "LedgerResizeRefused"),
        what="Subnet fixed Degraded LedgerResizeRefused",
    )
    refused_at = time.monotonic()
    degraded = condition(obj, "Degraded")
    assert degraded["status"] == "True"
    assert "spec.ledger.size 2Gi" in degraded["message"]
    assert "fixed-ledger" in degraded["message"]
    assert "allowVolumeExpansion: true" in degraded["message"]
    # The API server's own words are in the condition.
    assert "storageclass" in degraded["message"].lower()
    assert requested(kube_cluster, namespace, "fixed-ledger") == "1Gi"
    (warning,) = events(kube_cluster, namespace, "LedgerResizeRefused", "fixed")
    assert warning["type"] == "Warning"
    assert "fixed-ledger" in warning["message"]

    # An expandable, bound claim: its storage request follows the size, with a Normal Event.
    set_size(kube_cluster, namespace, "grow", "2Gi")
    wait_for(
        lambda: requested(kube_cluster, namespace, "grow-ledger") == "2Gi", what="grow-ledger requests 2Gi"
    )
    obj = wait_for(
        lambda: reconciled(kube_cluster, namespace, "grow"), what="Subnet grow Ready after growing"
    )
    assert (condition(obj, "Degraded")["status"], condition(obj, "Degraded")["reason"]) == (
        "False",
        "AsExpected",
    )
    (resizing,) = events(kube_cluster, namespace, "LedgerResizing", "grow")
    assert resizing["type"] == "Normal"
    assert "grow-ledger" in resizing["message"]
    assert "1Gi -> 2Gi" in resizing["message"]

    # The same size in other units is no change at all.
    set_size(kube_cluster, namespace, "grow", "2048Mi")
    obj = wait_for(
        lambda: reconciled(kube_cluster, namespace, "grow"), what="Subnet grow reconciled at 2048Mi"
    )
    assert condition(obj, "Degraded")["status"] == "False"
    assert requested(kube_cluster, namespace, "grow-ledger") == "2Gi"

    # Smaller than the claim: nothing is patched, Degraded says a claim cannot shrink.
    set_size(kube_cluster, namespace, "grow", "1Gi")
    obj = wait_for(
        lambda: degraded_by(kube_cluster, namespace, "grow", "LedgerShrinkRefused"),
        what="Subnet grow Degraded LedgerShrinkRefused",
    )
    assert condition(obj, "Degraded")["message"].startswith(
        "spec.ledger.size 1Gi is smaller than PersistentVolumeClaim grow-ledger's 2Gi; "
        "a PersistentVolumeClaim cannot shrink"
    )
    assert requested(kube_cluster, namespace, "grow-ledger") == "2Gi"
    (warning,) = events(kube_cluster, namespace, "LedgerShrinkRefused", "grow")
    assert warning["type"] == "Warning"

    # A size the claim has again clears Degraded.
    set_size(kube_cluster, namespace, "grow", "2Gi")
    wait_for(
        lambda: degraded_by(kube_cluster, namespace, "grow", "AsExpected"),
        what="Subnet grow Degraded cleared",
    )

    # Resyncs retried the refused growth meanwhile: still one Warning, the claim as it was.
    time.sleep(max(0.0, refused_at + 2.5 * RESYNC_SECONDS - time.monotonic()))
    assert degraded_by(kube_cluster, namespace, "fixed", "LedgerResizeRefused") is not None
    assert len(events(kube_cluster, namespace, "LedgerResizeRefused", "fixed")) == 1
    assert requested(kube_cluster, namespace, "fixed-ledger") == "1Gi"
