"""The specs of Subnet, Miner and Validator as typed values, parsed from what the API server stored.

The CRD schema and its CEL rules (``manifests/crds/``) refuse bad specs first; ``parse`` here is the
second line: it turns a stored spec (defaults already applied by the API server) into frozen pydantic
values, and a spec the schema let through but the operator cannot use into ``SpecError`` naming the
field (``spec.model.tensorParallelSize: ...``). Pure: no I/O, no kopf. Called by ``handlers``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kubetensor_operator.errors import SpecError

GROUP = "kubetensor.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource a Miner's vLLM container requests (NVIDIA device plugin)."""

Manifest = dict[str, Any]
"""A Kubernetes object as JSON: what ``desired`` builds and ``kube`` sends and reads."""

U16_MAX = 65_535
I64_MAX = (1 << 63) - 1


def _quantity(value: object) -> object:
    # The CRD declares quantities int-or-string; YAML `2` arrives as an int.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[str, BeforeValidator(_quantity)]

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_SUFFIXES = {
    **{f"{p}i": Decimal(1024) ** (i + 1) for i, p in enumerate("KMGTPE")},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    **{p: Decimal(10) ** (3 * (i + 1)) for i, p in enumerate("MGTPE", start=1)},
}


def quantity_value(quantity: str | int) -> Decimal:
    """The exact value of a Kubernetes quantity (``"1Gi"`` and ``"1024Mi"`` are equal; ``"1G"`` is less).

    Follows ``resource.Quantity``'s grammar (the CRD pattern): a number, then a binary (``Ki``..``Ei``) or
    decimal (``n``..``E``) suffix or an exponent (``2e3``). ``ValueError`` for anything else.
    """
    text = str(quantity).strip()
    found = _QUANTITY.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 1Gi, 500M or 2e9)")
    try:
        number = Decimal(found["number"])
        if found["exponent"] is not None:
            return number.scaleb(int(found["exponent"]))
    except ArithmeticError:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 1Gi, 500M or 2e9)") from None
    return number * _SUFFIXES[found["suffix"] or ""]


IntOrPercent = int | Annotated[str, Field(pattern=r"^[0-9]+%$")]


class _Spec(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True, validate_default=True
    )

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Self:
        """The typed spec; ``SpecError`` naming the first invalid field (``spec.<path>``) otherwise."""
        try:
            return cls.model_validate(dict(spec))
        except ValidationError as error:
            first = error.errors()[0]
            path = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise SpecError(f"spec.{path}" if path else "spec", message) from None


class Resources(_Spec):
    """Container resources (``nvidia.com/gpu`` is not set here: ``spec.gpus`` is)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_gpus(self) -> Self:
        if GPU_RESOURCE in self.requests or GPU_RESOURCE in self.limits:
            raise ValueError(f"{GPU_RESOURCE} is set by spec.gpus, not by resources")
        return self

    def manifest(self) -> Manifest:
        out: Manifest = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


class Toleration(_Spec):
    """A pod toleration (core/v1 ``Toleration``)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    def manifest(self) -> Manifest:
        return self.model_dump(by_alias=True, exclude_none=True)


class SecretKeyRef(_Spec):
    name: str
    key: str
    optional: bool | None = None


class EnvSource(_Spec):
    secret_key_ref: SecretKeyRef


class EnvVar(_Spec):
    """An environment variable: a value, or a key of a Secret (for example ``HF_TOKEN``)."""

    name: str = Field(min_length=1)
    value: str | None = None
    value_from: EnvSource | None = None

    def manifest(self) -> Manifest:
        return self.model_dump(by_alias=True, exclude_none=True)


def _no_reserved_names(env: tuple[EnvVar, ...], reserved: frozenset[str], *, why: str) -> tuple[EnvVar, ...]:
    # Two entries of one name would make the API server refuse the whole Deployment.
    taken = [e.name for e in env if e.name in reserved]
    if taken:
        raise ValueError(f"{', '.join(taken)}: set by the operator ({why}); remove it")
    return env


VALIDATOR_OPERATOR_ENV = frozenset(
    f"KT_VALIDATOR_{name}"
    for name in (
        "LISTEN",
        "NETUID",
        "NATS_URL",
        "NATS_AUTH_DIR",
        "TASK_TYPE",
        "CONSENSUS_ADDRESS",
        "HOTKEY_FILE",
        "STATE_PATH",
        "METRICS_LISTEN",
    )
)
"""The validator container's variables the operator sets (from the Subnet, the hotkey Secret, its own
ports and paths): ``spec.env`` may not name them (the CRD's CEL rule lists them too)."""
VLLM_OPERATOR_ENV = frozenset({"HF_HOME"})
"""The vLLM container's variables the operator sets (``HF_HOME``: the model cache volume)."""


