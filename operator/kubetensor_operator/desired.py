"""The child objects a Subnet, Miner or Validator asks for: pure functions, no I/O, no kopf.

``handlers`` calls these with a parsed spec (``model``) and applies the result with ``kube``; the unit
tests use them as the oracle. Every child carries an owner reference to its custom resource (so the
garbage collector removes it with its owner), the labels below, and nothing that changes between two
calls with the same input (server-side apply of an unchanged object is then a no-op, and ``drifted``
is false for an object nobody else touched).

Children:

- Subnet ``<name>``: ConfigMap ``<name>-hyperparameters`` (the ``KT_CONSENSUS_*`` settings), the ledger
  PersistentVolumeClaim ``<name>-ledger`` (owned only with ``ledger.reclaimPolicy: Delete``; absent with
  ``ledger.ephemeral``; created once, then only its storage request grows with ``ledger.size``: see
  ``ledger_resize``), Deployment ``<name>-consensus`` (one replica, ``Recreate``: the consensus
  container plus the chain as a native sidecar, both on the ledger volume) and its Service.
- Miner ``<name>``: the hotkey Secret (``hotkey_secret``; created once, never patched), Deployment
  ``<name>`` (the vLLM container requesting ``nvidia.com/gpu`` plus the miner agent, whose replay
  journal is on an emptyDir), headless Service ``<name>`` (gRPC).
- Validator ``<name>``: the hotkey Secret, Deployment ``<name>`` (one replica, ``Recreate``: one signer
  per hotkey).

Every kubetensor container serves Prometheus ``/metrics`` on a port named ``metrics`` (``chain-metrics``
for the chain sidecar, which shares the consensus pod), so a PodMonitor can select it by name.

``otel`` (the operator's ``OTEL_*`` variables) is set on every kubetensor container (consensus, chain,
miner agent, validator; not vLLM, which has its own tracing flags), after the ``KT_*`` settings; a name
the spec's own ``env`` sets is left to the spec.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetensor_operator.model import (
    API_VERSION,
    GPU_RESOURCE,
    EnvVar,
    Manifest,
    MinerSpec,
    Placement,
    SubnetSpec,
    ValidatorSpec,
    quantity_value,
)

MANAGER = "kubetensor-operator"
"""Field manager of every server-side apply, and the value of the managed-by label."""

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_SUBNET = "kubetensor.io/subnet"
LABEL_MINER = "kubetensor.io/miner"
LABEL_VALIDATOR = "kubetensor.io/validator"
ANNOTATION_HOTKEY = "kubetensor.io/hotkey"
ANNOTATION_HYPERPARAMETERS = "kubetensor.io/hyperparameters-sha256"

SECRET_TYPE = "kubetensor.io/hotkey"
SECRET_SEED_KEY = "hotkey-seed"
"""Key of the hex ed25519 seed in a hotkey Secret (``kubetensor.core.keys.Keypair.from_seed_hex``)."""
HOTKEY_DIR = "/var/run/kubetensor/hotkey"
NATS_AUTH_DIR = "/var/run/kubetensor/nats-auth"
"""Where a Subnet's ``spec.natsAuth`` Secret is mounted in its miners' and validators' pods (their
``KT_*_NATS_AUTH_DIR``): files ``token``, or ``user`` and ``password`` (``kubetensor.core.natsauth``
reads them and names the keys)."""
MINER_STATE_DIR = "/var/lib/kubetensor/miner"
"""The miner agent's ``KT_MINER_STATE_DIR`` (its replay journal), on an emptyDir of the pod."""
LEDGER_DIR = "/var/lib/kubetensor"

CONSENSUS_PORT = 50061
CHAIN_PORT = 50071
MINER_PORT = 50081
VALIDATOR_PORT = 50091
VLLM_PORT = 8000
METRICS_PORT = 9090
"""Prometheus ``/metrics`` of the consensus, miner agent and validator containers (port name ``metrics``)."""
CHAIN_METRICS_PORT = 9091
"""The chain sidecar's ``/metrics`` (port name ``chain-metrics``; it shares the consensus pod)."""
CONSENSUS_HEALTH_SERVICE = "kubetensor.v1.ConsensusService"

