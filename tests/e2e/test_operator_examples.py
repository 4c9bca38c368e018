"""``kubectl apply -f manifests/examples/`` against a real control plane with the operator running: the
Subnet, Miners and Validator become Deployments, Services and Secrets with the right GPU requests,
tolerations and owner references; miner pods land only on GPU nodes; every neuron is registered."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.keys import Keypair
from kubetensor.sandbox.controlplane import ControlPlane

from tests.operator_support import NETUID, OperatorHandle, condition, get, kubectl, prebound_volume, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"

# Starts the control plane, a consensus process and the operator.
pytestmark = pytest.mark.slow


async def test_examples_become_gpu_scheduled_registered_neurons(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    ledger = prebound_volume(f"ledger-{namespace}", namespace=namespace, claim="demo-ledger")
    volume = kubectl(kube_cluster, "apply", "-f", "-", input_text=json.dumps(ledger))
    assert volume.returncode == 0, volume.stderr
    try:
        applied = kubectl(kube_cluster, "apply", "-n", namespace, "-f", str(EXAMPLES))
        assert applied.returncode == 0, applied.stderr
        await check_examples(kube_cluster, operator, namespace)
    finally:
        kubectl(kube_cluster, "delete", "persistentvolume", f"ledger-{namespace}", "--wait=false")


async def check_examples(kube_cluster: ControlPlane, operator: OperatorHandle, ns: str) -> None:
    miners = {"qwen-small": 1, "llama-tp2": 2}

    def all_ready() -> list[dict[str, Any]] | None:
        items = [get(kube_cluster, ns, "miner", name) for name in miners]
        items.append(get(kube_cluster, ns, "validator", "alice"))
        return items if all(condition(i, "Ready").get("status") == "True" for i in items) else None

    neurons = wait_for(all_ready, what="both example Miners and the Validator to be Ready", seconds=90)
    uids = {n["metadata"]["name"]: n["status"]["uid"] for n in neurons}
    assert len(set(uids.values())) == 3, uids

    for name, gpus in miners.items():
        miner = get(kube_cluster, ns, "miner", name)
        deployment = get(kube_cluster, ns, "deployment", name)
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Miner", name, miner["metadata"]["uid"])
        pod_spec = deployment["spec"]["template"]["spec"]
        vllm = next(c for c in pod_spec["containers"] if c["name"] == "vllm")
        assert vllm["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
        assert vllm["resources"]["requests"]["nvidia.com/gpu"] == str(gpus)
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec[
            "tolerations"
        ]
        assert [c["name"] for c in pod_spec["containers"]] == ["vllm", "agent"]
        service = get(kube_cluster, ns, "service", name)
        assert service["metadata"]["ownerReferences"][0]["uid"] == miner["metadata"]["uid"]
        assert service["spec"]["ports"][0]["port"] == 50081
        secret = get(kube_cluster, ns, "secret", f"{name}-hotkey")
        assert secret["type"] == "kubetensor.io/hotkey"
        assert secret["immutable"] is True
        assert secret["metadata"]["ownerReferences"][0]["uid"] == miner["metadata"]["uid"]
        seed = base64.b64decode(secret["data"]["hotkey-seed"]).decode()
        assert Keypair.from_seed_hex(seed).hotkey == miner["status"]["hotkey"]
        assert seed not in operator.log()
        assert miner["status"]["selector"] == f"kubetensor.io/miner={name}"
        assert miner["status"]["observedGeneration"] == miner["metadata"]["generation"]

    nodes: dict[str, set[str]] = defaultdict(set)
    for pod in get(kube_cluster, ns, "pods")["items"]:
        nodes[str(pod["metadata"]["labels"].get("app.kubernetes.io/component"))].add(
            str(pod["spec"].get("nodeName"))
        )
    assert nodes["miner"], nodes
    assert all(n.startswith("kt-gpu-") for n in nodes["miner"]), nodes
    assert nodes["validator"], nodes
    assert all(n.startswith("kt-cpu-") for n in nodes["validator"]), nodes

    # The registrations are real: the consensus service knows each hotkey under the uid in status.
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        graph = {n.hotkey: n.uid for n in (await client.metagraph()).neurons}
    for neuron in neurons:
        assert graph[neuron["status"]["hotkey"]] == neuron["status"]["uid"]

    # The Subnet: hyperparameters, the consensus Deployment with the chain sidecar, its Service and ledger.
    config = get(kube_cluster, ns, "configmap", "demo-hyperparameters")
    assert config["data"]["KT_CONSENSUS_NETUID"] == "1"
    assert config["data"]["KT_CONSENSUS_TEMPO"] == "100"
    consensus = get(kube_cluster, ns, "deployment", "demo-consensus")
    assert consensus["spec"]["strategy"]["type"] == "Recreate"
    assert [c["name"] for c in consensus["spec"]["template"]["spec"]["initContainers"]] == ["chain"]
    assert get(kube_cluster, ns, "service", "demo-consensus")["spec"]["ports"][0]["port"] == 50061
    assert get(kube_cluster, ns, "pvc", "demo-ledger")["status"]["phase"] == "Bound"

    def subnet_counted() -> dict[str, Any] | None:
        subnet = get(kube_cluster, ns, "subnet", "demo")
        status = subnet.get("status") or {}
        done = condition(subnet, "Ready").get("status") == "True" and (
            status.get("miners"),
            status.get("validators"),
        ) == (2, 1)
        return subnet if done else None

    subnet = wait_for(subnet_counted, what="the Subnet Ready with 2 miners and 1 validator", seconds=60)
    assert subnet["status"]["address"] == f"demo-consensus.{ns}.svc:50061"

    table = kubectl(kube_cluster, "get", "miners", "-n", ns).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "SUBNET", "UID", "MODEL", "GPUS", "REPLICAS", "READY", "INCENTIVE", "EMISSION", "AGE"
    ]  # fmt: skip
    row = next(line.split() for line in table if line.startswith("qwen-small"))
    assert row[1:5] == ["demo", str(uids["qwen-small"]), "Qwen/Qwen2.5-0.5B-Instruct", "1"]