class Placement(_Spec):
    """Where pods may run: fields copied onto the pod spec."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: dict[str, Any] | None = None
    runtime_class_name: str | None = None


# -- Miner --------------------------------------------------------------------------------------------


class ModelSpec(_Spec):
    """The model a Miner serves and how vLLM runs it."""

    name: str = Field(min_length=1, max_length=256)
    revision: str | None = None
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_model_len: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    extra_args: tuple[str, ...] = ()


class VllmSpec(_Spec):
    image: str | None = None
    resources: Resources = Field(default_factory=Resources)
    shm_size: Quantity = "8Gi"
    env: tuple[EnvVar, ...] = ()

    @field_validator("env")
    @classmethod
    def _not_the_operators(cls, env: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
        return _no_reserved_names(env, VLLM_OPERATOR_ENV, why="the model cache: spec.modelCache")


class AgentSpec(_Spec):
    image: str | None = None
    resources: Resources = Field(default_factory=Resources)


class ModelCache(_Spec):
    """Where model weights are cached: an existing PersistentVolumeClaim, else an emptyDir."""

    claim_name: str | None = None
    size_limit: Quantity | None = None
    mount_path: str = "/root/.cache/huggingface"

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.claim_name and self.size_limit:
            raise ValueError("set either claimName or sizeLimit, not both")
        return self


class Rollout(_Spec):
    """The Deployment's rolling update: availability never drops below replicas - maxUnavailable."""

    max_unavailable: IntOrPercent = 0
    max_surge: IntOrPercent = 1

    @model_validator(mode="after")
    def _can_progress(self) -> Self:
        if self.max_unavailable in (0, "0%") and self.max_surge in (0, "0%"):
            raise ValueError("maxUnavailable and maxSurge cannot both be 0")
        return self


class MinerSpec(Placement):
    """``Miner.spec``: a vLLM model server plus the miner agent, registered on a subnet."""

    subnet: str = Field(min_length=1, max_length=63)
    replicas: int = Field(default=1, ge=0)
    gpus: int = Field(default=1, ge=1, le=64)
    coldkey: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    hotkey_secret_name: str | None = None
    model: ModelSpec
    vllm: VllmSpec = Field(default_factory=VllmSpec)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    model_cache: ModelCache = Field(default_factory=ModelCache)
    rollout: Rollout = Field(default_factory=Rollout)

    @model_validator(mode="after")
    def _gpus_cover_tensor_parallelism(self) -> Self:
        # Raised as SpecError (not ValueError) so pydantic lets it through with the exact field name.
        if self.gpus < self.model.tensor_parallel_size:
            raise SpecError(
                "spec.gpus",
                f"{self.gpus} GPUs cannot hold spec.model.tensorParallelSize "
                f"{self.model.tensor_parallel_size}; set gpus >= tensorParallelSize",
            )
        return self


# -- Validator ----------------------------------------------------------------------------------------