GPU_TOLERATION: Manifest = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
"""Tolerates the taint GPU node pools carry (``nvidia.com/gpu=present:NoSchedule`` and the like)."""

CREATE_ONLY_KINDS = frozenset({"Secret", "PersistentVolumeClaim"})
"""Kinds created once and never applied again: a hotkey must not be overwritten, a claim's spec is
immutable (but for its storage request, which only ``ledger_resize`` changes)."""


@dataclass(frozen=True)
class Owner:
    """The custom resource children belong to."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(kind=body["kind"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


@dataclass(frozen=True)
class Images:
    """Default images (a spec's ``image`` fields override them); a component's ``""``: ``kubetensor``."""

    kubetensor: str
    vllm: str
    consensus: str = ""
    chain: str = ""
    miner: str = ""
    validator: str = ""

    def of(self, component: str) -> str:
        """The default image of ``component`` (``consensus``, ``chain``, ``miner`` or ``validator``)."""
        image: str = getattr(self, component)
        return image or self.kubetensor


def owner_reference(owner: Owner) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(
    name: str, *, owner: Owner, labels: Mapping[str, str], owned: bool = True, annotations: Mapping[str, str]
) -> Manifest:
    meta: Manifest = {"name": name, "namespace": owner.namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    if owned:
        meta["ownerReferences"] = [owner_reference(owner)]
    return meta


def labels(owner: Owner, *, component: str, subnet: str) -> dict[str, str]:
    """Labels of every child (and of its pods)."""
    return {
        LABEL_NAME: "kubetensor",
        LABEL_COMPONENT: component,
        LABEL_INSTANCE: owner.name,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_SUBNET: subnet,
    }


def selector_labels(kind: str, name: str) -> dict[str, str]:
    """The Deployment selector (immutable, so it never changes for a given resource)."""
    if kind == "Miner":
        return {LABEL_MINER: name}
    if kind == "Validator":
        return {LABEL_VALIDATOR: name}
    return {LABEL_SUBNET: name, LABEL_COMPONENT: "consensus"}


def selector(kind: str, name: str) -> str:
    """``selector_labels`` as a label selector string (``status.selector`` for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(kind, name).items()))


def workload_name(kind: str, name: str) -> str:
    """Name of the Deployment (and Service) of a resource."""
    return f"{name}-consensus" if kind == "Subnet" else name


def consensus_address(subnet: str, namespace: str) -> str:
    """In-cluster host:port of a subnet's consensus service."""
    return f"{subnet}-consensus.{namespace}.svc:{CONSENSUS_PORT}"


def hotkey_secret_name(name: str, configured: str | None) -> str:
    return configured or f"{name}-hotkey"


def hotkey_secret(*, owner: Owner, name: str, subnet: str, seed_hex: str, hotkey: str) -> Manifest:
    """A new hotkey Secret: immutable (never overwritten), owned by the resource it was generated for."""
    component = owner.kind.lower()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            name,
            owner=owner,
            labels=labels(owner, component=component, subnet=subnet),
            annotations={ANNOTATION_HOTKEY: hotkey},
        ),
        "type": SECRET_TYPE,
        "immutable": True,
        "data": {SECRET_SEED_KEY: base64.b64encode(seed_hex.encode()).decode()},
    }


def create_only(manifest: Manifest) -> bool:
    return manifest["kind"] in CREATE_ONLY_KINDS


# -- pods ---------------------------------------------------------------------------------------------


def _env(
    values: Mapping[str, str], extra: Sequence[EnvVar] = (), *, otel: Mapping[str, str] | None = None
) -> list[Manifest]:
    own = [e.manifest() for e in extra]
    # A list-map keyed by name: a duplicate would make server-side apply refuse the whole object.
    taken = set(values) | {e["name"] for e in own}
    passed = {k: v for k, v in (otel or {}).items() if k not in taken}
    return [{"name": k, "value": v} for k, v in {**values, **passed}.items()] + own


