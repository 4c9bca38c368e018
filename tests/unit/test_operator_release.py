"""The finalizer of a deleted Miner or Validator (``handlers.release``) and the Events it writes
(``conditions.release_blocked``/``released``): the Kubernetes API is an in-memory fake, the consensus
service a fake gateway or a real one pointed at a closed port."""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest
from kubetensor.core.keys import Keypair
from kubetensor_operator import conditions, handlers, kube
from kubetensor_operator.conditions import Reason
from kubetensor_operator.consensus import ConsensusGateway
from kubetensor_operator.errors import ConsensusRefusedError
from kubetensor_operator.model import Deregistration
from kubetensor_operator.settings import OperatorSettings

KEY = Keypair(bytes([5]) * 32)
SUBNET = {"metadata": {"name": "demo", "namespace": "ns"}, "spec": {"netuid": 7}}


def secret(seed_hex: str = KEY.seed.hex()) -> dict[str, Any]:
    return {
        "metadata": {"name": "m-hotkey", "namespace": "ns"},
        "data": {"hotkey-seed": base64.b64encode(seed_hex.encode()).decode()},
    }


def member(kind: str = "Miner", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"},
        "spec": {"subnet": "demo", **spec},
        "status": {"uid": 3},
    }


@dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[bool, str, str]] = field(default_factory=list)

    async def get(self, resource: kube.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource.plural, name))

    async def post_event(self, involved: Any, *, warning: bool, reason: str, message: str) -> None:
        self.events.append((warning, reason, message))


@dataclass
class FakeGateway:
    answer: Deregistration | Exception | None
    calls: list[tuple[str, int, str]] = field(default_factory=list)

    async def deregister(self, address: str, netuid: int, *, seed_hex: str) -> Deregistration | None:
        self.calls.append((address, netuid, seed_hex))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def runtime(fake: FakeKube, gateway: Any, **settings: Any) -> handlers.Runtime:
    chosen = OperatorSettings(**{"consensus_address_override": "127.0.0.1:1", **settings})
    made = handlers.Runtime.create(chosen, kube_client=fake, gateway=gateway)  # type: ignore[arg-type]
    key = ("Miner", "ns", "m")
    made.applied[key] = 1
    made.lock(key)
    return made


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the pure parts ---------------------------------------------------------------------------------------


