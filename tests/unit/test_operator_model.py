"""The operator's spec models: parsing, errors that name the field, and agreement with the CRDs and
with the consensus service's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.core import natsauth
from kubetensor_operator import model
from kubetensor_operator.errors import SpecError
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "manifests" / "examples"


def crd_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"kubetensor.io_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_miner_spec_defaults_match_the_crd_defaults() -> None:
    spec = model.MinerSpec.parse({"subnet": "demo", "model": {"name": "m"}})
    assert (spec.replicas, spec.gpus) == (1, 1)
    assert spec.model.dtype == "auto"
    assert spec.model.tensor_parallel_size == 1
    assert spec.model.gpu_memory_utilization == 0.9
    assert (spec.rollout.max_unavailable, spec.rollout.max_surge) == (0, 1)
    props = crd_schema("miners")["properties"]["spec"]["properties"]
    assert props["replicas"]["default"] == spec.replicas
    assert props["gpus"]["default"] == spec.gpus
    assert props["model"]["properties"]["dtype"]["default"] == spec.model.dtype
    assert (
        props["model"]["properties"]["gpuMemoryUtilization"]["default"] == spec.model.gpu_memory_utilization
    )
    assert props["rollout"]["default"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert props["vllm"]["properties"]["shmSize"]["default"] == spec.vllm.shm_size
    assert props["modelCache"]["properties"]["mountPath"]["default"] == spec.model_cache.mount_path


def test_parse_fails_naming_the_nested_field() -> None:
    with pytest.raises(SpecError) as caught:
        model.MinerSpec.parse({"subnet": "demo", "model": {"name": "m", "dtype": "int3"}})
    assert caught.value.field == "spec.model.dtype"


def test_parse_fails_when_gpus_cannot_hold_tensor_parallelism() -> None:
    with pytest.raises(SpecError) as caught:
        model.MinerSpec.parse({"subnet": "demo", "gpus": 1, "model": {"name": "m", "tensorParallelSize": 2}})
    assert caught.value.field == "spec.gpus"
    assert "tensorParallelSize" in str(caught.value)


def test_parse_fails_when_gpus_are_set_in_resources() -> None:
    with pytest.raises(SpecError, match=r"spec\.vllm\.resources: nvidia.com/gpu is set by spec.gpus"):
        model.MinerSpec.parse(
            {
                "subnet": "demo",
                "model": {"name": "m"},
                "vllm": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
            }
        )


def test_parse_fails_when_rollout_cannot_progress() -> None:
    with pytest.raises(SpecError, match=r"spec\.rollout"):
        model.MinerSpec.parse(
            {"subnet": "demo", "model": {"name": "m"}, "rollout": {"maxUnavailable": "0%", "maxSurge": 0}}
        )


def test_quantities_given_as_integers_become_strings() -> None:
    spec = model.MinerSpec.parse(
        {"subnet": "demo", "model": {"name": "m"}, "vllm": {"resources": {"requests": {"cpu": 4}}}}
    )
    assert spec.vllm.resources.requests == {"cpu": "4"}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_hyperparameter_defaults_equal_the_consensus_settings_and_the_crd() -> None:
    settings = ConsensusSettings()
    hyper = model.Hyperparameters()
    crd = crd_schema("subnets")["properties"]["spec"]["properties"]["hyperparameters"]["properties"]
    assert set(crd) == {
        model.Hyperparameters.model_fields[f].alias for f in model.Hyperparameters.model_fields
    }
    for alias, schema in crd.items():
        field = _snake(alias)
        assert getattr(hyper, field) == getattr(settings, field) == schema["default"], alias
    assert model.SubnetSpec.parse({"netuid": 1}).block_seconds == settings.block_seconds


def _aliases(cls: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in cls.model_fields.items()}


@pytest.mark.parametrize(
    ("plural", "cls"),
    [("miners", model.MinerSpec), ("validators", model.ValidatorSpec), ("subnets", model.SubnetSpec)],
)
def test_every_crd_spec_field_is_a_model_field(plural: str, cls: type[BaseModel]) -> None:
    assert set(crd_schema(plural)["properties"]["spec"]["properties"]) == _aliases(cls)


def test_the_examples_parse() -> None:
    parsers: dict[str, type[model.MinerSpec] | type[model.ValidatorSpec] | type[model.SubnetSpec]] = {
        "Miner": model.MinerSpec,
        "Validator": model.ValidatorSpec,
        "Subnet": model.SubnetSpec,
    }
    kinds = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            parsers[doc["kind"]].parse(doc["spec"])
            kinds.append(doc["kind"])
    assert kinds.count("Subnet") == 1
    assert kinds.count("Miner") >= 2
    assert kinds.count("Validator") >= 1


NATS_URLS = [
    "nats://bus:4222",
    "bus:4222",
    "nats://a:4222,nats://b:4222",
    "nats://[::1]:4222",
    "nats://host:4222/path@x",
    "nats://host:4222?x@y",
    "nats://host:4222#a@b",
    "nats://kt:pw@bus:4222",
    "tok3n@bus:4222",
    "NATS://kt:pw@bus:4222",
    "Tls://u@[::1]:4222",
    "nats://a:4222, nats://u:p@b:4222",
    "nats://a:4222,\tnats://u:p@b:4222",
    " ws://u:p@h:443/ws",
]


@pytest.mark.parametrize("url", NATS_URLS)
def test_the_operator_refuses_exactly_the_nats_urls_the_services_refuse(url: str) -> None:
    # The services refuse a URL with credentials (natsauth.has_credentials); the operator must refuse it
    # before it lands in plain text in a Deployment, and must not refuse one the services take.
    refused = bool(model._URL_WITH_CREDENTIALS.search(url))
    assert refused == natsauth.has_credentials(url)


def test_the_crd_refuses_nats_urls_with_the_operators_pattern() -> None:
    rules = crd_schema("subnets")["properties"]["spec"]["properties"]["natsUrl"]["x-kubernetes-validations"]
    assert [rule["rule"] for rule in rules] == [f"!self.matches('{model.URL_WITH_CREDENTIALS}')"]
