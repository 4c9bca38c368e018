"""The child objects the operator asks for, computed from specs alone (``kubetensor_operator.desired``)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.miner.settings import MinerSettings
from kubetensor.validator.settings import ValidatorSettings
from kubetensor_operator import desired, model
from kubetensor_operator.desired import Images, Owner
from kubetensor_operator.errors import SpecError
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]

IMAGES = Images(kubetensor="registry.example/kubetensor:1", vllm="registry.example/vllm:1")
MINER = Owner(kind="Miner", name="m1", namespace="ns", uid="uid-m1")
VALIDATOR = Owner(kind="Validator", name="v1", namespace="ns", uid="uid-v1")
SUBNET = Owner(kind="Subnet", name="demo", namespace="ns", uid="uid-s1")


SUBNET_SPEC = model.SubnetSpec.parse({"netuid": 7, "natsUrl": "nats://bus:4222", "task": "addition"})


def miner(**spec: Any) -> list[dict[str, Any]]:
    parsed = model.MinerSpec.parse({"subnet": "demo", "model": {"name": "org/model"}, **spec})
    return desired.miner_objects(parsed, owner=MINER, subnet=SUBNET_SPEC, images=IMAGES)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    found: list[dict[str, Any]] = [
        c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name
    ]
    assert len(found) == 1
    return found[0]


def test_miner_requests_and_limits_its_gpus_on_the_vllm_container() -> None:
    deployment = by_kind(miner(gpus=2, model={"name": "org/model", "tensorParallelSize": 2}), "Deployment")
    resources = container(deployment, "vllm")["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "2"
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert "resources" not in container(deployment, "agent")


def test_miner_tolerates_the_gpu_taint_and_keeps_the_users_placement() -> None:
    deployment = by_kind(
        miner(
            tolerations=[{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            nodeSelector={"nvidia.com/gpu.product": "H100"},
            affinity={
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
            },
            runtimeClassName="nvidia",
        ),
        "Deployment",
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["tolerations"] == [
        desired.GPU_TOLERATION,
        {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert "nodeAffinity" in pod["affinity"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


def test_the_gpu_toleration_is_not_duplicated() -> None:
    pod = by_kind(miner(tolerations=[desired.GPU_TOLERATION]), "Deployment")["spec"]["template"]["spec"]
    assert pod["tolerations"] == [desired.GPU_TOLERATION]


def test_every_miner_child_is_owned_by_the_miner_as_controller() -> None:
    for obj in miner():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "kubetensor.io/v1alpha1",
            "kind": "Miner",
            "name": "m1",
            "uid": "uid-m1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["namespace"] == "ns"
        assert obj["metadata"]["labels"][desired.LABEL_MANAGED_BY] == desired.MANAGER


def test_vllm_serves_the_spec_model_with_its_settings_and_extra_args_last() -> None:
    deployment = by_kind(
        miner(
            model={
                "name": "org/model",
                "revision": "abc",
                "dtype": "bfloat16",
                "maxModelLen": 4096,
                "gpuMemoryUtilization": 0.85,
                "extraArgs": ["--enable-prefix-caching"],
            },
            vllm={
                "image": "mine/vllm:2",
                "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}],
            },
        ),
        "Deployment",
    )
    vllm = container(deployment, "vllm")
    assert vllm["image"] == "mine/vllm:2"
    assert vllm["command"] == ["vllm", "serve"]
    assert vllm["args"][0] == "org/model"
    assert {
        "--dtype=bfloat16",
        "--max-model-len=4096",
        "--gpu-memory-utilization=0.85",
        "--revision=abc",
    } <= set(vllm["args"])
    assert vllm["args"][-1] == "--enable-prefix-caching"
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}} in vllm["env"]
    assert vllm["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_the_agent_gets_the_subnet_and_the_hotkey_file_and_the_default_image() -> None:
    deployment = by_kind(miner(), "Deployment")
    agent = container(deployment, "agent")
    env = {e["name"]: e["value"] for e in agent["env"]}
    assert agent["image"] == IMAGES.kubetensor
    assert agent["command"] == ["python", "-m", "kubetensor.miner"]
    assert env["KT_MINER_NETUID"] == "7"
    assert env["KT_MINER_NATS_URL"] == "nats://bus:4222"
    assert env["KT_MINER_CONSENSUS_ADDRESS"] == "demo-consensus.ns.svc:50061"
    assert env["KT_MINER_ENGINE_URL"] == "http://127.0.0.1:8000"
    assert env["KT_MINER_ENGINE_MODEL"] == "org/model"
    assert env["KT_MINER_HOTKEY_FILE"] == "/var/run/kubetensor/hotkey/hotkey-seed"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hotkey"]["secret"] == {"secretName": "m1-hotkey", "defaultMode": 0o400}


def test_model_cache_is_a_claim_or_an_empty_dir() -> None:
    def cache(**spec: Any) -> dict[str, Any]:
        volumes = by_kind(miner(**spec), "Deployment")["spec"]["template"]["spec"]["volumes"]
        return next(v for v in volumes if v["name"] == "model-cache")

    assert cache(modelCache={"claimName": "weights"})["persistentVolumeClaim"] == {"claimName": "weights"}
    assert cache(modelCache={"sizeLimit": "20Gi"})["emptyDir"] == {"sizeLimit": "20Gi"}
    assert cache()["emptyDir"] == {}


def test_rollout_never_drops_below_the_available_replicas_the_spec_allows() -> None:
    deployment = by_kind(miner(replicas=3), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    changed = by_kind(miner(replicas=3, rollout={"maxUnavailable": "25%", "maxSurge": 0}), "Deployment")
    assert changed["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": 0}


def test_a_model_change_changes_the_pod_template_but_not_the_selector() -> None:
    before = by_kind(miner(), "Deployment")
    after = by_kind(miner(model={"name": "org/other"}), "Deployment")
    assert before["spec"]["template"] != after["spec"]["template"]
    assert (
        before["spec"]["selector"]
        == after["spec"]["selector"]
        == {"matchLabels": {"kubetensor.io/miner": "m1"}}
    )
    assert desired.selector("Miner", "m1") == "kubetensor.io/miner=m1"


def test_the_miner_service_exposes_grpc_on_the_miner_pods() -> None:
    service = by_kind(miner(), "Service")
    assert service["spec"]["clusterIP"] == "None"  # headless: clients balance across the pods
    assert service["spec"]["selector"] == {"kubetensor.io/miner": "m1"}
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 50081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]


def test_same_spec_same_objects() -> None:
    assert miner(replicas=2) == miner(replicas=2)


def test_hotkey_secret_is_immutable_typed_and_owned() -> None:
    secret = desired.hotkey_secret(
        owner=MINER, name="m1-hotkey", subnet="demo", seed_hex="ab" * 32, hotkey="cd" * 32
    )
    assert secret["immutable"] is True
    assert secret["type"] == "kubetensor.io/hotkey"
    assert base64.b64decode(secret["data"]["hotkey-seed"]).decode() == "ab" * 32
    assert secret["metadata"]["annotations"] == {"kubetensor.io/hotkey": "cd" * 32}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-m1"
    assert desired.create_only(secret)


def test_validator_is_one_replica_recreated_without_gpus() -> None:
    spec = model.ValidatorSpec.parse({"subnet": "demo", "hotkeySecretName": "mine"})
    (deployment,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=SUBNET_SPEC, images=IMAGES)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert "resources" not in pod["containers"][0]
    assert pod["volumes"][0]["secret"]["secretName"] == "mine"


def _settings_env(
    container_: dict[str, Any], settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """The service's own settings class, loaded from exactly the environment the container gets."""
    prefix = str(settings.model_config.get("env_prefix"))
    env = {e["name"]: e["value"] for e in container_["env"] if "value" in e}
    assert all(name.startswith(prefix) for name in env), env
    assert {name.removeprefix(prefix).lower() for name in env} <= set(settings.model_fields)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings()