class ValidatorSpec(Placement):
    """``Validator.spec``: the validator process of one hotkey (always one replica)."""

    subnet: str = Field(min_length=1, max_length=63)
    coldkey: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    hotkey_secret_name: str | None = None
    image: str | None = None
    resources: Resources = Field(default_factory=Resources)
    env: tuple[EnvVar, ...] = ()

    @field_validator("env")
    @classmethod
    def _not_the_operators(cls, env: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
        return _no_reserved_names(
            env, VALIDATOR_OPERATOR_ENV, why="from the Subnet, the hotkey Secret, the pod's ports and paths"
        )


# -- what a consensus service reports -----------------------------------------------------------------


@dataclass(frozen=True)
class Neuron:
    """One uid of a subnet's metagraph, as the operator shows it in status."""

    uid: int
    hotkey: str
    stake_rao: int
    validator_permit: bool
    incentive: float
    dividends: float
    validator_trust: float
    consensus: float
    emission_rao: int


@dataclass(frozen=True)
class Metagraph:
    """A subnet's metagraph: the last settled epoch and its neurons by hotkey."""

    netuid: int
    epoch: int
    neurons: Mapping[str, Neuron]


@dataclass(frozen=True)
class SettlementHead:
    """The newest committed settlement of a subnet."""

    epoch: int
    hash: str


@dataclass(frozen=True)
class Deregistration:
    """The uid a deregistration freed, and the block it was freed at."""

    uid: int
    block: int


# -- Subnet -------------------------------------------------------------------------------------------


U16 = Annotated[int, Field(ge=0, le=U16_MAX)]
Rao = Annotated[int, Field(ge=0, le=I64_MAX)]
Blocks = Annotated[int, Field(ge=0, le=I64_MAX)]


class Hyperparameters(_Spec):
    """The subnet's consensus hyperparameters; each maps to one ``KT_CONSENSUS_*`` setting.

    Defaults equal ``kubetensor.consensus.settings.ConsensusSettings``'s (a unit test checks it).
    """

    tempo: int = Field(default=360, ge=1, le=U16_MAX)
    yuma3_on: bool = False
    liquid_alpha_on: bool = False
    kappa: U16 = 32_767
    bonds_penalty: U16 = 65_535
    bonds_moving_average: int = Field(default=900_000, ge=0, le=1_000_000)
    alpha_low: U16 = 45_875
    alpha_high: U16 = 58_982
    alpha_sigmoid_steepness: int = Field(default=1_000, ge=-32_768, le=32_767)
    max_allowed_validators: U16 = 128
    activity_cutoff: Blocks = 5_000
    stake_threshold: Rao = 0
    rao_emission_per_epoch: Rao = 295_200_000_000
    max_allowed_uids: U16 = 256
    immunity_period: Blocks = 4_096
    min_non_immune_uids: U16 = 10
    min_allowed_weights: U16 = 1_024
    max_weights_limit: U16 = 65_535
    weights_rate_limit: Blocks = 100

    @model_validator(mode="after")
    def _alpha_order(self) -> Self:
        if self.alpha_low > self.alpha_high:
            raise ValueError(f"alphaLow ({self.alpha_low}) must not exceed alphaHigh ({self.alpha_high})")
        return self


class Ledger(_Spec):
    """Storage of the consensus state and the chain ledger."""

    size: Quantity = "1Gi"
    storage_class_name: str | None = None
    reclaim_policy: Literal["Retain", "Delete"] = "Retain"
    ephemeral: bool = False


class Component(_Spec):
    resources: Resources = Field(default_factory=Resources)


HexKey = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Chain(Component):
    """The chain sidecar: the ledger stake is read from and settlements are submitted to."""

    enabled: bool = True
    genesis_balances: dict[HexKey, Rao] = Field(default_factory=dict)


URL_WITH_CREDENTIALS = r"(^|,)[^/?#,@]*(//[^/?#,@]*)?@"
"""A URL of a comma-separated list whose authority holds credentials (``nats://user:pass@host``,
``token@host``): an ``@`` before the first ``/``, ``?`` or ``#`` that does not start the ``//`` after a
scheme, in any case and after any space. The CRD's CEL rule for ``spec.natsUrl`` is this pattern, and
``kubetensor.core.natsauth.has_credentials`` (what the services refuse) agrees with it
(tests/unit/test_operator_model.py)."""
_URL_WITH_CREDENTIALS = re.compile(URL_WITH_CREDENTIALS)


_OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name, as a Secret's (the CRD's pattern for it)."""


class NatsAuth(_Spec):
    """Where the subnet's miners and validators find their NATS credentials."""

    secret_name: str = Field(min_length=1, max_length=253, pattern=_OBJECT_NAME)
    """A Secret in the subnet's namespace with a key ``token``, or keys ``user`` and ``password``."""


class SubnetSpec(Placement):
    """``Subnet.spec``: one subnet's consensus service, chain sidecar, ledger and hyperparameters."""

    netuid: int = Field(ge=1, le=U16_MAX)
    image: str | None = None
    task: str = Field(default="addition", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    nats_url: str = Field(default="nats://nats:4222", min_length=1)
    nats_auth: NatsAuth | None = None
    block_seconds: float = Field(default=12.0, gt=0)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    genesis_stake: dict[HexKey, Rao] = Field(default_factory=dict)
    ledger: Ledger = Field(default_factory=Ledger)
    consensus: Component = Field(default_factory=Component)
    chain: Chain = Field(default_factory=Chain)

    @field_validator("nats_url")
    @classmethod
    def _no_credentials_in_the_url(cls, url: str) -> str:
        # The URL is stored in plain text in the Subnet and in its pods' specs: credentials go in a Secret.
        if _URL_WITH_CREDENTIALS.search(url):
            raise ValueError(
                "must not carry credentials (user:password@ or token@): it is stored in plain text; "
                "put them in a Secret named by spec.natsAuth.secretName"
            )
        return url

    @model_validator(mode="after")
    def _stake_has_one_source(self) -> Self:
        if self.genesis_stake and self.chain.enabled:
            raise SpecError(
                "spec.genesisStake",
                "applies only without the chain sidecar (spec.chain.enabled: false); "
                "with the chain, stake comes from its ledger",
            )
        return self
