"""``helm install``, ``upgrade`` and ``uninstall`` of charts/kubetensor against the harness control plane
(real kube-apiserver, controller-manager and scheduler; kwok plays the kubelets of fake nodes, so pods
are scheduled and marked Running but no container runs). Also: the plain-YAML install and
manifests/examples/ are accepted by the API server, and a values typo is refused before anything is
created. Every release gets its own name and namespace, so nothing collides with the operator tests'
``manifests/rbac/`` objects on the same cluster."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetensor.sandbox.controlplane import ControlPlane

from tests.chart_support import CHART, ROOT, HelmError, documents, helm, values_file
from tests.operator_support import kubectl, prebound_volume, wait_for

pytestmark = pytest.mark.slow

CRD_NAMES = ("subnets.kubetensor.io", "miners.kubetensor.io", "validators.kubetensor.io")
NAMESPACED_KINDS = (
    "deployments,statefulsets,pods,services,configmaps,serviceaccounts,secrets,roles,rolebindings,"
    "persistentvolumeclaims"
)
CLUSTER_KINDS = "clusterroles,clusterrolebindings"
WAIT = ("--wait", "--timeout", "180s")


def get_json(cluster: ControlPlane, *args: str) -> Any:
    done = kubectl(cluster, "get", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def exists(cluster: ControlPlane, *args: str) -> bool:
    return kubectl(cluster, "get", *args, "-o", "name").returncode == 0


def established(cluster: ControlPlane, name: str) -> bool:
    done = kubectl(cluster, "get", "crd", name, "-o", "json")
    if done.returncode != 0:
        return False
    conditions = json.loads(done.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def release_objects(cluster: ControlPlane, release: str, namespace: str) -> list[str]:
    """Everything labelled as the release's, in its namespace and cluster-wide."""
    selector = f"app.kubernetes.io/instance={release}"
    found: list[str] = []
    for args in (("-n", namespace, NAMESPACED_KINDS), (CLUSTER_KINDS,)):
        done = kubectl(cluster, "get", *args, "-l", selector, "-o", "name")
        assert done.returncode == 0, done.stderr
        found += done.stdout.split()
    # Helm's own record of the release.
    done = kubectl(
        cluster, "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={release}", "-o", "name"
    )
    return found + done.stdout.split()


def can_i(cluster: ControlPlane, subject: str, *what: str) -> bool:
    done = kubectl(cluster, "auth", "can-i", f"--as={subject}", *what)
    return done.stdout.strip() == "yes"


