"""``helm lint`` and ``helm template`` of charts/kubetensor with default and edge-case values, asserting on
the rendered objects; the operator's rendered environment is fed to the operator's own settings, so a
value the operator would not read (or would refuse) fails here rather than in a cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetensor.sandbox.tools import Tools, pinned_versions
from kubetensor_operator import desired, model
from kubetensor_operator.desired import Images, Owner
from kubetensor_operator.settings import DEFAULT_IMAGE, DEFAULT_VLLM_IMAGE, OperatorSettings

from tests.chart_support import (
    CHART,
    CI_VALUES,
    ROOT,
    HelmError,
    Manifest,
    env_values,
    helm,
    of_kind,
    one,
    operator_container,
    render,
    render_values,
)

CI_FILES = sorted(CI_VALUES.glob("*.yaml"))


def operator_settings(container: Manifest, monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """The OperatorSettings the rendered container would load (nothing else in the environment)."""
    for name in list(os.environ):
        if name.startswith(("KT_OPERATOR_", "OTEL_")):
            monkeypatch.delenv(name)
    for name, value in env_values(container).items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_lint_passes_with_default_values(strict: bool) -> None:
    out = helm("lint", str(CHART), *(["--strict"] if strict else []))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", CI_FILES, ids=[p.stem for p in CI_FILES])
def test_lint_strict_passes_with_the_edge_case_values(values: Path) -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--strict", "--values", str(values))


def test_default_render_is_the_operator_its_rbac_and_a_bundled_nats() -> None:
    objects = render()
    operator = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    nats = ["ConfigMap", "Service", "Service", "StatefulSet", "NetworkPolicy"]
    assert sorted(o["kind"] for o in objects) == sorted(operator + nats)
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "kubetensor"
    deployment = one(objects, "Deployment", "kubetensor-operator")
    assert deployment["metadata"]["namespace"] == "kubetensor-system"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_operator_probes_hit_kopfs_health_endpoint_on_the_port_it_listens_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = operator_container(render())
    (port,) = [port for port in container["ports"] if port["name"] == "health"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    settings = operator_settings(container, monkeypatch)
    assert settings.liveness_endpoint == f"http://0.0.0.0:{port['containerPort']}/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}


def test_operator_serves_metrics_on_its_metrics_port_and_none_with_port_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = operator_container(render())
    (port,) = [port for port in container["ports"] if port["name"] == "metrics"]
    assert port["containerPort"] == 9090
    assert operator_settings(container, monkeypatch).metrics_listen == f"[::]:{port['containerPort']}"
    moved = operator_container(render_values(tmp_path, {"operator": {"metricsPort": 9191}}))
    assert operator_settings(moved, monkeypatch).metrics_listen == "[::]:9191"
    assert {p["name"]: p["containerPort"] for p in moved["ports"]} == {"health": 8080, "metrics": 9191}
    off = operator_container(render_values(tmp_path, {"operator": {"metricsPort": 0}}))
    assert [p["name"] for p in off["ports"]] == ["health"]
    assert operator_settings(off, monkeypatch).metrics_listen == ""


def test_a_metrics_port_equal_to_the_health_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HelmError, match=r"metricsPort must differ from operator\.healthPort"):
        render_values(tmp_path, {"operator": {"metricsPort": 8080}})


SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


def test_operator_metrics_service_selects_the_operator_pod_on_its_metrics_port() -> None:
    objects = render()
    service = one(objects, "Service", "kubetensor-operator-metrics")
    assert service["apiVersion"] == "v1"
    assert service["metadata"]["namespace"] == "kubetensor-system"
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert service["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert service["spec"]["type"] == "ClusterIP"
    pod = one(objects, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # Nothing else the chart runs has the operator pod's labels (the NATS pod is component nats).
    nats_pod = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= nats_pod.items()
    (port,) = service["spec"]["ports"]
    (container_port,) = [p for p in operator_container(objects)["ports"] if p["name"] == port["targetPort"]]
    assert port["port"] == container_port["containerPort"] == 9090
    assert port == {
        "name": "metrics",
        "port": 9090,
        "targetPort": "metrics",
        "protocol": "TCP",
        "appProtocol": "http",
    }
    # Another port and release name: the Service follows them.
    moved = render(CI_VALUES / "everything-values.yaml")
    (port,) = one(moved, "Service", "kt-operator-metrics")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9191, "metrics")


@pytest.mark.parametrize(
    "operator",
    [{"metricsPort": 0}, {"metricsService": {"enabled": False}}],
    ids=["metrics-port-zero", "service-off"],
)
def test_no_operator_metrics_service_without_a_metrics_port_or_with_the_service_off(
    tmp_path: Path, operator: dict[str, Any]
) -> None:
    objects = render_values(tmp_path, {"operator": operator})
    assert [s["metadata"]["name"] for s in of_kind(objects, "Service")] == [
        "kubetensor-nats",
        "kubetensor-nats-headless",
    ]


def test_no_service_monitor_by_default_even_where_the_cluster_serves_them() -> None:
    assert not of_kind(render(api_versions=[SERVICE_MONITOR_API]), "ServiceMonitor")


def test_service_monitor_scrapes_the_metrics_service_and_no_other_service(tmp_path: Path) -> None:
    monitor = {"enabled": True, "interval": "15s", "scrapeTimeout": "10s", "labels": {"release": "prom"}}
    objects = render_values(
        tmp_path, {"operator": {"serviceMonitor": monitor}}, api_versions=[SERVICE_MONITOR_API]
    )
    found = one(objects, "ServiceMonitor", "kubetensor-operator")
    assert found["apiVersion"] == "monitoring.coreos.com/v1"
    assert found["metadata"]["namespace"] == "kubetensor-system"
    assert found["metadata"]["labels"]["release"] == "prom"
    assert found["metadata"]["labels"]["app.kubernetes.io/instance"] == "kubetensor"
    assert found["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert found["spec"]["namespaceSelector"] == {"matchNames": ["kubetensor-system"]}
    assert found["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    # Of every Service the chart renders (the bundled NATS's two among them), it selects the metrics one.
    selector = found["spec"]["selector"]["matchLabels"]
    services = of_kind(objects, "Service")
    assert len(services) == 3
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["kubetensor-operator-metrics"]
    assert [p["name"] for p in selected[0]["spec"]["ports"]] == ["metrics"]
    # The defaults: every 30s, Prometheus's own timeout.
    objects = render_values(
        tmp_path, {"operator": {"serviceMonitor": {"enabled": True}}}, api_versions=[SERVICE_MONITOR_API]
    )
    endpoints = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoints == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


@pytest.mark.parametrize(
    ("operator", "api_versions", "message"),
    [
        (
            {},
            [],
            r"cluster serves no monitoring\.coreos\.com/v1 ServiceMonitor .*"
            r"set operator\.serviceMonitor\.enabled=false",
        ),
        ({"metricsPort": 0}, [SERVICE_MONITOR_API], r"operator\.metricsPort is 0"),
        (
            {"metricsService": {"enabled": False}},
            [SERVICE_MONITOR_API],
            r"operator\.metricsService\.enabled is false",
        ),
    ],
    ids=["no-prometheus-operator", "metrics-port-zero", "service-off"],
)
def test_a_service_monitor_is_refused_without_its_api_or_its_service(
    tmp_path: Path, operator: dict[str, Any], api_versions: list[str], message: str
) -> None:
    values = {"operator": {**operator, "serviceMonitor": {"enabled": True}}}
    with pytest.raises(HelmError, match=message) as refused:
        render_values(tmp_path, values, api_versions=api_versions)
    assert "operator.serviceMonitor.enabled" in refused.value.stderr


def test_default_operator_environment_is_read_by_the_operator_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = operator_container(render())
    assert not [name for name in env_values(container) if name.startswith("OTEL_")]
    settings = operator_settings(container, monkeypatch)
    assert settings.namespaces == []
    assert settings.image == container["image"] == "ghcr.io/kubetensor/kubetensor:0.1.0"
    assert settings.vllm_image == "vllm/vllm-openai:v0.32.0"
    assert settings.otel_env == {}
    assert settings.resync_seconds == 60
    assert settings.release_retry_seconds == 10


def test_release_retry_seconds_reach_the_operator_and_a_non_positive_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = operator_container(render_values(tmp_path, {"operator": {"releaseRetrySeconds": 2.5}}))
    assert operator_settings(container, monkeypatch).release_retry_seconds == 2.5
    with pytest.raises(HelmError, match="releaseRetrySeconds"):
        render_values(tmp_path, {"operator": {"releaseRetrySeconds": 0}})


def test_every_component_image_reaches_the_operator_and_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(CI_VALUES / "everything-values.yaml")
    container = operator_container(objects)
    assert container["image"] == "registry.example/kubetensor-operator:1.2.3-op"
    assert container["imagePullPolicy"] == "Always"
    settings = operator_settings(container, monkeypatch)
    images = Images(
        kubetensor=settings.image,
        vllm=settings.vllm_image,
        consensus=settings.consensus_image,
        chain=settings.chain_image,
        miner=settings.miner_image,
        validator=settings.validator_image,
    )
    assert images == Images(
        kubetensor="registry.example/kubetensor:1.2.3",
        vllm="registry.example/vllm-openai:v0.32.1",
        consensus="registry.example/kubetensor-consensus:1.2.4",
        chain="registry.example/kubetensor:1.2.5",
        miner="registry.example/kubetensor-miner:1.2.3",
        validator="registry.example/kubetensor-validator:v9",
    )
    assert settings.metagraph_ttl_seconds == 5  # operator.extraEnv
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_otel_values_become_standard_variables_that_reach_every_child_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = operator_container(render(CI_VALUES / "everything-values.yaml"))
    expected = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,k8s.cluster.name=gpu-east",
    }
    env = env_values(container)
    assert {k: v for k, v in env.items() if k.startswith("OTEL_")} == expected
    settings = operator_settings(container, monkeypatch)
    assert settings.otel_env == expected
    # What the operator then creates for a Subnet carries the same variables.
    subnet = desired.subnet_objects(
        model.SubnetSpec.parse({"netuid": 3}),
        owner=Owner(kind="Subnet", name="s", namespace="n", uid="u"),
        images=Images(kubetensor=settings.image, vllm=settings.vllm_image),
        otel=settings.otel_env,
    )
    (deployment,) = [o for o in subnet if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    for child in pod["containers"] + pod["initContainers"]:
        assert expected.items() <= env_values(child).items(), child["name"]


def test_otel_over_http_with_a_sampling_ratio(tmp_path: Path) -> None:
    env = env_values(operator_container(render(CI_VALUES / "external-nats-values.yaml")))
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    assert "OTEL_RESOURCE_ATTRIBUTES" not in env


def test_watch_namespaces_get_roles_and_nothing_cluster_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(CI_VALUES / "everything-values.yaml")
    assert not of_kind(objects, "ClusterRole")
    assert not of_kind(objects, "ClusterRoleBinding")
    cluster_rules = one(render(), "ClusterRole")["rules"]
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["subnet-a", "subnet-b"]
    assert all(r["rules"] == cluster_rules for r in roles)
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "kt-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kubetensor-controller", "namespace": "kubetensor-system"}
        ]
    settings = operator_settings(operator_container(objects), monkeypatch)
    assert settings.namespaces == ["subnet-a", "subnet-b"]
    assert settings.log_level == "DEBUG"


def test_placement_and_resources_land_on_the_operator_pod() -> None:
    objects = render(CI_VALUES / "everything-values.yaml")
    pod = one(objects, "Deployment", "kt-operator")["spec"]["template"]
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "node-role.example/system": "true"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}
    ]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["annotations"] == {"example.com/scrape": "false"}
    assert pod["metadata"]["labels"]["team"] == "ml-platform"
    container = spec["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "300Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 9090, "metrics": 9191}
    nats = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert nats["tolerations"] == spec["tolerations"]


def test_bundled_nats_is_a_jetstream_statefulset_with_a_claim_and_two_services() -> None:
    objects = render()
    statefulset = one(objects, "StatefulSet", "kubetensor-nats")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "kubetensor-nats-headless"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    headless = one(objects, "Service", "kubetensor-nats-headless")
    assert headless["spec"]["clusterIP"] == "None"
    client = one(objects, "Service", "kubetensor-nats")
    assert [p["port"] for p in client["spec"]["ports"]] == [4222]
    assert client["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "nats:2.15.2-alpine"
    assert "js-enabled-only" in container["readinessProbe"]["httpGet"]["path"]
    config = one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    assert "jetstream" in config
    assert "store_dir: /data" in config


def test_the_nats_network_policy_opens_the_client_port_and_keeps_the_monitoring_port_to_the_node() -> None:
    objects = render()
    policy = one(objects, "NetworkPolicy", "kubetensor-nats")
    pod = one(objects, "StatefulSet", "kubetensor-nats")["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # One rule, without "from": the client port, from anywhere; nothing names the monitoring port.
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "client", "protocol": "TCP"}]}]
    ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert ports == {"client", "monitor"}


def test_the_nats_monitoring_port_opens_to_the_peers_named_and_the_policy_can_be_left_out(
    tmp_path: Path,
) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    objects = render_values(tmp_path, {"nats": {"networkPolicy": {"monitorFrom": [peer]}}})
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert ingress[1] == {"from": [peer], "ports": [{"port": "monitor", "protocol": "TCP"}]}
    objects = render_values(tmp_path, {"nats": {"networkPolicy": {"enabled": False}}})
    assert of_kind(objects, "NetworkPolicy") == []
    with pytest.raises(HelmError, match="monitorFrom"):
        render_values(tmp_path, {"nats": {"networkPolicy": {"monitorFrom": [{"podSelectr": {}}]}}})


def test_nats_without_persistence_keeps_jetstream_on_an_empty_dir(tmp_path: Path) -> None:
    objects = render_values(tmp_path, {"nats": {"persistence": {"enabled": False}}})
    spec = one(objects, "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in spec
    assert "persistentVolumeClaimRetentionPolicy" not in spec
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_nats_claim_can_be_kept_on_uninstall(tmp_path: Path) -> None:
    objects = render_values(tmp_path, {"nats": {"persistence": {"retainOnUninstall": True}}})
    assert (
        one(objects, "StatefulSet")["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    )


def test_the_rendered_nats_configuration_is_accepted_by_nats_server(tmp_path: Path) -> None:
    config = one(render(), "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    # The paths are the pod's mounts; point them at scratch folders for the check.
    local = config.replace("/var/run/nats", str(tmp_path)).replace("/data", str(tmp_path / "js"))
    path = tmp_path / "nats.conf"
    path.write_text(local)
    checked = subprocess.run(
        [str(Tools.discover().path("nats-server")), "-c", str(path), "-t"],
        capture_output=True,
        text=True,
        env={"POD_NAME": "kubetensor-nats-0"},
        check=False,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(local.replace("max_file_store: 8Gi", "max_file_store: lots"))
    refused = subprocess.run(
        [str(Tools.discover().path("nats-server")), "-c", str(bad), "-t"],
        capture_output=True,
        text=True,
        env={"POD_NAME": "kubetensor-nats-0"},
        check=False,
        timeout=30,
    )
    assert refused.returncode != 0


def test_external_nats_installs_no_nats_and_the_examples_use_its_url() -> None:
    objects = render(CI_VALUES / "external-nats-values.yaml")
    assert not of_kind(objects, "StatefulSet")
    assert not [o for o in objects if "nats" in o["metadata"]["name"]]
    subnet = one(objects, "Subnet", "demo")
    assert subnet["spec"]["natsUrl"] == "nats://nats.messaging.svc:4222"
    assert subnet["spec"]["ledger"] == {"ephemeral": True}


def test_examples_are_a_subnet_on_the_bundled_nats_with_its_miners_and_validators() -> None:
    objects = render(CI_VALUES / "everything-values.yaml")
    subnet = one(objects, "Subnet", "demo")
    assert subnet["apiVersion"] == "kubetensor.io/v1alpha1"
    assert subnet["metadata"]["namespace"] == "subnet-a"
    assert subnet["spec"]["netuid"] == 3
    assert subnet["spec"]["natsUrl"] == "nats://kt-nats.kubetensor-system.svc:4222"
    assert subnet["spec"]["natsAuth"] == {"secretName": "nats-auth-a"}
    miners = {m["metadata"]["name"]: m["spec"] for m in of_kind(objects, "Miner")}
    assert miners["small"]["gpus"] == 1
    assert "tensorParallelSize" not in miners["small"]["model"]
    assert miners["tp2"]["model"] == {"name": "meta-llama/Llama-3.1-8B-Instruct", "tensorParallelSize": 2}
    assert all(m["subnet"] == "demo" for m in miners.values())
    assert sorted(v["metadata"]["name"] for v in of_kind(objects, "Validator")) == ["alice", "bob"]
    # The examples' specs are valid for the operator's own model (the CRD's mirror).
    model.SubnetSpec.parse(subnet["spec"])
    for spec in miners.values():
        model.MinerSpec.parse(spec)


def test_nats_auth_reads_the_secret_into_the_server_and_the_example_subnet_names_it(tmp_path: Path) -> None:
    values = {"nats": {"auth": {"existingSecret": "nats-auth"}}, "examples": {"enabled": True}}
    objects = render_values(tmp_path, values)
    (container,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    secret_env = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert secret_env == [
        {"name": "NATS_TOKEN", "valueFrom": {"secretKeyRef": {"name": "nats-auth", "key": "token"}}}
    ]
    assert "token: $NATS_TOKEN" in one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]
    # The examples are in the release namespace: the Secret there is theirs too.
    subnet = one(objects, "Subnet", "demo")
    assert subnet["spec"]["natsAuth"] == {"secretName": "nats-auth"}
    model.SubnetSpec.parse(subnet["spec"])
    # Elsewhere a pod cannot mount it: the examples name their own Secret, or none.
    elsewhere = {**values, "examples": {"enabled": True, "namespace": "subnet-a"}}
    assert "natsAuth" not in one(render_values(tmp_path, elsewhere), "Subnet", "demo")["spec"]
    own = {**values, "examples": {"enabled": True, "namespace": "subnet-a", "natsAuthSecret": "mine"}}
    assert one(render_values(tmp_path, own), "Subnet", "demo")["spec"]["natsAuth"] == {"secretName": "mine"}


def test_without_nats_auth_the_server_takes_anyone_and_reads_no_secret() -> None:
    objects = render()
    (container,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == ["POD_NAME"]
    assert "authorization" not in one(objects, "ConfigMap", "kubetensor-nats")["data"]["nats.conf"]


def test_an_external_nats_url_with_credentials_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HelmError, match=r"nats/external/url"):
        render_values(tmp_path, {"nats": {"external": {"url": "nats://kt:hunter2@nats.example:4222"}}})


def test_no_examples_by_default() -> None:
    assert not [o for o in render() if o["apiVersion"].startswith("kubetensor.io/")]


def test_manifests_examples_name_the_nats_the_default_install_runs() -> None:
    (subnet,) = [
        d for d in yaml.safe_load_all((ROOT / "manifests" / "examples" / "00-subnet.yaml").read_text()) if d
    ]
    client = one(render(), "Service", "kubetensor-nats")
    port = client["spec"]["ports"][0]["port"]
    assert subnet["spec"]["natsUrl"] == f"nats://{client['metadata']['name']}.kubetensor-system.svc:{port}"


def test_a_release_name_holding_the_chart_name_is_not_repeated() -> None:
    names = {o["metadata"]["name"] for o in render(release="prod-kubetensor")}
    assert "prod-kubetensor-operator" in names
    names = {o["metadata"]["name"] for o in render(release="prod")}
    assert "prod-kubetensor-operator" in names


def test_an_existing_service_account_is_used_without_creating_one(tmp_path: Path) -> None:
    objects = render_values(tmp_path, {"serviceAccount": {"create": False, "name": "platform-sa"}})
    assert not of_kind(objects, "ServiceAccount")
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-sa"


def test_rbac_can_be_left_to_the_cluster_admin(tmp_path: Path) -> None:
    objects = render_values(tmp_path, {"rbac": {"create": False}})
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.")]


def test_replicas_zero_pauses_the_operator(tmp_path: Path) -> None:
    objects = render_values(tmp_path, {"operator": {"replicas": 0}})
    assert one(objects, "Deployment")["spec"]["replicas"] == 0


def undocumented_values(text: str) -> list[str]:
    """Leaves of a values file with no ``# --`` comment right above them or above one of their blocks."""
    found: list[str] = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing blocks
    marked = False  # the comment block right above the current line holds a "# --" line
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            marked = marked or stripped.startswith("# --")
            continue
        if stripped.startswith("- "):
            marked = False
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        own, marked = marked, False
        key, _, value = stripped.partition(":")
        if value.strip():
            if not (own or any(documented for _, documented in stack)):
                found.append(key)
        else:
            stack.append((indent, own))
    return found


