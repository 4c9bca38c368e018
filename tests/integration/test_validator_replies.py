"""``MinerTaskClient.send_round``'s reply checks over a real nats-server: the replies that arrive together
are verified as one group (``keys.verify_many``), and every bad one is settled as what it is.

The miners are plain NATS responders in the test (no miner service: what is under test is the
validator's side), each answering the way its role says; they hold their tasks until every miner has
one, then all answer at once, so the replies reach the validator as one burst.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import nats
import pytest
from kubetensor.core import keys, signing, subjects
from kubetensor.core.keys import Keypair
from kubetensor.core.tracecontext import TraceContext
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.v1 import task_pb2
from kubetensor.validator.rounds import Outcome, Reply, SealedTask
from kubetensor.validator.taskclient import MinerTaskClient

from tests.network_support import addition_round, keypair

NETUID = 1
VALIDATOR = keypair(31)
STRANGER = keypair(250)


class Role(enum.Enum):
    GOOD = "good"
    BUSY = "busy"
    """Signed right, but refuses the task (a verified non-OK status)."""
    FORGED = "forged"
    """Claims the miner's key, but the signature is someone else's."""
    OTHER_KEY = "other_key"
    """Signed, and says so, by a key that is not the miner's."""
    GARBAGE = "garbage"
    """Not a TaskResponse at all."""


EXPECTED = {
    Role.GOOD: Outcome.OK,
    Role.BUSY: Outcome.BUSY,
    Role.FORGED: Outcome.BAD_SIGNATURE,
    Role.OTHER_KEY: Outcome.BAD_SIGNATURE,
    Role.GARBAGE: Outcome.GARBAGE,
}
ROLES = (
    Role.GOOD,
    Role.FORGED,
    Role.GOOD,
    Role.GARBAGE,
    Role.GOOD,
    Role.OTHER_KEY,
    Role.BUSY,
    Role.GOOD,
    Role.FORGED,
    Role.GOOD,
)
MINERS = tuple(keypair(60 + i) for i in range(len(ROLES)))


def answer(task: task_pb2.Task, *, miner: Keypair, role: Role) -> bytes:
    """The reply bytes a miner of ``role`` sends for ``task``."""
    if role is Role.GARBAGE:
        return b"this is not a protobuf \xff\xfe"
    leaf = task_pb2.TaskLeaf.FromString(task.leaf)
    response = task_pb2.TaskResponse(
        task_id=leaf.task_id,
        miner_hotkey=leaf.miner_hotkey,
        completion="231",
        status=task_pb2.TASK_STATUS_BUSY if role is Role.BUSY else task_pb2.TASK_STATUS_OK,
        error="busy" if role is Role.BUSY else "",
        validator_hotkey=task_pb2.RoundEnvelope.FromString(task.envelope).validator_hotkey,
    )
    signer = miner if role in (Role.GOOD, Role.BUSY) else STRANGER
    signing.sign(response, signer, domain=subjects.TASK_RESPONSE_DOMAIN)
    if role is Role.FORGED:
        response.signature.public_key = miner.public_key
    return response.SerializeToString()


class Miners:
    """One subscription per miner on one connection; answers go out together once all tasks are in."""

    def __init__(self, nc: nats.aio.client.Client, roles: Sequence[Role]) -> None:
        self.nc = nc
        self.roles = roles
        self.held: list[tuple[nats.aio.msg.Msg, Keypair, Role]] = []

    async def start(self) -> None:
        for miner, role in zip(MINERS, self.roles, strict=True):
            await self.nc.subscribe(
                subjects.miner_tasks(NETUID, miner.hotkey), cb=self._responder(miner, role)
            )
        await self.nc.flush()

    def _responder(self, miner: Keypair, role: Role) -> Callable[[nats.aio.msg.Msg], Awaitable[None]]:
        async def respond(msg: nats.aio.msg.Msg) -> None:
            if msg.data == PROBE:
                await self.nc.publish(msg.reply, PROBE)
                return
            self.held.append((msg, miner, role))
            if len(self.held) == len(self.roles):
                held, self.held = self.held, []
                for task_msg, key, its_role in held:
                    data = answer(task_pb2.Task.FromString(task_msg.data), miner=key, role=its_role)
                    await self.nc.publish(task_msg.reply, data)

        return respond


PROBE = b"probe"
"""Answered at once by every miner: the fixture's check that the validator's connection reaches each."""


async def reach_every_miner(nc: nats.aio.client.Client) -> None:
    """Wait until a request from ``nc`` reaches every miner's subscription. The miners answer a round
    only once all its tasks are in, so one subscription the server did not route to yet (seen once in
    a full run: "no responders" for the first task right after the fixture subscribed and flushed)
    would time out the whole round instead of testing its replies."""
    for miner in MINERS:
        for attempt in range(50):
            try:
                await nc.request(subjects.miner_tasks(NETUID, miner.hotkey), PROBE, timeout=1)
                break
            except nats.errors.NoRespondersError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.02)