def test_the_miner_agent_environment_is_what_the_miner_process_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_env(container(by_kind(miner(), "Deployment"), "agent"), MinerSettings, monkeypatch)
    assert isinstance(settings, MinerSettings)
    assert (settings.netuid, settings.listen, settings.engine_model) == (7, "[::]:50081", "org/model")


def test_the_miner_agent_keeps_its_replay_journal_on_an_empty_dir_of_the_pod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = by_kind(miner(), "Deployment")
    agent = container(deployment, "agent")
    settings = _settings_env(agent, MinerSettings, monkeypatch)
    assert isinstance(settings, MinerSettings)
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert str(settings.state_dir) == mounts["state"]["mountPath"] == desired.MINER_STATE_DIR
    assert "readOnly" not in mounts["state"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}}
    assert all(m["name"] != "state" for m in container(deployment, "vllm")["volumeMounts"])


def test_the_validator_environment_is_what_the_validator_process_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = model.ValidatorSpec.parse({"subnet": "demo"})
    (deployment,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=SUBNET_SPEC, images=IMAGES)
    settings = _settings_env(container(deployment, "validator"), ValidatorSettings, monkeypatch)
    assert isinstance(settings, ValidatorSettings)
    assert (settings.netuid, settings.task_type, settings.nats_url) == (7, "addition", "nats://bus:4222")
    assert str(settings.state_path).startswith("/var/lib/kubetensor/")