def test_release_is_blocked_only_by_a_subnet_that_is_gone_or_going() -> None:
    assert conditions.release_blocked("Miner", "m", subnet="demo", subnet_body=SUBNET) is None
    gone = conditions.release_blocked("Miner", "m", subnet="demo", subnet_body=None)
    assert gone is not None
    assert (gone.reason, gone.warning) == (Reason.DEREGISTRATION_SKIPPED, True)
    assert (
        gone.message
        == "Miner m was not deregistered: Subnet 'demo' is gone, and its consensus service with it"
    )
    going = {**SUBNET, "metadata": {**SUBNET["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    blocked = conditions.release_blocked("Validator", "v", subnet="demo", subnet_body=going)
    assert blocked is not None
    assert "Subnet 'demo' is being deleted" in blocked.message


def test_released_names_the_uid_and_subnet_or_says_there_was_nothing() -> None:
    done = conditions.released("Miner", "m", hotkey=KEY.hotkey, netuid=7, uid=3, block=120)
    assert (done.reason, done.warning) == (Reason.DEREGISTERED, False)
    assert (
        done.message
        == f"Miner m: deregistered uid 3 (hotkey {KEY.hotkey[:16]}...) from subnet 7 at block 120"
    )
    nothing = conditions.released("Miner", "m", hotkey=KEY.hotkey, netuid=7, uid=None)
    assert (nothing.reason, nothing.warning) == (Reason.NOT_REGISTERED, False)
    assert "held no uid on subnet 7" in nothing.message


# -- the finalizer ----------------------------------------------------------------------------------------


async def test_release_deregisters_the_hotkey_and_posts_deregistered() -> None:
    fake = FakeKube({("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): secret()})
    gateway = FakeGateway(Deregistration(uid=3, block=99))
    made = runtime(fake, gateway)
    await handlers.release(made, member())
    assert gateway.calls == [("127.0.0.1:1", 7, KEY.seed.hex())]
    assert fake.events == [
        (
            False,
            "Deregistered",
            f"Miner m: deregistered uid 3 (hotkey {KEY.hotkey[:16]}...) from subnet 7 at block 99",
        )
    ]
    assert ("Miner", "ns", "m") not in made.applied


async def test_release_uses_the_secret_the_spec_names_and_treats_not_found_as_done() -> None:
    fake = FakeKube({("subnets", "demo"): SUBNET, ("secrets", "mine"): secret()})
    gateway = FakeGateway(None)
    await handlers.release(runtime(fake, gateway), member("Validator", hotkeySecretName="mine"))
    assert len(gateway.calls) == 1
    assert [(w, r) for w, r, _ in fake.events] == [(False, "NotRegistered")]


@pytest.mark.parametrize(
    ("objects", "why"),
    [
        ({("secrets", "m-hotkey"): secret()}, "Subnet 'demo' is gone"),
        (
            {
                ("subnets", "demo"): {**SUBNET, "metadata": {"name": "demo", "deletionTimestamp": "x"}},
                ("secrets", "m-hotkey"): secret(),
            },
            "Subnet 'demo' is being deleted",
        ),
        ({("subnets", "demo"): SUBNET}, "its hotkey Secret m-hotkey is gone"),
        (
            {("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): secret("zz")},
            "Secret m-hotkey: key 'hotkey-seed'",
        ),
    ],
)
async def test_release_does_not_wait_on_a_gone_subnet_or_secret_and_warns_why(
    objects: dict[tuple[str, str], dict[str, Any]], why: str
) -> None:
    fake = FakeKube(objects)
    gateway = FakeGateway(Deregistration(uid=3, block=1))
    made = runtime(fake, gateway)
    await handlers.release(made, member())
    assert gateway.calls == []
    ((warning, reason, message),) = fake.events
    assert (warning, reason) == (True, "DeregistrationSkipped")
    assert why in message
    assert ("Miner", "ns", "m") not in made.applied


async def test_release_warns_and_lets_go_when_the_consensus_service_refuses() -> None:
    fake = FakeKube({("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): secret()})
    refusal = ConsensusRefusedError("127.0.0.1:1", code="UNAUTHENTICATED", detail="signature: not valid")
    await handlers.release(runtime(fake, FakeGateway(refusal)), member())
    ((warning, reason, message),) = fake.events
    assert (warning, reason) == (True, "DeregistrationSkipped")
    assert "refused" in message
    assert "UNAUTHENTICATED" in message


async def test_release_keeps_the_finalizer_while_the_consensus_service_is_unreachable() -> None:
    fake = FakeKube({("subnets", "demo"): SUBNET, ("secrets", "m-hotkey"): secret()})
    async with ConsensusGateway(call_seconds=2.0, metagraph_ttl=0) as gateway:
        made = runtime(fake, gateway, consensus_address_override=f"127.0.0.1:{closed_port()}")
        with pytest.raises(kopf.TemporaryError) as retry:
            await handlers.release(made, member())
    assert retry.value.delay == made.settings.release_retry_seconds
    assert "the finalizer stays" in str(retry.value)
    assert fake.events == []
    # Not forgotten: the retry finds the resource as it was.
    assert ("Miner", "ns", "m") in made.applied


async def test_release_of_a_subnet_calls_no_consensus_service() -> None:
    fake = FakeKube()
    gateway = FakeGateway(Deregistration(uid=0, block=0))
    subnet_body = {**member("Subnet"), "metadata": {"name": "demo", "namespace": "ns", "uid": "u"}}
    await handlers.release(runtime(fake, gateway), subnet_body)
    assert (gateway.calls, fake.events) == ([], [])