def _tolerations(placement: Placement, *, gpu: bool) -> list[Manifest]:
    own = [t.manifest() for t in placement.tolerations]
    if gpu and GPU_TOLERATION not in own:
        own.insert(0, dict(GPU_TOLERATION))
    return own


def _pod_spec(
    placement: Placement,
    *,
    containers: list[Manifest],
    volumes: list[Manifest],
    gpu: bool,
    init_containers: list[Manifest] | None = None,
) -> Manifest:
    spec: Manifest = {
        "automountServiceAccountToken": False,
        # Service links would put FOO_SERVICE_HOST variables into KT_*-prefixed settings' environment.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    spec["containers"] = containers
    if volumes:
        spec["volumes"] = volumes
    tolerations = _tolerations(placement, gpu=gpu)
    if tolerations:
        spec["tolerations"] = tolerations
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.affinity:
        spec["affinity"] = placement.affinity
    if placement.runtime_class_name:
        spec["runtimeClassName"] = placement.runtime_class_name
    return spec


def _deployment(
    owner: Owner,
    *,
    name: str,
    labels_: Mapping[str, str],
    replicas: int,
    strategy: Manifest,
    pod_spec: Manifest,
    pod_annotations: Mapping[str, str] | None = None,
) -> Manifest:
    select = selector_labels(owner.kind, owner.name)
    template_meta: Manifest = {"labels": {**labels_, **select}}
    if pod_annotations:
        template_meta["annotations"] = dict(pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, owner=owner, labels=labels_, annotations={}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": select},
            "strategy": strategy,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def _service(
    owner: Owner, *, name: str, labels_: Mapping[str, str], ports: list[Manifest], headless: bool = False
) -> Manifest:
    spec: Manifest = {"type": "ClusterIP"}
    if headless:
        spec["clusterIP"] = "None"
    spec["selector"] = selector_labels(owner.kind, owner.name)
    spec["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, owner=owner, labels=labels_, annotations={}),
        "spec": spec,
    }


def _grpc_port(name: str, port: int) -> Manifest:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP", "appProtocol": "grpc"}


def _container_port(name: str, port: int) -> Manifest:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _resources(base: Manifest, *, gpus: int = 0) -> Manifest:
    out = {k: dict(v) for k, v in base.items()}
    if gpus:
        # Extended resources must be requested and limited alike; set both explicitly.
        out.setdefault("requests", {})[GPU_RESOURCE] = str(gpus)
        out.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)
    return out


def _with_resources(container: Manifest, resources: Manifest) -> Manifest:
    if resources:
        container["resources"] = resources
    return container


# -- Miner --------------------------------------------------------------------------------------------


def vllm_args(spec: MinerSpec) -> list[str]:
    """``vllm serve`` arguments for the spec's model (the user's extraArgs last)."""
    model = spec.model
    args = [
        model.name,
        "--host=0.0.0.0",
        f"--port={VLLM_PORT}",
        f"--served-model-name={model.name}",
        f"--dtype={model.dtype}",
        f"--tensor-parallel-size={model.tensor_parallel_size}",
        f"--gpu-memory-utilization={model.gpu_memory_utilization:g}",
    ]
    if model.revision:
        args.append(f"--revision={model.revision}")
    if model.max_model_len is not None:
        args.append(f"--max-model-len={model.max_model_len}")
    args.extend(model.extra_args)
    return args


def _nats_auth(subnet: SubnetSpec, *, prefix: str) -> tuple[dict[str, str], list[Manifest], list[Manifest]]:
    """The environment, volume mounts and volumes that give a container the subnet's NATS credentials
    (none without ``spec.natsAuth``): the Secret as read-only files, never as environment values."""
    if subnet.nats_auth is None:
        return {}, [], []
    env = {f"{prefix}NATS_AUTH_DIR": NATS_AUTH_DIR}
    mounts = [{"name": "nats-auth", "mountPath": NATS_AUTH_DIR, "readOnly": True}]
    volumes = [
        {"name": "nats-auth", "secret": {"secretName": subnet.nats_auth.secret_name, "defaultMode": 0o400}}
    ]
    return env, mounts, volumes


def miner_objects(
    spec: MinerSpec,
    *,
    owner: Owner,
    subnet: SubnetSpec,
    images: Images,
    otel: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """The Miner's Deployment and Service (its hotkey Secret comes from ``hotkey_secret``).

    The agent's environment is ``kubetensor.miner.settings.MinerSettings`` (a unit test checks the names).
    """
    lab = labels(owner, component="miner", subnet=spec.subnet)
    cache = spec.model_cache
    auth_env, auth_mounts, auth_volumes = _nats_auth(subnet, prefix="KT_MINER_")
    health = {"httpGet": {"path": "/health", "port": "http"}}
    vllm = _with_resources(
        {
            "name": "vllm",
            "image": spec.vllm.image or images.vllm,
            "command": ["vllm", "serve"],
            "args": vllm_args(spec),
            "env": _env({"HF_HOME": cache.mount_path}, spec.vllm.env),
            "ports": [_container_port("http", VLLM_PORT)],
            # Loading weights can take long; the startup probe allows an hour before liveness applies.
            "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 360},
            "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 4},
            "volumeMounts": [
                {"name": "model-cache", "mountPath": cache.mount_path},
                {"name": "shm", "mountPath": "/dev/shm"},
            ],
        },
        _resources(spec.vllm.resources.manifest(), gpus=spec.gpus),
    )
    agent = _with_resources(
        {
            "name": "agent",
            "image": spec.agent.image or images.of("miner"),
            "command": ["python", "-m", "kubetensor.miner"],
            "env": _env(
                {
                    "KT_MINER_LISTEN": f"[::]:{MINER_PORT}",
                    "KT_MINER_NETUID": str(subnet.netuid),
                    "KT_MINER_NATS_URL": subnet.nats_url,
                    "KT_MINER_CONSENSUS_ADDRESS": consensus_address(spec.subnet, owner.namespace),
                    "KT_MINER_ENGINE_URL": f"http://127.0.0.1:{VLLM_PORT}",
                    "KT_MINER_ENGINE_MODEL": spec.model.name,
                    "KT_MINER_HOTKEY_FILE": f"{HOTKEY_DIR}/{SECRET_SEED_KEY}",
                    "KT_MINER_METRICS_LISTEN": f"[::]:{METRICS_PORT}",
                    "KT_MINER_STATE_DIR": MINER_STATE_DIR,
                    **auth_env,
                },
                otel=otel,
            ),
            "ports": [_container_port("grpc", MINER_PORT), _container_port("metrics", METRICS_PORT)],
            "readinessProbe": {"grpc": {"port": MINER_PORT}, "periodSeconds": 5},
            "volumeMounts": [
                {"name": "hotkey", "mountPath": HOTKEY_DIR, "readOnly": True},
                {"name": "state", "mountPath": MINER_STATE_DIR},
                *auth_mounts,
            ],
        },
        spec.agent.resources.manifest(),
    )
    if cache.claim_name:
        cache_volume: Manifest = {
            "name": "model-cache",
            "persistentVolumeClaim": {"claimName": cache.claim_name},
        }
    else:
        cache_volume = {
            "name": "model-cache",
            "emptyDir": {"sizeLimit": cache.size_limit} if cache.size_limit else {},
        }
    volumes = [
        cache_volume,
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.vllm.shm_size}},
        {
            "name": "hotkey",
            "secret": {
                "secretName": hotkey_secret_name(owner.name, spec.hotkey_secret_name),
                "defaultMode": 0o400,
            },
        },
        # The replay journal: an emptyDir outlives a restart of the agent container (not the pod).
        {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}},
        *auth_volumes,
    ]
    rolling = {"maxUnavailable": spec.rollout.max_unavailable, "maxSurge": spec.rollout.max_surge}
    deployment = _deployment(
        owner,
        name=workload_name("Miner", owner.name),
        labels_=lab,
        replicas=spec.replicas,
        strategy={"type": "RollingUpdate", "rollingUpdate": rolling},
        pod_spec=_pod_spec(spec, containers=[vllm, agent], volumes=volumes, gpu=True),
    )
    # Headless: DNS lists every ready pod, so a gRPC client balances calls across replicas (a virtual
    # IP would pin its long-lived HTTP/2 connection to one pod), and a thousand Miners use no service IPs.
    service = _service(
        owner, name=owner.name, labels_=lab, ports=[_grpc_port("grpc", MINER_PORT)], headless=True
    )
    return [deployment, service]


