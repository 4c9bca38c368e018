"""The kube_cluster fixture: a real control plane whose scheduler places GPU pods on kwok GPU nodes."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml
from kubetensor.sandbox.controlplane import GPU_RESOURCE, ControlPlane

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def deployment(name: str, *, gpus: int, tolerate: bool = True, replicas: int = 1) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": "vllm/vllm-openai:latest"}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    spec: dict[str, Any] = {"containers": [container]}
    if tolerate:
        spec["tolerations"] = [GPU_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def pods(cluster: ControlPlane, app: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", "default", "-l", f"app={app}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_for(check: Any, *, timeout: float = 60.0, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last observation: {last!r}")


def test_nodes_advertise_gpus_and_taint(kube_cluster: ControlPlane) -> None:
    nodes = json.loads(kube_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    gpu = [n for n in nodes if GPU_RESOURCE in n["status"]["capacity"]]
    cpu = [n for n in nodes if GPU_RESOURCE not in n["status"]["capacity"]]
    assert gpu
    assert cpu
    for n in gpu:
        assert n["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"} in n["spec"]["taints"]
    for n in nodes:
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]


def test_gpu_deployment_runs_on_gpu_node(kube_cluster: ControlPlane) -> None:
    kube_cluster.kubectl(
        "apply", "-f", "-", input_text=yaml.safe_dump(deployment("gpu-fits", gpus=1, replicas=2))
    )
    gpu_nodes = {
        n["metadata"]["name"]
        for n in json.loads(kube_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        if GPU_RESOURCE in n["status"]["capacity"]
    }

    def running() -> list[dict[str, Any]] | None:
        items = pods(kube_cluster, "gpu-fits")
        ok = [p for p in items if p["status"].get("phase") == "Running"]
        return items if len(ok) == 2 else None

    items = wait_for(running, what="2 Running pods of gpu-fits")
    for p in items:
        assert p["spec"]["nodeName"] in gpu_nodes
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready["Ready"] == "True"
    kube_cluster.kubectl(
        "wait", "--for=condition=Available", "deployment/gpu-fits", "-n", "default", "--timeout=60s"
    )


def test_deployment_needing_more_gpus_than_any_node_stays_pending(kube_cluster: ControlPlane) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(deployment("gpu-too-big", gpus=16)))

    def unschedulable() -> dict[str, Any] | None:
        for p in pods(kube_cluster, "gpu-too-big"):
            for c in p["status"].get("conditions", []):
                if (
                    c["type"] == "PodScheduled"
                    and c["status"] == "False"
                    and c.get("reason") == "Unschedulable"
                ):
                    return {"phase": p["status"]["phase"], "message": c.get("message", "")}
        return None

    result = wait_for(unschedulable, what="the scheduler to mark gpu-too-big Unschedulable")
    assert result["phase"] == "Pending"
    assert f"Insufficient {GPU_RESOURCE}" in result["message"]
    # The scheduler also records its reason as an Event on the pod.
    events = kube_cluster.kubectl(
        "get", "events", "-n", "default", "--field-selector", "reason=FailedScheduling"
    )
    assert f"Insufficient {GPU_RESOURCE}" in events


def test_pod_without_toleration_avoids_gpu_nodes(kube_cluster: ControlPlane) -> None:
    kube_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input_text=yaml.safe_dump(deployment("cpu-only", gpus=0, tolerate=False, replicas=3)),
    )

    def placed() -> list[str] | None:
        items = pods(kube_cluster, "cpu-only")
        names = [p["spec"].get("nodeName") for p in items if p["status"].get("phase") == "Running"]
        return names if len(names) == 3 else None

    for node in wait_for(placed, what="3 Running cpu-only pods"):
        assert node.startswith("kt-cpu-"), node


def test_rbac_denies_unbound_user(kube_cluster: ControlPlane) -> None:
    allowed = kube_cluster.kubectl(
        "auth", "can-i", "create", "deployments", "--as=alice", check=False
    ).strip()
    assert allowed == "no"
    with pytest.raises(subprocess.CalledProcessError) as info:
        kube_cluster.kubectl("get", "pods", "--as=alice")
    assert "forbidden" in info.value.stderr.lower()
    assert kube_cluster.kubectl("auth", "can-i", "create", "deployments").strip() == "yes"
