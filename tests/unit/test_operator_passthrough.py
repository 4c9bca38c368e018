"""What the operator passes on to the containers it creates: its ``OTEL_*`` variables and per-component
default images (``kubetensor_operator.settings``, ``kubetensor_operator.desired``); the Helm chart sets
both through the operator's environment."""

from __future__ import annotations

from typing import Any

import pytest
from kubetensor_operator import desired, model
from kubetensor_operator.desired import Images, Owner
from kubetensor_operator.settings import OperatorSettings, otel_passthrough

OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4317",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.25",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
}
IMAGES = Images(kubetensor="reg/kt:1", vllm="reg/vllm:1")
SUBNET_SPEC = model.SubnetSpec.parse({"netuid": 7, "natsUrl": "nats://bus:4222", "task": "addition"})
MINER = Owner(kind="Miner", name="m1", namespace="ns", uid="uid-m1")
VALIDATOR = Owner(kind="Validator", name="v1", namespace="ns", uid="uid-v1")
SUBNET = Owner(kind="Subnet", name="demo", namespace="ns", uid="uid-s1")


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env names in {container['name']}: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def every_container(
    *, otel: dict[str, str] | None, images: Images = IMAGES, **validator: Any
) -> dict[str, Any]:
    miner = model.MinerSpec.parse({"subnet": "demo", "model": {"name": "org/model"}})
    val = model.ValidatorSpec.parse({"subnet": "demo", **validator})
    subnet = model.SubnetSpec.parse({"netuid": 7})
    return {
        **containers(desired.miner_objects(miner, owner=MINER, subnet=SUBNET_SPEC, images=images, otel=otel)),
        **containers(
            desired.validator_objects(val, owner=VALIDATOR, subnet=SUBNET_SPEC, images=images, otel=otel)
        ),
        **containers(desired.subnet_objects(subnet, owner=SUBNET, images=images, otel=otel)),
    }


def test_passthrough_keeps_otel_variables_but_not_the_service_name_or_empty_ones() -> None:
    environ = {
        **OTEL,
        "OTEL_SERVICE_NAME": "kubetensor-operator",
        "OTEL_EXPORTER_OTLP_HEADERS": "",
        "HOME": "/",
    }
    assert otel_passthrough(environ) == OTEL


def test_settings_default_otel_env_to_the_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OTEL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kubetensor-operator")
    assert OperatorSettings().otel_env == OTEL


def test_settings_otel_env_is_empty_without_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    assert OperatorSettings().otel_env == {}


def test_every_kubetensor_container_gets_the_otel_environment_and_vllm_does_not() -> None:
    found = every_container(otel=OTEL)
    assert set(found) == {"vllm", "agent", "validator", "chain", "consensus"}
    for name in ("agent", "validator", "chain", "consensus"):
        env = env_of(found[name])
        assert {k: env[k] for k in OTEL} == OTEL, name
        assert any(k.startswith("KT_") for k in env), name
    assert not any(k.startswith("OTEL_") for k in env_of(found["vllm"]))


def test_without_otel_no_container_gets_otel_variables() -> None:
    for name, found in every_container(otel=None).items():
        assert not any(k.startswith("OTEL_") for k in env_of(found)), name


def test_the_validators_own_env_wins_over_the_passed_otel_variable() -> None:
    own = {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "1.0"}
    env = env_of(every_container(otel=OTEL, env=[own])["validator"])
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "1.0"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTEL["OTEL_EXPORTER_OTLP_ENDPOINT"]


def test_an_otel_change_changes_the_pod_template() -> None:
    before = every_container(otel=OTEL)
    after = every_container(otel={**OTEL, "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert before["consensus"] != after["consensus"]
    assert every_container(otel=OTEL) == before


def test_component_images_default_to_the_kubetensor_image() -> None:
    found = every_container(otel=None)
    assert {n: c["image"] for n, c in found.items()} == {
        "vllm": "reg/vllm:1",
        "agent": "reg/kt:1",
        "validator": "reg/kt:1",
        "chain": "reg/kt:1",
        "consensus": "reg/kt:1",
    }


def test_each_component_image_is_used_for_its_own_container() -> None:
    images = Images(
        kubetensor="reg/kt:1",
        vllm="reg/vllm:1",
        consensus="reg/c:2",
        chain="reg/ch:3",
        miner="reg/m:4",
        validator="reg/v:5",
    )
    found = every_container(otel=None, images=images)
    assert {n: c["image"] for n, c in found.items()} == {
        "vllm": "reg/vllm:1",
        "agent": "reg/m:4",
        "validator": "reg/v:5",
        "chain": "reg/ch:3",
        "consensus": "reg/c:2",
    }


def test_a_spec_image_still_overrides_the_component_image() -> None:
    images = Images(kubetensor="reg/kt:1", vllm="reg/vllm:1", validator="reg/v:5")
    found = every_container(otel=None, images=images, image="mine/v:9")
    assert found["validator"]["image"] == "mine/v:9"


def test_settings_read_component_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_OPERATOR_CHAIN_IMAGE", "reg/ch:3")
    monkeypatch.setenv("KT_OPERATOR_OTEL_ENV", '{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}')
    settings = OperatorSettings()
    assert (settings.chain_image, settings.miner_image) == ("reg/ch:3", "")
    assert settings.otel_env == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
