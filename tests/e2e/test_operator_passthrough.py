"""The running operator passes its OpenTelemetry settings and per-component images (as the Helm chart
sets them) to the containers it creates: every kubetensor container of a Subnet, Miner and Validator
gets the same ``OTEL_*`` variables; vLLM gets none; the chain sidecar runs the chain image."""

from __future__ import annotations

from typing import Any

import pytest
from kubetensor.sandbox.controlplane import ControlPlane

from tests.operator_support import (
    CHAIN_IMAGE,
    CHILD_OTEL,
    OperatorHandle,
    apply,
    get,
    miner,
    subnet,
    validator,
    wait_for,
)

# Starts the control plane, a consensus process and the operator.
pytestmark = pytest.mark.slow


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_operator_passes_otel_settings_and_component_images_to_its_children(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m1"), validator("v1"))

    def deployments() -> dict[str, dict[str, Any]] | None:
        found = {
            name: get(kube_cluster, namespace, "deployment", name) for name in ("demo-consensus", "m1", "v1")
        }
        return found if all(found.values()) else None

    found = wait_for(deployments, what="the Subnet's, Miner's and Validator's Deployments")
    children = {
        name: container for deployment in found.values() for name, container in containers(deployment).items()
    }
    assert set(children) == {"consensus", "chain", "vllm", "agent", "validator"}
    for name in ("consensus", "chain", "agent", "validator"):
        assert CHILD_OTEL.items() <= env(children[name]).items(), name
    assert not [k for k in env(children["vllm"]) if k.startswith("OTEL_")]
    assert children["chain"]["image"] == CHAIN_IMAGE
    assert children["consensus"]["image"] == "registry.test/kubetensor:e2e"
