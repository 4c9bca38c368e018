"""The operator's lifecycle on a real control plane: scheduling failures, scaling, rollouts, deletion,
hotkeys, a missing subnet, metrics from epochs and a restart. Each test works in its own namespace."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.keys import Keypair
from kubetensor.sandbox.controlplane import ControlPlane

from tests.operator_support import (
    NETUID,
    RESYNC_SECONDS,
    VALIDATOR_KEY,
    VALIDATOR_STAKE,
    OperatorHandle,
    apply,
    condition,
    get,
    kubectl,
    miner,
    subnet,
    validator,
    wait_for,
)

# Starts the control plane, a consensus process and the operator.
pytestmark = pytest.mark.slow


def ready(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    obj = get(cluster, namespace, kind, name)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def hotkey_secret(name: str, keypair: Keypair) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"hotkey-seed": base64.b64encode(keypair.seed.hex().encode()).decode()},
    }


def test_a_miner_asking_for_more_gpus_than_exist_reports_unschedulable(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("huge", gpus=16))

    def unschedulable() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "huge")
        return obj if condition(obj, "Available").get("reason") == "Unschedulable" else None

    obj = wait_for(unschedulable, what="Available=False reason Unschedulable", seconds=60)
    available, ready_, degraded = (condition(obj, k) for k in ("Available", "Ready", "Degraded"))
    assert available["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in available["message"]
    assert (ready_["status"], ready_["reason"]) == ("False", "Unschedulable")
    assert (degraded["status"], degraded["reason"]) == ("True", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in degraded["message"]
    events = kubectl(
        kube_cluster, "get", "events", "-n", namespace, "--field-selector", "reason=Unschedulable"
    )
    assert "miner/huge" in events.stdout


def test_kubectl_scale_changes_replicas_and_the_operator_keeps_them(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m"))
    wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")
    scaled = kubectl(kube_cluster, "scale", "miner", "m", "-n", namespace, "--replicas=3")
    assert scaled.returncode == 0, scaled.stderr

    def three_ready() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "m")
        status = obj.get("status") or {}
        return obj if (status.get("replicas"), status.get("readyReplicas")) == (3, 3) else None

    wait_for(three_ready, what="3 of 3 replicas ready in the Miner's status", seconds=60)
    assert get(kube_cluster, namespace, "deployment", "m")["spec"]["replicas"] == 3
    scale = get(kube_cluster, namespace, "miner", "m", "--subresource=scale")
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (3, 3)
    assert scale["status"]["selector"] == "kubetensor.io/miner=m"

    # Someone scales the Deployment behind the Miner's back: the operator restores the Miner's count.
    kubectl(kube_cluster, "scale", "deployment", "m", "-n", namespace, "--replicas=1")
    wait_for(
        lambda: get(kube_cluster, namespace, "deployment", "m")["spec"]["replicas"] == 3,
        what="the operator to restore the Deployment to the Miner's 3 replicas",
        seconds=6 * RESYNC_SECONDS,
    )
    time.sleep(2 * RESYNC_SECONDS)
    assert get(kube_cluster, namespace, "deployment", "m")["spec"]["replicas"] == 3
    assert get(kube_cluster, namespace, "miner", "m")["spec"]["replicas"] == 3


def test_a_model_change_rolls_out_without_dropping_below_the_spec_availability(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m", replicas=2))
    wait_for(
        lambda: (get(kube_cluster, namespace, "miner", "m").get("status") or {}).get("readyReplicas") == 2,
        what="2 ready replicas",
    )
    before = get(kube_cluster, namespace, "deployment", "m")["spec"]["template"]
    new_model = '{"spec":{"model":{"name":"org/model-b"}}}'
    patched = kubectl(kube_cluster, "patch", "miner", "m", "-n", namespace, "--type=merge", "-p", new_model)
    assert patched.returncode == 0, patched.stderr

    lowest_available = 2
    deadline = time.monotonic() + 60
    while True:
        deployment = get(kube_cluster, namespace, "deployment", "m")
        status = deployment.get("status") or {}
        lowest_available = min(lowest_available, status.get("availableReplicas", 0))
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        done = (
            args[0] == "org/model-b"
            and status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas")
            == status.get("availableReplicas")
            == status.get("replicas")
            == 2
        )
        if done:
            break
        assert time.monotonic() < deadline, f"the rollout did not finish: {status}"
        time.sleep(0.05)
    # maxUnavailable 0 (the default): never fewer than the 2 replicas available.
    assert lowest_available == 2
    assert deployment["spec"]["template"] != before
    replica_sets = get(kube_cluster, namespace, "replicasets", "-l", "kubetensor.io/miner=m")["items"]
    assert len(replica_sets) == 2

    def rolled_out() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "m")
        progressing = condition(obj, "Progressing")
        complete = progressing.get("reason") == "RolloutComplete" and obj["status"]["observedGeneration"] == 2
        return obj if complete and condition(obj, "Ready").get("status") == "True" else None

    wait_for(rolled_out, what="Progressing=False RolloutComplete for generation 2 and Ready")


async def test_deleting_a_miner_deregisters_its_hotkey_and_removes_its_children(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m"))
    obj = wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")
    assert obj["metadata"]["finalizers"] == ["kubetensor.io/finalizer"]
    uid, hotkey = obj["status"]["uid"], obj["status"]["hotkey"]
    assert condition(obj, "Registered")["status"] == "True"
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        before = {n.hotkey: n.uid for n in (await client.metagraph()).neurons}
    assert before[hotkey] == uid

    deleted = kubectl(kube_cluster, "delete", "miner", "m", "-n", namespace, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr

    def children() -> list[str]:
        found = []
        for kind, name in (("deployment", "m"), ("service", "m"), ("secret", "m-hotkey")):
            if get(kube_cluster, namespace, kind, name) is not None:
                found.append(f"{kind}/{name}")
        found += [
            p["metadata"]["name"]
            for p in get(kube_cluster, namespace, "pods", "-l", "kubetensor.io/miner=m")["items"]
        ]
        return found

    wait_for(lambda: not children(), what="the garbage collector to remove the Miner's children", seconds=60)
    assert get(kube_cluster, namespace, "miner", "m") is None
    events = get(kube_cluster, namespace, "events", "--field-selector", "reason=Deregistered")["items"]
    assert len(events) == 1
    assert f"deregistered uid {uid} (hotkey {hotkey[:16]}...) from subnet {NETUID}" in events[0]["message"]
    assert events[0]["type"] == "Normal"
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        after = {n.hotkey: n.uid for n in (await client.metagraph()).neurons}
    assert hotkey not in after
    assert uid not in after.values()
    # No other uid moved (other tests' namespaces share the consensus service, so some may have left).
    assert all(before.get(key, uid_) == uid_ for key, uid_ in after.items())


async def test_deleting_a_miner_whose_subnet_is_gone_does_not_wait_for_it(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m"))
    obj = wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")
    hotkey = obj["status"]["hotkey"]
    gone = kubectl(kube_cluster, "delete", "subnet", "demo", "-n", namespace, "--timeout=60s")
    assert gone.returncode == 0, gone.stderr

    deleted = kubectl(kube_cluster, "delete", "miner", "m", "-n", namespace, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    events = wait_for(
        lambda: get(kube_cluster, namespace, "events", "--field-selector", "reason=DeregistrationSkipped")[
            "items"
        ],
        what="a DeregistrationSkipped Event",
    )
    assert events[0]["type"] == "Warning"
    assert "Subnet 'demo' is gone" in events[0]["message"]
    # The loopback consensus service outlives the Subnet here, so the hotkey is still on it: the operator
    # did not pretend otherwise.
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        assert hotkey in {n.hotkey for n in (await client.metagraph()).neurons}


def test_a_hotkey_secret_you_provide_is_used_and_never_changed(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    key = Keypair(bytes([77]) * 32)
    apply(kube_cluster, namespace, hotkey_secret("mine", key), subnet(), miner("m", hotkeySecretName="mine"))
    obj = wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")
    assert obj["status"]["hotkey"] == key.hotkey
    secret = get(kube_cluster, namespace, "secret", "mine")
    assert "ownerReferences" not in secret["metadata"]
    assert key.seed.hex() not in operator.log()
    kubectl(kube_cluster, "delete", "miner", "m", "-n", namespace, "--timeout=60s")
    wait_for(
        lambda: get(kube_cluster, namespace, "deployment", "m") is None, what="the Miner's Deployment to go"
    )
    after = get(kube_cluster, namespace, "secret", "mine")
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]


def test_a_hotkey_secret_without_a_seed_is_reported_not_overwritten(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    broken = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"other": "eA=="}}
    apply(kube_cluster, namespace, broken, subnet(), miner("m", hotkeySecretName="bad"))

    def reported() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "m")
        return obj if condition(obj, "Degraded").get("reason") == "HotkeySecretInvalid" else None

    obj = wait_for(reported, what="Degraded=True HotkeySecretInvalid")
    assert "hotkey-seed" in condition(obj, "Ready")["message"]
    assert get(kube_cluster, namespace, "secret", "bad")["data"] == {"other": "eA=="}
    assert get(kube_cluster, namespace, "deployment", "m") is None


def test_nats_credentials_come_from_the_secret_the_subnet_names_and_show_nowhere(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    """A Subnet with ``spec.natsAuth``: its Miner waits, saying why, until the Secret exists and holds
    credentials; then its agent gets the Secret as read-only files, and the password is in no spec,
    status or log."""
    password = "hunter2-" + namespace
    apply(kube_cluster, namespace, subnet(natsAuth={"secretName": "nats-creds"}), miner("m"))

    def reported(reason: str, text: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            obj = get(kube_cluster, namespace, "miner", "m")
            found = condition(obj, "Ready")
            return obj if found.get("reason") == reason and text in found.get("message", "") else None

        return check

    wait_for(reported("NatsAuthSecretInvalid", "'nats-creds'"), what="Ready=False NatsAuthSecretInvalid")
    obj = get(kube_cluster, namespace, "miner", "m")
    assert "not found in namespace" in condition(obj, "Ready")["message"]
    assert "spec.natsAuth.secretName of Subnet 'demo'" in condition(obj, "Ready")["message"]
    assert get(kube_cluster, namespace, "deployment", "m") is None
    # A Secret without the keys: still waiting, and saying which keys it needs.
    encoded = base64.b64encode(password.encode()).decode()
    half = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "nats-creds"},
        "data": {"pass": encoded},
    }
    apply(kube_cluster, namespace, half)
    wait_for(
        reported("NatsAuthSecretInvalid", "needs a non-empty key 'token'"),
        what="the Secret's missing keys reported",
        seconds=30 + 3 * RESYNC_SECONDS,
    )
    good = {**half, "data": {"user": base64.b64encode(b"kt-miner").decode(), "password": encoded}}
    apply(kube_cluster, namespace, good)
    obj = wait_for(
        lambda: ready(kube_cluster, namespace, "miner", "m"),
        what="Miner m Ready once its Subnet's NATS Secret holds credentials",
        seconds=30 + 3 * RESYNC_SECONDS,
    )
    deployment = get(kube_cluster, namespace, "deployment", "m")
    pod = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "nats-auth"]
    assert volume["secret"] == {"secretName": "nats-creds", "defaultMode": 0o400}
    [agent] = [c for c in pod["containers"] if c["name"] == "agent"]
    assert {"name": "nats-auth", "mountPath": "/var/run/kubetensor/nats-auth", "readOnly": True} in agent[
        "volumeMounts"
    ]
    assert {"name": "KT_MINER_NATS_AUTH_DIR", "value": "/var/run/kubetensor/nats-auth"} in agent["env"]
    for where in (json.dumps(deployment), json.dumps(obj), operator.log()):
        assert password not in where
        assert encoded not in where


def test_a_miner_waits_for_its_subnet_and_then_registers(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, miner("m", subnet_name="later"))

    def waiting() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "m")
        return obj if condition(obj, "Ready").get("reason") == "SubnetNotFound" else None

    obj = wait_for(waiting, what="Ready=False SubnetNotFound")
    assert "'later' not found" in condition(obj, "Ready")["message"]
    apply(kube_cluster, namespace, subnet("later"))
    obj = wait_for(
        lambda: ready(kube_cluster, namespace, "miner", "m"),
        what="Miner m Ready once its Subnet exists",
        seconds=30 + 3 * RESYNC_SECONDS,
    )
    assert isinstance(obj["status"]["uid"], int)
    assert condition(obj, "Degraded")["status"] == "False"


INVALID = [
    (miner("m", gpus=1, model={"name": "x", "tensorParallelSize": 2}), "spec.gpus"),
    (miner("m", model={"name": "x", "dtype": "int3"}), "spec.model.dtype"),
    (miner("m", model={"name": "x", "extraArgs": ["--port=1"]}), "spec.model.extraArgs"),
    (miner("m", rollout={"maxUnavailable": 0, "maxSurge": 0}), "spec.rollout"),
    (miner("m", vllm={"resources": {"limits": {"nvidia.com/gpu": 4}}}), "spec.vllm.resources"),
    (miner("m", coldkey="not-hex"), "spec.coldkey"),
    (miner("m", replicas=-1), "spec.replicas"),
    ({**miner("m"), "spec": {"subnet": "demo"}}, "spec.model"),
    (subnet("s", netuid=0), "spec.netuid"),
    (subnet("s", hyperparameters={"alphaLow": 60000, "alphaHigh": 100}), "spec.hyperparameters.alphaLow"),
    (subnet("s", genesisStake={"nothex": 1}), "spec.genesisStake"),
    (subnet("s", genesisStake={"ab" * 32: 1}), "spec.genesisStake"),  # stake comes from the chain's ledger
    (validator("v", resources={"limits": {"nvidia.com/gpu": 1}}), "spec.resources"),
    (subnet("s", natsUrl="nats://kt:hunter2@nats:4222"), "spec.natsUrl"),  # credentials go in a Secret
    (subnet("s", natsUrl="nats://a:4222,tok3n@b:4222"), "spec.natsUrl"),
    (subnet("s", natsUrl="NATS://kt:hunter2@nats:4222"), "spec.natsUrl"),  # any case of scheme
    (subnet("s", natsAuth={"secretName": "Not_A_Name"}), "spec.natsAuth.secretName"),
    (validator("v", env=[{"name": "KT_VALIDATOR_NETUID", "value": "9"}]), "spec.env"),  # the operator's
    (validator("v", env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]), "spec.env[1]"),
    (miner("m", vllm={"env": [{"name": "HF_HOME", "value": "/x"}]}), "spec.vllm.env"),
]  # fmt: skip


def test_invalid_specs_are_refused_by_the_api_server_naming_the_field(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    for doc, field in INVALID:
        result = kubectl(kube_cluster, "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(doc))
        assert result.returncode != 0, f"{field}: the API server accepted {doc['spec']}"
        assert f"{field}:" in result.stderr, f"{field} not named in: {result.stderr}"
    # An immutable field: the subnet of a Miner cannot change.
    apply(kube_cluster, namespace, subnet(), miner("m"))
    moved = kubectl(
        kube_cluster,
        "patch",
        "miner",
        "m",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"subnet":"other"}}',
    )
    assert moved.returncode != 0
    assert "spec.subnet: Invalid value" in moved.stderr
    assert "immutable" in moved.stderr


async def test_metrics_are_refreshed_from_the_consensus_service(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(
        kube_cluster,
        namespace,
        hotkey_secret("staked", VALIDATOR_KEY),
        subnet(),
        miner("m"),
        validator("v", hotkeySecretName="staked"),
    )
    miner_obj = wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")

    def permitted() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "validator", "v")
        status = obj.get("status") or {}
        return (
            obj if status.get("validatorPermit") is True and status.get("stake") == VALIDATOR_STAKE else None
        )

    wait_for(permitted, what="the Validator's status to show its stake and permit", seconds=60)
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        await client.set_weights(
            VALIDATOR_KEY, weights=[(miner_obj["status"]["uid"], 65535)], nonce=time.time_ns()
        )

    def earning() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "miner", "m")
        status = obj.get("status") or {}
        return obj if status.get("incentive", 0) > 0 and status.get("emission", 0) > 0 else None

    earned = wait_for(earning, what="incentive and emission in the Miner's status after an epoch", seconds=60)
    assert 0 < earned["status"]["incentive"] <= 1
    validator_status = wait_for(
        lambda: (s := get(kube_cluster, namespace, "validator", "v")["status"]).get("dividends", 0) > 0 and s,
        what="dividends in the Validator's status",
        seconds=60,
    )
    assert validator_status["trust"] > 0

    subnet_status = wait_for(
        lambda: (
            (s := get(kube_cluster, namespace, "subnet", "demo").get("status") or {}).get("lastSettlement")
            and s
        ),
        what="the Subnet's last settlement",
    )
    head = subnet_status["lastSettlement"]
    assert subnet_status["epoch"] == head["epoch"]
    async with ConsensusClient.connect(operator.consensus_address, netuid=NETUID) as client:
        settled = {r.settlement.epoch: r.settlement.hash for r in await client.settlements()}
    assert settled[head["epoch"]] == head["hash"]


def ready_miners_in_the_cluster(cluster: ControlPlane) -> int:
    """Miners of every namespace (other tests' included) whose Ready condition is True."""
    listed = kubectl(cluster, "get", "miners", "--all-namespaces", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return sum(
        1 for obj in json.loads(listed.stdout)["items"] if condition(obj, "Ready").get("status") == "True"
    )


def test_the_operator_metrics_count_reconciles_ready_miners_and_deregistrations(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    reconciles = "kubetensor_operator_reconciles_total"
    before = {kind: operator.sample(reconciles, kind=kind, outcome="ok") for kind in ("Subnet", "Miner")}
    deregistered = operator.sample(
        "kubetensor_operator_deregistrations_total", kind="Miner", outcome="Deregistered"
    )
    apply(kube_cluster, namespace, subnet(), miner("m1"), miner("m2"))
    for name in ("m1", "m2"):
        wait_for(lambda name=name: ready(kube_cluster, namespace, "miner", name), what=f"Miner {name} Ready")
    # Each Miner was reconciled at least once to get there, the Subnet too (other tests' resources only
    # add to these counters; the operator is shared by the session).
    assert operator.sample(reconciles, kind="Miner", outcome="ok") >= before["Miner"] + 2
    assert operator.sample(reconciles, kind="Subnet", outcome="ok") >= before["Subnet"] + 1
    durations = operator.sample("kubetensor_operator_reconcile_duration_seconds_count", kind="Miner")
    assert durations >= operator.sample(reconciles, kind="Miner", outcome="ok")

    def gauge_counts_ready_miners(at_least: int) -> float | None:
        # Scrape first: a Miner turning Ready between the two reads shows in the next round.
        gauge = operator.sample("kubetensor_operator_resources", kind="Miner", ready="True")
        return gauge if gauge >= at_least and gauge == ready_miners_in_the_cluster(kube_cluster) else None

    wait_for(lambda: gauge_counts_ready_miners(2), what="the Ready gauge to equal the Ready Miners")

    deleted = kubectl(kube_cluster, "delete", "miner", "m2", "-n", namespace, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    assert (
        operator.sample("kubetensor_operator_deregistrations_total", kind="Miner", outcome="Deregistered")
        >= deregistered + 1
    )
    assert get(kube_cluster, namespace, "miner", "m2") is None
    wait_for(lambda: gauge_counts_ready_miners(1), what="the Ready gauge to drop the deleted Miner")


def test_restarting_the_operator_changes_nothing_that_was_right(
    kube_cluster: ControlPlane, operator: OperatorHandle, namespace: str
) -> None:
    apply(kube_cluster, namespace, subnet(), miner("m", replicas=2), validator("v"))
    wait_for(lambda: ready(kube_cluster, namespace, "miner", "m"), what="Miner m Ready")
    wait_for(lambda: ready(kube_cluster, namespace, "validator", "v"), what="Validator v Ready")
    time.sleep(2 * RESYNC_SECONDS)  # let status settle (replica counts, metrics)

    def snapshot() -> dict[str, Any]:
        kinds = "deployments,services,secrets,configmaps,miners,validators"
        items = get(kube_cluster, namespace, kinds)["items"]
        shot: dict[str, Any] = {
            f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items
        }
        for kind, name in (("miner", "m"), ("validator", "v")):
            shot[f"{kind} status"] = get(kube_cluster, namespace, kind, name)["status"]
        return shot

    before = snapshot()
    operator.stop()
    operator.start(install=False)
    time.sleep(3 * RESYNC_SECONDS)  # resume handlers and at least two resync rounds
    after = snapshot()
    assert after == before