# -- Validator ----------------------------------------------------------------------------------------


def validator_objects(
    spec: ValidatorSpec,
    *,
    owner: Owner,
    subnet: SubnetSpec,
    images: Images,
    otel: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """The Validator's Deployment (its hotkey Secret comes from ``hotkey_secret``).

    The environment is ``kubetensor.validator.settings.ValidatorSettings`` (a unit test checks the names).
    """
    lab = labels(owner, component="validator", subnet=spec.subnet)
    auth_env, auth_mounts, auth_volumes = _nats_auth(subnet, prefix="KT_VALIDATOR_")
    container = _with_resources(
        {
            "name": "validator",
            "image": spec.image or images.of("validator"),
            "command": ["python", "-m", "kubetensor.validator"],
            "env": _env(
                {
                    "KT_VALIDATOR_LISTEN": f"[::]:{VALIDATOR_PORT}",
                    "KT_VALIDATOR_NETUID": str(subnet.netuid),
                    "KT_VALIDATOR_NATS_URL": subnet.nats_url,
                    "KT_VALIDATOR_TASK_TYPE": subnet.task,
                    "KT_VALIDATOR_CONSENSUS_ADDRESS": consensus_address(spec.subnet, owner.namespace),
                    "KT_VALIDATOR_HOTKEY_FILE": f"{HOTKEY_DIR}/{SECRET_SEED_KEY}",
                    # Scores survive container restarts (not a move to another node: an emptyDir).
                    "KT_VALIDATOR_STATE_PATH": f"{LEDGER_DIR}/validator-state.json",
                    "KT_VALIDATOR_METRICS_LISTEN": f"[::]:{METRICS_PORT}",
                    **auth_env,
                },
                spec.env,
                otel=otel,
            ),
            "ports": [_container_port("grpc", VALIDATOR_PORT), _container_port("metrics", METRICS_PORT)],
            "readinessProbe": {"grpc": {"port": VALIDATOR_PORT}, "periodSeconds": 5},
            "volumeMounts": [
                {"name": "hotkey", "mountPath": HOTKEY_DIR, "readOnly": True},
                {"name": "state", "mountPath": LEDGER_DIR},
                *auth_mounts,
            ],
        },
        spec.resources.manifest(),
    )
    volumes = [
        {
            "name": "hotkey",
            "secret": {
                "secretName": hotkey_secret_name(owner.name, spec.hotkey_secret_name),
                "defaultMode": 0o400,
            },
        },
        {"name": "state", "emptyDir": {}},
        *auth_volumes,
    ]
    deployment = _deployment(
        owner,
        name=workload_name("Validator", owner.name),
        labels_=lab,
        replicas=1,
        # Two pods of one hotkey would race each other's nonces: never run both.
        strategy={"type": "Recreate"},
        pod_spec=_pod_spec(spec, containers=[container], volumes=volumes, gpu=False),
    )
    return [deployment]


# -- Subnet -------------------------------------------------------------------------------------------


def _upper_snake(name: str) -> str:
    return name.upper()


def consensus_env(spec: SubnetSpec) -> dict[str, str]:
    """The ``KT_CONSENSUS_*`` settings of the subnet (the hyperparameters ConfigMap's data)."""
    env = {
        "KT_CONSENSUS_NETUID": str(spec.netuid),
        "KT_CONSENSUS_BLOCK_SECONDS": f"{spec.block_seconds:g}",
    }
    for field, value in spec.hyperparameters.model_dump().items():
        env[f"KT_CONSENSUS_{_upper_snake(field)}"] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    if spec.genesis_stake:
        env["KT_CONSENSUS_GENESIS_STAKE"] = json.dumps(dict(sorted(spec.genesis_stake.items())))
    if spec.chain.enabled:
        # The chain runs in the same pod: stake is read from its ledger, settlements go to it.
        env["KT_CONSENSUS_CHAIN_ADDRESS"] = f"127.0.0.1:{CHAIN_PORT}"
    return env


def _digest(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()


def subnet_objects(
    spec: SubnetSpec, *, owner: Owner, images: Images, otel: Mapping[str, str] | None = None
) -> list[Manifest]:
    """ConfigMap, ledger claim (unless ephemeral), consensus Deployment and Service of a Subnet."""
    lab = labels(owner, component="consensus", subnet=owner.name)
    config_name = f"{owner.name}-hyperparameters"
    data = consensus_env(spec)
    config_map: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(config_name, owner=owner, labels=lab, annotations={}),
        "data": data,
    }
    objects = [config_map]
    claim_name = f"{owner.name}-ledger"
    if spec.ledger.ephemeral:
        ledger_volume: Manifest = {"name": "ledger", "emptyDir": {}}
    else:
        ledger_volume = {"name": "ledger", "persistentVolumeClaim": {"claimName": claim_name}}
        claim_spec: Manifest = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.ledger.size}},
        }
        if spec.ledger.storage_class_name:
            claim_spec["storageClassName"] = spec.ledger.storage_class_name
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": _meta(
                    claim_name,
                    owner=owner,
                    labels=lab,
                    owned=spec.ledger.reclaim_policy == "Delete",
                    annotations={},
                ),
                "spec": claim_spec,
            }
        )
    mount = [{"name": "ledger", "mountPath": LEDGER_DIR}]
    chain_env = {
        "KT_CHAIN_LISTEN": f"[::]:{CHAIN_PORT}",
        "KT_CHAIN_LEDGER_PATH": f"{LEDGER_DIR}/chain-ledger.sqlite3",
        "KT_CHAIN_AUTHORITY_KEY_PATH": f"{LEDGER_DIR}/chain-authority.key",
        "KT_CHAIN_METRICS_LISTEN": f"[::]:{CHAIN_METRICS_PORT}",
    }
    if spec.chain.genesis_balances:
        chain_env["KT_CHAIN_GENESIS_BALANCES"] = json.dumps(dict(sorted(spec.chain.genesis_balances.items())))
    chain = _with_resources(
        {
            "name": "chain",
            "image": spec.image or images.of("chain"),
            "command": ["python", "-m", "kubetensor.chain"],
            # A native sidecar: started (and ready) before the consensus container, stopped after it.
            "restartPolicy": "Always",
            "env": _env(chain_env, otel=otel),
            "ports": [
                _container_port("chain", CHAIN_PORT),
                _container_port("chain-metrics", CHAIN_METRICS_PORT),
            ],
            "readinessProbe": {"grpc": {"port": CHAIN_PORT}, "periodSeconds": 5},
            "volumeMounts": mount,
        },
        spec.chain.resources.manifest(),
    )
    consensus = _with_resources(
        {
            "name": "consensus",
            "image": spec.image or images.of("consensus"),
            "command": ["python", "-m", "kubetensor.consensus"],
            "env": _env(
                {
                    "KT_CONSENSUS_LISTEN": f"[::]:{CONSENSUS_PORT}",
                    "KT_CONSENSUS_STATE_PATH": f"{LEDGER_DIR}/consensus-state.sqlite3",
                    "KT_CONSENSUS_METRICS_LISTEN": f"[::]:{METRICS_PORT}",
                },
                otel=otel,
            ),
            "envFrom": [{"configMapRef": {"name": config_name}}],
            "ports": [_container_port("grpc", CONSENSUS_PORT), _container_port("metrics", METRICS_PORT)],
            "readinessProbe": {
                "grpc": {"port": CONSENSUS_PORT, "service": CONSENSUS_HEALTH_SERVICE},
                "periodSeconds": 5,
            },
            "volumeMounts": mount,
        },
        spec.consensus.resources.manifest(),
    )
    objects.append(
        _deployment(
            owner,
            name=workload_name("Subnet", owner.name),
            labels_=lab,
            replicas=1,
            # SQLite files on a ReadWriteOnce volume: the old pod must be gone before the new one starts.
            strategy={"type": "Recreate"},
            pod_spec=_pod_spec(
                spec,
                containers=[consensus],
                init_containers=[chain] if spec.chain.enabled else None,
                volumes=[ledger_volume],
                gpu=False,
            ),
            # envFrom is read at start: a hyperparameter change must restart the pod.
            pod_annotations={ANNOTATION_HYPERPARAMETERS: _digest(data)},
        )
    )
    objects.append(
        _service(
            owner,
            name=workload_name("Subnet", owner.name),
            labels_=lab,
            ports=[_grpc_port("grpc", CONSENSUS_PORT)]
            + ([_grpc_port("chain", CHAIN_PORT)] if spec.chain.enabled else []),
        )
    )
    return objects


