"""The operator's check of the Secret a Subnet's ``spec.natsAuth`` names (``handlers._nats_auth_problem``)
against the services' own reading of the same values mounted as files (``NatsCredentials.load``): one
rule (``natsauth.credentials_problem``), so a Secret the operator accepts is one the pods can use. The
Kubernetes API is an in-memory fake."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubetensor.core.natsauth import NatsAuthError, NatsCredentials
from kubetensor_operator import handlers, kube
from kubetensor_operator.conditions import Reason
from kubetensor_operator.settings import OperatorSettings

SECRET_VALUE = "hunter2-secret"


@dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    async def get(self, resource: kube.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource.plural, name))


async def problem(files: dict[str, str] | None) -> str | None:
    fake = FakeKube()
    if files is not None:
        data = {key: base64.b64encode(value.encode()).decode() for key, value in files.items()}
        fake.objects[("secrets", "creds")] = {"metadata": {"name": "creds"}, "data": data}
    runtime = handlers.Runtime.create(
        OperatorSettings(consensus_address_override="127.0.0.1:1"),
        kube_client=fake,  # type: ignore[arg-type]
        gateway=None,  # type: ignore[arg-type]
    )
    found = await handlers._nats_auth_problem(runtime, "ns", subnet="demo", secret_name="creds")
    if found is None:
        return None
    assert found.reason is Reason.NATS_AUTH_SECRET_INVALID
    assert SECRET_VALUE not in found.message
    assert found.message.startswith("Secret 'creds' (spec.natsAuth.secretName of Subnet 'demo') ")
    return found.message


CASES: list[tuple[dict[str, str], str | None]] = [
    ({"token": SECRET_VALUE}, None),
    ({"token": SECRET_VALUE + "\n"}, None),
    ({"user": "kt", "password": SECRET_VALUE}, None),
    ({"user": "kt", "password": ""}, None),
    ({}, "needs a non-empty key 'token', or a non-empty key 'user' and a key 'password'"),
    ({"pass": SECRET_VALUE}, "needs a non-empty key 'token'"),
    ({"token": " \n"}, "needs a non-empty key 'token'"),
    ({"user": " ", "password": SECRET_VALUE}, "needs a non-empty key 'token'"),
    ({"user": "kt"}, "needs a non-empty key 'token'"),
    (
        {"token": SECRET_VALUE, "password": SECRET_VALUE},
        "holds both a key 'token' and keys 'user'/'password'",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
async def test_the_operator_and_the_services_accept_the_same_secrets(
    files: dict[str, str], expected: str | None, tmp_path: Path
) -> None:
    found = await problem(files)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found
    # The same values as the kubelet mounts them: the services take them exactly when the operator does.
    for key, value in files.items():
        (tmp_path / key).write_text(value)
    if found is None:
        NatsCredentials.load(tmp_path)
    else:
        with pytest.raises(NatsAuthError) as refused:
            NatsCredentials.load(tmp_path)
        assert found.split(") ", 1)[1] in str(refused.value).replace("file", "key")


async def test_a_missing_secret_is_named() -> None:
    found = await problem(None)
    assert found is not None
    assert "not found in namespace 'ns'" in found