AUTH_SUBNET_SPEC = SUBNET_SPEC.model_copy(update={"nats_auth": model.NatsAuth(secret_name="nats-creds")})


def _auth_parts(deployment: dict[str, Any], name: str) -> tuple[list[Any], list[Any], list[Any]]:
    """The NATS credentials' environment, mounts and volumes of container ``name``."""
    found = container(deployment, name)
    env = [e for e in found["env"] if e["name"].endswith("_NATS_AUTH_DIR")]
    mounts = [m for m in found["volumeMounts"] if m["name"] == "nats-auth"]
    volumes = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-auth"]
    return env, mounts, volumes


def test_without_nats_auth_no_pod_gets_credentials() -> None:
    spec = model.ValidatorSpec.parse({"subnet": "demo"})
    (validator,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=SUBNET_SPEC, images=IMAGES)
    miner_deployment = by_kind(miner(), "Deployment")
    for name in ("agent", "vllm"):
        assert _auth_parts(miner_deployment, name) == ([], [], [])
    assert _auth_parts(validator, "validator") == ([], [], [])


def test_nats_auth_mounts_the_secret_read_only_where_the_services_read_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = model.MinerSpec.parse({"subnet": "demo", "model": {"name": "org/model"}})
    miner_deployment = by_kind(
        desired.miner_objects(parsed, owner=MINER, subnet=AUTH_SUBNET_SPEC, images=IMAGES), "Deployment"
    )
    spec = model.ValidatorSpec.parse({"subnet": "demo"})
    (validator,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=AUTH_SUBNET_SPEC, images=IMAGES)
    volume = {"name": "nats-auth", "secret": {"secretName": "nats-creds", "defaultMode": 0o400}}
    mount = {"name": "nats-auth", "mountPath": desired.NATS_AUTH_DIR, "readOnly": True}
    for deployment, name, settings_class in (
        (miner_deployment, "agent", MinerSettings),
        (validator, "validator", ValidatorSettings),
    ):
        env, mounts, volumes = _auth_parts(deployment, name)
        assert (mounts, volumes) == ([mount], [volume])
        assert [e["value"] for e in env] == [desired.NATS_AUTH_DIR]
        settings = _settings_env(container(deployment, name), settings_class, monkeypatch)
        assert str(settings.nats_auth_dir) == desired.NATS_AUTH_DIR  # type: ignore[attr-defined]
        # The URL stays as the Subnet has it; the credentials are joined to it only in the process.
        assert settings.nats_url == "nats://bus:4222"  # type: ignore[attr-defined]
    # vLLM has no business with NATS: the pod's volume is not mounted there.
    assert _auth_parts(miner_deployment, "vllm")[:2] == ([], [])