# -- drift --------------------------------------------------------------------------------------------


def contains(live: Any, desired: Any) -> bool:
    """True when every field ``desired`` sets has that value in ``live`` (server defaults are extra)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def drifted(desired: Manifest, live: Manifest | None) -> bool:
    """True when ``live`` is missing or lacks something ``desired`` sets: it must be applied again."""
    if live is None:
        return True
    return not (
        contains(live.get("metadata", {}), desired["metadata"])
        and contains(
            {k: v for k, v in live.items() if k not in ("metadata", "status")},
            {k: v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind")},
        )
    )


# -- ledger claim size --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerResize:
    """A ledger claim whose storage request differs from ``spec.ledger.size`` (``ledger_resize``)."""

    claim: str
    current: str
    """The live claim's ``spec.resources.requests.storage``."""
    wanted: str
    """``spec.ledger.size``."""
    direction: Literal["grow", "shrink"]

    def patch(self) -> Manifest:
        """The JSON merge patch that grows the claim (its storage request, nothing else)."""
        return {"spec": {"resources": {"requests": {"storage": self.wanted}}}}


def _storage_request(claim: Manifest) -> str | None:
    value = ((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    return None if value is None else str(value)


def ledger_resize(claim: Manifest, live: Manifest | None) -> LedgerResize | None:
    """How the live ledger claim must change for the desired ``claim`` (from ``subnet_objects``).

    None when nothing is to be done: no live claim yet, a request equal to ``spec.ledger.size`` in value
    (``1Gi`` is ``1024Mi``), or a claim the operator did not create (without its managed-by label: a
    claim someone else made is theirs to resize). ``grow`` when the size is larger (the claim's request
    is patched), ``shrink`` when smaller (a claim cannot shrink: it is reported, never patched).
    """
    if live is None or (live.get("metadata", {}).get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGER:
        return None
    wanted, current = _storage_request(claim), _storage_request(live)
    if wanted is None or current is None:
        return None
    try:
        wanted_value, current_value = quantity_value(wanted), quantity_value(current)
    except ValueError:
        # The API server stores only valid quantities and the CRD pattern admits only those.
        return None
    if wanted_value == current_value:
        return None
    return LedgerResize(
        claim=str(live["metadata"]["name"]),
        current=current,
        wanted=wanted,
        direction="grow" if wanted_value > current_value else "shrink",
    )