@pytest.fixture
async def connections(nats_server: NatsServer) -> AsyncIterator[tuple[nats.aio.client.Client, Miners]]:
    validator_nc = await nats.connect(nats_server.url)
    miners_nc = await nats.connect(nats_server.url)
    miners = Miners(miners_nc, ROLES)
    await miners.start()
    await reach_every_miner(validator_nc)
    try:
        yield validator_nc, miners
    finally:
        await miners_nc.close()
        await validator_nc.close()


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group check (``keys.verify_many`` call) the test makes, in order."""
    sizes: list[int] = []
    verify_many = keys.verify_many

    def spy(checks: Sequence[tuple[bytes, str, bytes, bytes]]) -> list[bool]:
        sizes.append(len(checks))
        return verify_many(checks)

    monkeypatch.setattr(keys, "verify_many", spy)
    return sizes


def a_round(sender: MinerTaskClient, *, nonce: int) -> list[SealedTask]:
    return sender.seal(addition_round(MINERS, netuid=NETUID, nonce=nonce))


async def test_send_round_settles_exactly_the_bad_replies_when_verified_as_a_group(
    connections: tuple[nats.aio.client.Client, Miners], groups: list[int]
) -> None:
    validator_nc, _ = connections
    sender = MinerTaskClient(validator_nc, keypair=VALIDATOR)
    told: list[tuple[int, Reply]] = []
    replies = await sender.send_round(
        a_round(sender, nonce=1),
        timeout_s=1.5,
        trace=TraceContext.start(),
        wave=16,
        on_reply=lambda index, reply: told.append((index, reply)),
    )
    assert [reply.outcome for reply in replies] == [EXPECTED[role] for role in ROLES], [
        (reply.outcome, reply.detail) for reply in replies
    ]
    assert all(
        reply.completion == "231" for reply, role in zip(replies, ROLES, strict=True) if role is Role.GOOD
    )
    assert all(0 < reply.latency_s < 1.5 for reply in replies)
    details = {role: reply.detail for reply, role in zip(replies, ROLES, strict=True)}
    assert "does not verify" in details[Role.FORGED]
    assert "another key" in details[Role.OTHER_KEY]
    # Every reply that got as far as its signature was verified in a group check, and the replies that
    # arrived together went in one group, not one call each.
    signed = sum(role in (Role.GOOD, Role.BUSY, Role.FORGED) for role in ROLES)
    assert sum(groups) == signed
    assert max(groups) > 1
    assert sender._unverified == []
    # ``on_reply`` heard once of each reply its miner signed, as it was settled: the very reply the list
    # holds. The others (garbage, another key, a forged signature) were only noted: never settled.
    signed_by_miner = [index for index, role in enumerate(ROLES) if role in (Role.GOOD, Role.BUSY)]
    assert sorted(index for index, _ in told) == signed_by_miner
    assert all(replies[index] is reply for index, reply in told)


async def test_send_round_fails_only_the_reply_whose_check_raises(
    connections: tuple[nats.aio.client.Client, Miners], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group check raises; each reply is then verified on its own, and the one whose check raises
    too is FAILED while the others keep their outcomes."""
    validator_nc, _ = connections
    victim = MINERS[ROLES.index(Role.GOOD)]
    verify = keys.verify

    def broken_group(checks: Sequence[tuple[bytes, str, bytes, bytes]]) -> list[bool]:
        raise RuntimeError("the group check broke")

    def verify_unless_victim(public_key: bytes, domain: str, payload: bytes, signature: bytes) -> bool:
        if public_key == victim.public_key:
            raise RuntimeError("this check broke")
        return verify(public_key, domain, payload, signature)

    monkeypatch.setattr(keys, "verify_many", broken_group)
    monkeypatch.setattr(keys, "verify", verify_unless_victim)
    sender = MinerTaskClient(validator_nc, keypair=VALIDATOR)
    replies = await sender.send_round(
        a_round(sender, nonce=100),
        timeout_s=1.5,
        trace=TraceContext.start(),
        wave=16,
    )
    expected = [
        Outcome.FAILED if miner is victim else EXPECTED[role]
        for miner, role in zip(MINERS, ROLES, strict=True)
    ]
    assert [reply.outcome for reply in replies] == expected
    assert "this check broke" in replies[MINERS.index(victim)].detail


async def test_send_round_ignores_replies_after_its_deadline(
    connections: tuple[nats.aio.client.Client, Miners], groups: list[int]
) -> None:
    """With a deadline too short for any answer, every task times out, the late replies are dropped on
    arrival (never queued for a check), and the next round is not disturbed by them."""
    validator_nc, _ = connections
    sender = MinerTaskClient(validator_nc, keypair=VALIDATOR)
    told: list[int] = []
    late = await sender.send_round(
        a_round(sender, nonce=200),
        timeout_s=0.000_001,
        trace=TraceContext.start(),
        wave=16,
        on_reply=lambda index, reply: told.append(index),
    )
    assert [reply.outcome for reply in late] == [Outcome.TIMEOUT] * len(ROLES)
    # Let the late replies come in: none is checked, and ``on_reply`` hears of none (nor of a TIMEOUT).
    await validator_nc.flush()
    await asyncio.sleep(0.2)
    assert groups == []
    assert told == []
    assert sender._unverified == []
    replies = await sender.send_round(
        a_round(sender, nonce=300),
        timeout_s=1.5,
        trace=TraceContext.start(),
        wave=16,
    )
    assert [reply.outcome for reply in replies] == [EXPECTED[role] for role in ROLES]