@pytest.mark.parametrize(
    "url",
    [
        "nats://kt:pw@bus:4222",
        "tok3n@bus:4222",
        "nats://a:4222, nats://u:p@b:4222",
        "tls://u:p@b:4222",
        "NATS://kt:pw@bus:4222",  # a scheme is case-insensitive
        "nats://a:4222,\tNats://tok@b:4222",
    ],
)
def test_a_nats_url_with_credentials_is_refused_naming_the_field(url: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.natsUrl: must not carry credentials") as caught:
        model.SubnetSpec.parse({"netuid": 7, "natsUrl": url})
    assert "spec.natsAuth.secretName" in str(caught.value)


def test_the_env_names_a_spec_may_not_use_are_exactly_those_the_operator_sets() -> None:
    spec = model.ValidatorSpec.parse({"subnet": "demo"})
    (validator,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=AUTH_SUBNET_SPEC, images=IMAGES)
    assert {e["name"] for e in container(validator, "validator")["env"]} == model.VALIDATOR_OPERATOR_ENV
    vllm = container(by_kind(miner(), "Deployment"), "vllm")
    assert {e["name"] for e in vllm["env"]} == model.VLLM_OPERATOR_ENV
    # The CRDs' CEL rules refuse the same names at the API server.
    crds = ROOT / "manifests" / "crds"
    validators = (crds / "kubetensor.io_validators.yaml").read_text()
    assert all(f"'{name}'" in validators for name in model.VALIDATOR_OPERATOR_ENV)
    assert "e.name == 'HF_HOME'" in (crds / "kubetensor.io_miners.yaml").read_text()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (model.ValidatorSpec, {"subnet": "demo", "env": [{"name": "KT_VALIDATOR_NETUID", "value": "9"}]}),
        (
            model.MinerSpec,
            {"subnet": "demo", "model": {"name": "m"}, "vllm": {"env": [{"name": "HF_HOME", "value": "/x"}]}},
        ),
    ],
    ids=["validator", "vllm"],
)
def test_an_env_entry_the_operator_sets_is_refused_naming_it(spec: Any, field: dict[str, Any]) -> None:
    refused = r"spec\.(vllm\.)?env: (KT_VALIDATOR_NETUID|HF_HOME): set by the operator"
    with pytest.raises(SpecError, match=refused):
        spec.parse(field)


def test_other_env_entries_pass_through() -> None:
    own = {"name": "KT_VALIDATOR_ROUND_SECONDS", "value": "3"}
    spec = model.ValidatorSpec.parse({"subnet": "demo", "env": [own]})
    (validator,) = desired.validator_objects(spec, owner=VALIDATOR, subnet=SUBNET_SPEC, images=IMAGES)
    assert own in container(validator, "validator")["env"]


def subnet(**spec: Any) -> list[dict[str, Any]]:
    return desired.subnet_objects(model.SubnetSpec.parse({"netuid": 3, **spec}), owner=SUBNET, images=IMAGES)


def test_subnet_config_map_holds_settings_the_consensus_process_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = by_kind(
        subnet(
            hyperparameters={"tempo": 99, "yuma3On": True},
            genesisStake={"ab" * 32: 5},
            chain={"enabled": False},
        ),
        "ConfigMap",
    )
    data = config["data"]
    assert data["KT_CONSENSUS_NETUID"] == "3"
    assert data["KT_CONSENSUS_TEMPO"] == "99"
    assert data["KT_CONSENSUS_YUMA3_ON"] == "true"
    fields = {name.upper() for name in ConsensusSettings.model_fields}
    assert {key.removeprefix("KT_CONSENSUS_") for key in data} <= fields
    # The pod reads them through envFrom: parse them the same way.
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = ConsensusSettings()
    assert settings.tempo == 99
    assert settings.yuma3_on is True
    assert settings.genesis_stake == {"ab" * 32: 5}
    assert settings.chain_address is None


def test_with_the_chain_consensus_reads_stake_from_the_sidecar_and_genesis_stake_is_refused() -> None:
    data = by_kind(subnet(chain={"genesisBalances": {"cd" * 32: 9}}), "ConfigMap")["data"]
    assert data["KT_CONSENSUS_CHAIN_ADDRESS"] == "127.0.0.1:50071"
    chain = container(by_kind(subnet(chain={"genesisBalances": {"cd" * 32: 9}}), "Deployment"), "chain")
    assert {"name": "KT_CHAIN_GENESIS_BALANCES", "value": '{"' + "cd" * 32 + '": 9}'} in chain["env"]
    with pytest.raises(SpecError) as caught:
        model.SubnetSpec.parse({"netuid": 3, "genesisStake": {"ab" * 32: 5}})
    assert caught.value.field == "spec.genesisStake"