def operator_pods(cluster: ControlPlane, namespace: str, release: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    items: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def scheduled_running(pods: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    """The one pod when it is bound to a node named ``prefix*`` and Running, else None."""
    if len(pods) != 1:
        return None
    pod = pods[0]
    if pod["spec"].get("nodeName", "").startswith(prefix) and pod["status"].get("phase") == "Running":
        return pod
    return None


@pytest.fixture
def release(kube_cluster: ControlPlane) -> Iterator[tuple[str, str]]:
    """A fresh release name and namespace, plus a PersistentVolume pre-bound to the NATS claim (the control
    plane has no storage provisioner); whatever the test leaves is removed afterwards."""
    name = f"kt-{secrets.token_hex(3)}"
    namespace = f"helm-{name}"
    claim = f"data-{name}-kubetensor-nats-0"
    volume = prebound_volume(f"{namespace}-nats", namespace=namespace, claim=claim, storage="10Gi")
    created = kubectl(kube_cluster, "apply", "-f", "-", input_text=json.dumps(volume))
    assert created.returncode == 0, created.stderr
    try:
        yield name, namespace
    finally:
        try:
            helm("uninstall", name, "-n", namespace, "--ignore-not-found", kubeconfig=kube_cluster.kubeconfig)
        finally:
            kubectl(kube_cluster, "delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
            kubectl(kube_cluster, "delete", "persistentvolume", f"{namespace}-nats", "--wait=false")


def test_helm_install_upgrade_uninstall_on_a_real_control_plane(
    kube_cluster: ControlPlane, release: tuple[str, str], tmp_path: Path
) -> None:
    name, namespace = release
    operator = f"{name}-kubetensor-operator"
    account = f"system:serviceaccount:{namespace}:{operator}"
    crds_before = {crd: exists(kube_cluster, "crd", crd) for crd in CRD_NAMES}

    # -- install ---------------------------------------------------------------------------------------
    def run(*args: str) -> str:
        return helm(*args, "-n", namespace, kubeconfig=kube_cluster.kubeconfig)

    out = run("install", name, str(CHART), "--create-namespace", *WAIT)
    assert "kubectl apply -n demo -f manifests/examples/" in out  # NOTES.txt: what to run next
    assert f"nats://{name}-kubetensor-nats.{namespace}.svc:4222" in out
    # NOTES.txt: the operator's /metrics behind its Service.
    assert f"http://{operator}-metrics.{namespace}.svc:9090/metrics" in out
    assert f"port-forward service/{operator}-metrics 9090" in out

    for crd in CRD_NAMES:
        assert established(kube_cluster, crd), crd
        if not crds_before[crd]:
            fields = get_json(kube_cluster, "crd", crd, "--show-managed-fields")["metadata"]["managedFields"]
            managers = {m["manager"] for m in fields}
            assert "helm" in managers, f"{crd} was created by {managers}"

    # RBAC: the service account can do what the operator needs, and no more.
    rules = get_json(kube_cluster, "clusterrole", operator)["rules"]
    plain = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac" / "operator.yaml").read_text()) if d]
    (expected,) = [d["rules"] for d in plain if d["kind"] == "ClusterRole"]
    assert rules == expected
    assert can_i(kube_cluster, account, "patch", "miners.kubetensor.io", "-n", "anywhere")
    assert can_i(kube_cluster, account, "create", "deployments.apps", "-n", "anywhere")
    assert not can_i(kube_cluster, account, "delete", "secrets", "-n", "anywhere")
    assert not can_i(kube_cluster, account, "list", "secrets", "-n", "anywhere")
    assert not can_i(kube_cluster, account, "delete", "customresourcedefinitions.apiextensions.k8s.io")

    deployment = get_json(kube_cluster, "deployment", operator, "-n", namespace)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == operator
    pod = wait_for(
        lambda: scheduled_running(operator_pods(kube_cluster, namespace, name), "kt-cpu-"),
        what="the operator pod scheduled on a fake CPU node and Running",
    )
    first_pod = pod["metadata"]["name"]

    # The metrics Service reaches the operator pod on its container port "metrics": the API server's
    # EndpointSlice controller resolves the named targetPort against the pod it selects.
    service = get_json(kube_cluster, "service", f"{operator}-metrics", "-n", namespace)
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("metrics", 9090)]

    def metrics_endpoints() -> list[tuple[str, int]]:
        slices = get_json(
            kube_cluster,
            "endpointslices",
            "-n",
            namespace,
            "-l",
            f"kubernetes.io/service-name={operator}-metrics",
        )["items"]
        return [
            (endpoint["targetRef"]["name"], port["port"])
            for piece in slices
            for endpoint in piece.get("endpoints") or []
            for port in piece.get("ports") or []
        ]

    assert wait_for(metrics_endpoints, what="the metrics Service's endpoint") == [(first_pod, 9090)]

    # The bundled NATS: its claim bound to the volume, its pod scheduled.
    claim = get_json(kube_cluster, "pvc", f"data-{name}-kubetensor-nats-0", "-n", namespace)
    assert claim["status"]["phase"] == "Bound"
    nats_pod = get_json(kube_cluster, "pod", f"{name}-kubetensor-nats-0", "-n", namespace)
    assert nats_pod["spec"]["nodeName"].startswith("kt-")

    # manifests/examples/ against the CRDs this release installed: accepted by the API server.
    examples = kubectl(
        kube_cluster, "apply", "--dry-run=server", "-n", namespace, "-f", str(ROOT / "manifests" / "examples")
    )
    assert examples.returncode == 0, examples.stderr
    assert "miner.kubetensor.io/qwen-small created (server dry run)" in examples.stdout

    # -- upgrade: a changed value reaches the operator's pod -------------------------------------------
    upgrade = values_file(
        tmp_path, {"operator": {"logLevel": "DEBUG"}, "otel": {"endpoint": "http://collector.obs:4317"}}
    )
    run("upgrade", name, str(CHART), "--values", str(upgrade), *WAIT)

    def replaced(previous: str) -> dict[str, Any] | None:
        running = scheduled_running(operator_pods(kube_cluster, namespace, name), "kt-cpu-")
        if running is None or running["metadata"]["name"] == previous:
            return None
        return running

    pod = wait_for(lambda: replaced(first_pod), what="the operator pod replaced after the upgrade")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["KT_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4317"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"

    # -- upgrade as the chart's README does: one value changed, the others kept ----------------------
    reuse = ["--reset-then-reuse-values", "--set-json", "otel.samplingRatio=0.5"]
    run("upgrade", name, str(CHART), *reuse, *WAIT)
    second_pod = pod["metadata"]["name"]
    pod = wait_for(lambda: replaced(second_pod), what="the operator pod replaced after the second upgrade")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["KT_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4317"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    history = json.loads(run("history", name, "-o", "json"))
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert history[-1]["status"] == "deployed"

    # -- uninstall: nothing of the release is left but the CRDs ---------------------------------------
    assert release_objects(kube_cluster, name, namespace)
    run("uninstall", name, *WAIT)
    wait_for(
        lambda: release_objects(kube_cluster, name, namespace) == [],
        what="no object of the release left",
        seconds=90,
    )
    assert not exists(kube_cluster, "pvc", f"data-{name}-kubetensor-nats-0", "-n", namespace)
    for crd in CRD_NAMES:
        assert established(kube_cluster, crd), f"{crd} must stay (Helm never deletes CRDs)"


def test_helm_install_refuses_a_values_typo_and_creates_nothing(
    kube_cluster: ControlPlane, tmp_path: Path
) -> None:
    name = f"kt-{secrets.token_hex(3)}"
    typo = values_file(tmp_path, {"operater": {"replicas": 1}})
    with pytest.raises(HelmError) as refused:
        helm(
            "install",
            name,
            str(CHART),
            "-n",
            "default",
            "--values",
            str(typo),
            kubeconfig=kube_cluster.kubeconfig,
        )
    assert "additional properties 'operater' not allowed" in refused.value.stderr
    assert release_objects(kube_cluster, name, "default") == []


def test_plain_yaml_install_is_accepted_by_the_api_server(kube_cluster: ControlPlane) -> None:
    install = ROOT / "manifests" / "install" / "kubetensor.yaml"
    # A server-side dry run validates every object but creates none, so its namespace (the file's first
    # document) must exist. It is the operator tests' namespace too (manifests/rbac/), so it stays:
    # deleting it would leave it terminating when they install into it.
    namespace = next(iter(documents(install)))
    assert namespace["kind"] == "Namespace"
    created = kubectl(kube_cluster, "apply", "--server-side", "-f", "-", input_text=json.dumps(namespace))
    assert created.returncode == 0, created.stderr
    applied = kubectl(
        kube_cluster,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=kt-e2e",
        "-f",
        str(install),
    )
    assert applied.returncode == 0, applied.stderr
    for line in ("deployment.apps/kubetensor-operator", "statefulset.apps/kubetensor-nats", "clusterrole."):
        assert line in applied.stdout, applied.stdout
