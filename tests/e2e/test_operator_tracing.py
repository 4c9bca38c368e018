"""The operator's reconciles as spans in a real Jaeger v2: one ``operator.reconcile`` span per reconcile
of a Subnet and a Miner, named by kind, namespace and name, with the Miner's registration on the
consensus service (a gRPC client span) inside it. The operator runs as its service account against a
real control plane and exports OTLP over HTTP (``tests/e2e/conftest.py``; the network's tracing test
uses gRPC, so both protocols are checked against the real collector)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetensor.sandbox.controlplane import ControlPlane
from kubetensor.sandbox.jaeger import JaegerServer

from tests.operator_support import OperatorHandle, apply, miner, subnet, wait_for

pytestmark = pytest.mark.slow

REGISTER = "kubetensor.v1.ConsensusService/RegisterNeuron"


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in span.get("tags") or []}


def test_each_reconcile_is_a_span_with_the_registration_inside(
    kube_cluster: ControlPlane, operator: OperatorHandle, jaeger: JaegerServer, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("traced"))

    def reconciles() -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] | None:
        found: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for trace in jaeger.traces("kubetensor-operator", operation="operator.reconcile", limit=1000):
            for span in trace["spans"]:
                tags = _tags(span)
                if (
                    span["operationName"] == "operator.reconcile"
                    and tags.get("k8s.namespace.name") == namespace
                ):
                    found.setdefault(tags["kubetensor.resource.kind"], []).append((span, trace))
        miners = found.get("Miner", [])
        registered = any(
            any(
                child["operationName"] == REGISTER
                and any(ref["spanID"] == span["spanID"] for ref in child.get("references") or [])
                for child in trace["spans"]
            )
            for span, trace in miners
        )
        return found if "Subnet" in found and registered else None

    found = wait_for(
        reconciles, what="the Subnet's and the Miner's reconcile spans", seconds=90, interval=1.0
    )
    for kind, name in (("Subnet", "demo"), ("Miner", "traced")):
        tags = _tags(found[kind][0][0])
        assert tags["kubetensor.resource.name"] == name
        assert tags["kubetensor.resource.generation"] >= 1
    span, trace = next(
        (span, trace)
        for span, trace in found["Miner"]
        if any(child["operationName"] == REGISTER for child in trace["spans"])
    )
    [register] = [child for child in trace["spans"] if child["operationName"] == REGISTER]
    register_tags = _tags(register)
    assert register_tags["rpc.system"] == "grpc"
    assert register_tags["rpc.method"] == "RegisterNeuron"
    assert register_tags["span.kind"] == "client"
    assert register_tags["rpc.grpc.status_code"] == 0
    # The reconcile is the root of its trace: kopf's handler invocation starts it.
    assert not [ref for ref in span.get("references") or [] if ref["refType"] == "CHILD_OF"]