def test_without_the_chain_there_is_no_sidecar_and_no_chain_port() -> None:
    objects = subnet(chain={"enabled": False})
    assert "initContainers" not in by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert [p["port"] for p in by_kind(objects, "Service")["spec"]["ports"]] == [50061]


def test_subnet_runs_consensus_with_the_chain_as_a_native_sidecar_on_the_ledger() -> None:
    deployment = by_kind(subnet(), "Deployment")
    assert deployment["metadata"]["name"] == "demo-consensus"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    chain = container(deployment, "chain")
    assert chain["restartPolicy"] == "Always"
    consensus = container(deployment, "consensus")
    assert consensus["envFrom"] == [{"configMapRef": {"name": "demo-hyperparameters"}}]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "ledger", "persistentVolumeClaim": {"claimName": "demo-ledger"}}]
    service = by_kind(subnet(), "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [50061, 50071]


def test_ledger_claim_is_owned_only_when_its_reclaim_policy_is_delete() -> None:
    retained = by_kind(subnet(), "PersistentVolumeClaim")
    assert "ownerReferences" not in retained["metadata"]
    assert retained["spec"]["resources"]["requests"]["storage"] == "1Gi"
    deleted = by_kind(
        subnet(ledger={"reclaimPolicy": "Delete", "storageClassName": "fast"}), "PersistentVolumeClaim"
    )
    assert deleted["metadata"]["ownerReferences"][0]["kind"] == "Subnet"
    assert deleted["spec"]["storageClassName"] == "fast"
    assert not [o for o in subnet(ledger={"ephemeral": True}) if o["kind"] == "PersistentVolumeClaim"]


def test_a_hyperparameter_change_restarts_the_consensus_pod() -> None:
    def digest(**spec: Any) -> str:
        annotations = by_kind(subnet(**spec), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations[desired.ANNOTATION_HYPERPARAMETERS])

    assert digest() == digest()
    assert digest() != digest(hyperparameters={"tempo": 10})


@pytest.mark.parametrize(
    ("change", "drifts"),
    [
        (lambda live: live["spec"].update(revisionHistoryLimit=10), False),
        (lambda live: live["metadata"].update(resourceVersion="9", uid="x"), False),
        (
            lambda live: live["spec"]["template"]["spec"]["containers"][0].update(
                terminationMessagePath="/x"
            ),
            False,
        ),
        (lambda live: live["spec"].update(replicas=5), True),
        (lambda live: live["spec"]["template"]["spec"]["tolerations"].pop(), True),
        (lambda live: live["metadata"]["labels"].pop(desired.LABEL_SUBNET), True),
    ],
)
def test_drift_ignores_server_defaults_and_catches_changes(change: Any, drifts: bool) -> None:
    want = by_kind(miner(), "Deployment")
    live = copy.deepcopy(want)
    change(live)
    assert desired.drifted(want, live) is drifts
    assert desired.drifted(want, None)


def test_every_kubetensor_container_serves_metrics_on_a_named_port() -> None:
    spec = model.ValidatorSpec.parse({"subnet": "demo"})
    (validator_deployment,) = desired.validator_objects(
        spec, owner=VALIDATOR, subnet=SUBNET_SPEC, images=IMAGES
    )
    pods = [
        ("agent", by_kind(miner(), "Deployment")["spec"]["template"]["spec"]["containers"]),
        ("validator", validator_deployment["spec"]["template"]["spec"]["containers"]),
    ]
    subnet_pod = by_kind(subnet(), "Deployment")["spec"]["template"]["spec"]
    pods.append(("consensus", subnet_pod["containers"]))
    pods.append(("chain", subnet_pod["initContainers"]))
    for name, containers in pods:
        c = next(c for c in containers if c["name"] == name)
        listen = next(e["value"] for e in c["env"] if e["name"].endswith("_METRICS_LISTEN"))
        port = int(listen.rpartition(":")[2])
        assert {"name": "chain-metrics" if name == "chain" else "metrics", "containerPort": port} in [
            {"name": p["name"], "containerPort": p["containerPort"]} for p in c["ports"]
        ], (name, c["ports"])
    ports = [
        p["containerPort"]
        for c in subnet_pod["containers"] + subnet_pod["initContainers"]
        for p in c["ports"]
    ]
    assert len(ports) == len(set(ports)), "two containers of the consensus pod claim one port"
