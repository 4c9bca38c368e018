"""The chart's per-namespace mode on a real control plane: ``helm install`` with
``operator.watchNamespaces`` gives the operator's service account a Role in each watched namespace and
nothing cluster-wide; the operator, authenticated with a token of that very account and watching the same
namespaces, reconciles Subnets, Validators and Miners there (children, claims, hotkeys, conditions,
finalizers released on delete) without one 403, and leaves an unwatched namespace alone.

The release's own operator pod is scaled to 0 (pods do not run here); the operator process runs on this
machine instead, as that pod would. The session's cluster-wide operator is stopped meanwhile, so every
change seen is this operator's."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetensor.sandbox.controlplane import ControlPlane
from kubetensor_operator.handlers import FINALIZER

from tests.chart_support import CHART, helm, values_file
from tests.operator_support import (
    OperatorHandle,
    apply,
    condition,
    get,
    kubectl,
    miner,
    prebound_volume,
    subnet,
    validator,
    wait_for,
)

# Starts the control plane, a consensus process and an operator; installs the chart.
pytestmark = pytest.mark.slow

CONDITIONS = {"Ready", "Available", "Progressing", "Degraded"}
FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)


def ready(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    obj = get(cluster, namespace, kind, name)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def can_i(cluster: ControlPlane, account: str, *what: str) -> bool:
    done = kubectl(cluster, "auth", "can-i", f"--as={account}", *what)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def refusals(operator: OperatorHandle) -> list[str]:
    """The lines of the operator's log (its own and kopf's) about a request the API server refused."""
    return [line for line in operator.log().splitlines() if FORBIDDEN.search(line)]


def ready_unrefused(
    cluster: ControlPlane, operator: OperatorHandle, namespace: str, kind: str, name: str
) -> dict[str, Any] | None:
    """``ready``, but failing at once when the operator was refused anything (a rule the Role lacks)."""
    refused = refusals(operator)
    assert refused == [], "the API server refused the operator:\n" + "\n".join(refused)
    return ready(cluster, namespace, kind, name)


def forbidden_events(cluster: ControlPlane, namespace: str) -> list[str]:
    listed = get(cluster, namespace, "events")
    return [
        f"{e['reason']}: {e.get('message', '')}"
        for e in listed["items"]
        if FORBIDDEN.search(e.get("message", ""))
    ]


@pytest.fixture
def chart_release(
    kube_cluster: ControlPlane, cluster_wide_operator_paused: None, tmp_path: Path
) -> Iterator[tuple[str, str, list[str], str]]:
    """The chart installed with two fresh watched namespaces, plus a third one it does not watch:
    (release, release namespace, watched namespaces, unwatched namespace). All removed afterwards."""
    suffix = secrets.token_hex(3)
    release, release_ns = f"kt-{suffix}", f"helm-kt-{suffix}"
    watched, unwatched = [f"roles-a-{suffix}", f"roles-b-{suffix}"], f"roles-c-{suffix}"
    for namespace in (*watched, unwatched):
        created = kubectl(kube_cluster, "create", "namespace", namespace)
        assert created.returncode == 0, created.stderr
    values = values_file(
        tmp_path,
        {
            # The release's operator pod would not run here: the test runs the operator process itself.
            "operator": {"replicas": 0, "watchNamespaces": watched},
            "nats": {"external": {"url": "nats://nats.test:4222"}},
        },
    )
    try:
        helm(
            "install",
            release,
            str(CHART),
            "-n",
            release_ns,
            "--create-namespace",
            "--values",
            str(values),
            kubeconfig=kube_cluster.kubeconfig,
        )
        yield release, release_ns, watched, unwatched
    finally:
        try:
            helm(
                "uninstall",
                release,
                "-n",
                release_ns,
                "--ignore-not-found",
                kubeconfig=kube_cluster.kubeconfig,
            )
        finally:
            for namespace in (release_ns, *watched, unwatched):
                kubectl(kube_cluster, "delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
            kubectl(kube_cluster, "delete", "persistentvolume", f"{watched[0]}-demo-ledger", "--wait=false")


def test_operator_reconciles_watched_namespaces_with_only_the_charts_roles(
    kube_cluster: ControlPlane,
    operator_consensus: str,
    chart_release: tuple[str, str, list[str], str],
    tmp_path: Path,
) -> None:
    release, release_ns, (ns_a, ns_b), unwatched = chart_release
    service_account = f"{release}-kubetensor-operator"
    account = f"system:serviceaccount:{release_ns}:{service_account}"

    # The chart's RBAC: a Role and RoleBinding in each watched namespace, nothing cluster-wide.
    for namespace in (ns_a, ns_b):
        assert get(kube_cluster, namespace, "role", service_account) is not None
        assert get(kube_cluster, namespace, "rolebinding", service_account) is not None
    cluster_wide = kubectl(
        kube_cluster, "get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={release}"
    )
    assert cluster_wide.returncode == 0, cluster_wide.stderr
    assert "kubetensor" not in cluster_wide.stdout
    assert can_i(kube_cluster, account, "create", "secrets", "-n", ns_a)
    assert not can_i(kube_cluster, account, "list", "secrets", "-n", ns_a)
    for verb, what in (("list", "secrets"), ("list", "pods"), ("list", "miners.kubetensor.io")):
        assert not can_i(kube_cluster, account, verb, what, "--all-namespaces"), f"{verb} {what} cluster-wide"
    for verb, what in (("create", "secrets"), ("patch", "miners.kubetensor.io"), ("list", "pods")):
        assert not can_i(kube_cluster, account, verb, what, "-n", unwatched), f"{verb} {what} in {unwatched}"
    assert not can_i(kube_cluster, account, "list", "namespaces")
    assert not can_i(kube_cluster, account, "list", "customresourcedefinitions.apiextensions.k8s.io")

    # The operator as the chart's service account, watching the chart's namespaces.
    operator = OperatorHandle(
        directory=tmp_path / "operator",
        kubeconfig=kube_cluster.kubeconfig,
        consensus_address=operator_consensus,
        namespaces=(ns_a, ns_b),
        account=(release_ns, service_account),
    )
    operator.start(install=False)
    try:
        ledger = prebound_volume(f"{ns_a}-demo-ledger", namespace=ns_a, claim="demo-ledger")
        volume = kubectl(kube_cluster, "apply", "-f", "-", input_text=json.dumps(ledger))
        assert volume.returncode == 0, volume.stderr
        # A kept ledger (a claim), a generated hotkey per neuron: every rule of the Role is used.
        apply(kube_cluster, ns_a, subnet(ephemeral=False), validator("v"), miner("m"))
        apply(kube_cluster, ns_b, subnet(), miner("m"))
        apply(kube_cluster, unwatched, subnet(), miner("m"))

        for namespace, kind, name in (
            (ns_a, "subnet", "demo"),
            (ns_a, "validator", "v"),
            (ns_a, "miner", "m"),
            (ns_b, "subnet", "demo"),
            (ns_b, "miner", "m"),
        ):
            obj = wait_for(
                lambda n=namespace, k=kind, m=name: ready_unrefused(kube_cluster, operator, n, k, m),
                what=f"{kind} {namespace}/{name} Ready",
                seconds=45,
            )
            types = {c["type"] for c in obj["status"]["conditions"]}
            assert types >= CONDITIONS, (kind, types)
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
            assert FINALIZER in obj["metadata"]["finalizers"]
            if kind != "subnet":
                assert isinstance(obj["status"]["uid"], int)

        for namespace, workload in ((ns_a, "demo-consensus"), (ns_a, "v"), (ns_a, "m"), (ns_b, "m")):
            deployment = get(kube_cluster, namespace, "deployment", workload)
            assert deployment is not None, f"{namespace}/{workload}"
            assert deployment["metadata"]["ownerReferences"][0]["controller"] is True
        for namespace, name in ((ns_a, "v-hotkey"), (ns_a, "m-hotkey"), (ns_b, "m-hotkey")):
            assert get(kube_cluster, namespace, "secret", name) is not None, f"{namespace}/{name}"
        assert get(kube_cluster, ns_a, "pvc", "demo-ledger")["status"]["phase"] == "Bound"

        # The unwatched namespace: its resources untouched (no finalizer, no status, no children).
        for kind, name in (("subnet", "demo"), ("miner", "m")):
            obj = get(kube_cluster, unwatched, kind, name)
            assert not obj.get("status"), obj.get("status")
            assert not obj["metadata"].get("finalizers")
        assert get(kube_cluster, unwatched, "deployments,secrets")["items"] == []

        # Deleting: the operator deregisters and releases its finalizers within its Roles.
        for namespace in (ns_a, ns_b):
            deleted = kubectl(kube_cluster, "delete", "-n", namespace, "miners,validators,subnets", "--all")
            assert deleted.returncode == 0, deleted.stderr
            wait_for(
                lambda n=namespace: get(kube_cluster, n, "miners,validators,subnets")["items"] == [],
                what=f"every resource in {namespace} deleted (finalizers released)",
                seconds=30,
            )
    finally:
        operator.stop()

    refused = refusals(operator)
    assert refused == [], "the API server refused the operator:\n" + "\n".join(refused)
    for namespace in (ns_a, ns_b):
        assert forbidden_events(kube_cluster, namespace) == []