ADDED_VALUES = [
    ("operator", "releaseRetrySeconds"),
    ("operator", "metricsPort"),
    ("operator", "metricsService"),
    ("operator", "serviceMonitor"),
    ("nats", "auth"),
    ("nats", "networkPolicy"),
    ("examples", "natsAuthSecret"),
]


@pytest.mark.parametrize(("section", "key"), ADDED_VALUES, ids=[f"{s}.{k}" for s, k in ADDED_VALUES])
def test_values_an_earlier_chart_lacked_are_named_when_missing(
    tmp_path: Path, section: str, key: str
) -> None:
    """What ``helm upgrade --reuse-values`` from an earlier version of the chart renders with (that
    version's values, without this one's defaults for the values added since), simulated with a copy of
    the chart whose values.yaml lacks one: the render fails, naming the value and the flag to use."""
    chart = tmp_path / "kubetensor"
    shutil.copytree(CHART, chart)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    del values[section][key]
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(HelmError) as refused:
        helm("template", "kubetensor", str(chart), "--namespace", "kubetensor-system")
    assert f"values: {section}.{key} is missing" in refused.value.stderr
    assert "--reset-then-reuse-values" in refused.value.stderr


def test_values_yaml_documents_every_value() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    # The check itself finds a value without a comment.
    assert undocumented_values("# -- a\na: 1\nb:\n  # -- c\n  c: 2\n  d: 3\n") == ["d"]


def test_schema_lists_every_default_value() -> None:
    """values.schema.json knows every key values.yaml sets (it forbids the others)."""
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or 'root'} accepts unknown keys"
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the schema"
                walk(sub, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


def test_default_images_are_the_operators_defaults_and_the_pinned_nats_server() -> None:
    objects = render()
    env = env_values(operator_container(objects))
    assert env["KT_OPERATOR_IMAGE"] == DEFAULT_IMAGE
    assert env["KT_OPERATOR_VLLM_IMAGE"] == DEFAULT_VLLM_IMAGE
    # The NATS the chart runs is the version the tests run (tools/versions.env).
    (nats,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    version = pinned_versions()["NATS_SERVER_VERSION"].removeprefix("v")
    assert nats["image"].startswith(f"nats:{version}")
