"""Miners and validators over a real nats-server and a real consensus process (python -m), with a real
OpenAI-compatible HTTP server on loopback (``FakeEngine``) where vLLM is not the point.

The subnet: validator V (600 TAO, gets a permit at the first epoch), validator U (no stake: registered,
never permitted) and miner hotkeys M0..M5. Blocks are 0.1 s and the tempo 10 blocks (an epoch a
second), so permits arrive within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import bus, natslite, signing, subjects
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView, from_response
from kubetensor.core.tracecontext import TraceContext
from kubetensor.devnet import components
from kubetensor.miner.completions import CompletionsClient
from kubetensor.miner.jobs import Status
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.service import MinerService
from kubetensor.miner.servicer import create_server
from kubetensor.miner.settings import DEFAULT_MAX_PENDING_TASKS, MinerSettings
from kubetensor.miner.subscriber import TaskSubscriber
from kubetensor.sandbox.errors import ProcessStartError
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.sandbox.tools import Tools
from kubetensor.v1 import miner_pb2, miner_pb2_grpc, task_pb2
from kubetensor.validator.consensus import ConsensusAdapter
from kubetensor.validator.rounds import Outcome, OutgoingTask, Reply, SealedTask
from kubetensor.validator.service import ValidatorService
from kubetensor.validator.state import StateFile
from kubetensor.validator.taskclient import MinerTaskClient, decode_report, seal_round, task_to_proto
from kubetensor.validator.tasks import default_registry

from tests.network_support import TAO, FakeEngine, eventually, keypair

NETUID = 1
VALIDATOR = keypair(31)
UNPERMITTED = keypair(32)
MINERS = tuple(keypair(40 + i) for i in range(6))
COLDKEY = keypair(99).hotkey


@dataclass
class Subnet:
    consensus: components.Component
    address: str
    nats_url: str


@pytest.fixture(scope="module")
def subnet(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subnet]:
    workdir = tmp_path_factory.mktemp("subnet")
    consensus = components.consensus(
        workdir,
        netuid=NETUID,
        block_seconds=0.1,
        tempo_blocks=10,
        genesis_stake={VALIDATOR.hotkey: 600 * TAO},
        extra_env={"KT_CONSENSUS_WEIGHTS_RATE_LIMIT": "0"},
    ).start(timeout=60)
    try:

        async def register() -> None:
            async with ConsensusClient.connect(consensus.address, netuid=NETUID) as client:
                for key in (VALIDATOR, UNPERMITTED, *MINERS):
                    await client.register(key, coldkey=COLDKEY, nonce=1)

                async def permitted() -> bool:
                    view = from_response(await client.metagraph())
                    return view.has_permit(VALIDATOR.hotkey)

                await eventually(permitted, what="the validator's permit from an epoch", seconds=60)

        asyncio.run(register())
        yield Subnet(consensus=consensus, address=consensus.address, nats_url=nats_server.url)
    finally:
        consensus.stop(grace=5)


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    server = FakeEngine().start()
    try:
        yield server
    finally:
        server.stop()


class RunningMiner:
    """A miner service in this process: NATS subscriber + gRPC server, on a FakeEngine."""

    def __init__(
        self,
        subnet: Subnet,
        key: Keypair,
        engine: FakeEngine,
        *,
        max_concurrency: int = 8,
        max_pending: int = DEFAULT_MAX_PENDING_TASKS,
        lite: bool = False,
    ) -> None:
        self.subnet = subnet
        self.key = key
        self.engine = engine
        self.max_concurrency = max_concurrency
        self.max_pending = max_pending
        self.lite = lite

    async def __aenter__(self) -> RunningMiner:
        self.consensus = ConsensusClient.connect(self.subnet.address, netuid=NETUID)
        self.completions = CompletionsClient(base_url=self.engine.base_url, model="", request_seconds=30)
        await self.completions.wait_ready(within_seconds=10)

        async def fetch() -> MetagraphView:
            return from_response(await self.consensus.metagraph())

        self.permits = PermitCache(fetch, netuid=NETUID, refresh_seconds=5, miss_refresh_seconds=0.5)
        self.service = MinerService(
            keypair=self.key,
            netuid=NETUID,
            engine=self.completions,
            permits=self.permits,
            max_concurrency=self.max_concurrency,
        )
        # nats.py by default; ``lite``: the lean client the miner process connects with.
        self.nc: nats.aio.client.Client | natslite.LiteClient = (
            await bus.connect_tasks(self.subnet.nats_url, name="test-miner")
            if self.lite
            else await nats.connect(self.subnet.nats_url)
        )
        self.subscriber = TaskSubscriber(self.nc, self.service, max_pending=self.max_pending)
        await self.permits.start()
        await self.subscriber.start()
        self.server, self.port = create_server(MinerSettings(listen="127.0.0.1:0"), self.service)
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(0)
        await self.subscriber.stop(grace=1)
        await self.nc.close()
        await self.permits.stop()
        await self.completions.close()
        await self.consensus.close()


@pytest.fixture
async def client_nc(subnet: Subnet) -> AsyncIterator[nats.aio.client.Client]:
    nc = await nats.connect(subnet.nats_url)
    try:
        yield nc
    finally:
        await nc.close()


def outgoing(miner: Keypair, *, nonce: int, prompt: str = "47+85=", timeout_s: float = 5.0) -> OutgoingTask:
    return OutgoingTask(
        task_id=f"task-{nonce}",
        netuid=NETUID,
        task_type="addition",
        prompt=prompt,
        max_tokens=6,
        miner_hotkey=miner.hotkey,
        nonce=nonce,
        deadline_unix_ms=time.time_ns() // 1_000_000 + round(timeout_s * 1000),
    )


def sealed(sender: MinerTaskClient, task: OutgoingTask) -> SealedTask:
    """``task`` as a round of one."""
    [one] = sender.seal([task])
    return one


async def raw_request(
    nc: nats.aio.client.Client, task: task_pb2.Task, *, to: Keypair = MINERS[0]
) -> task_pb2.TaskResponse:
    msg = await nc.request(subjects.miner_tasks(NETUID, to.hotkey), task.SerializeToString(), timeout=5)
    return task_pb2.TaskResponse.FromString(msg.data)


# -- the miner ----------------------------------------------------------------------------------------


async def test_miner_answers_a_permitted_validator_and_continues_its_trace(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    async with RunningMiner(subnet, MINERS[0], engine):
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        trace = TraceContext.start()
        reply = await sender.send(sealed(sender, outgoing(MINERS[0], nonce=1)), timeout_s=5, trace=trace)
    assert reply.outcome is Outcome.OK, reply.detail
    assert reply.completion == "231"
    # This process does not trace: the engine continues the validator's span itself (a span of the
    # miner's would be one nobody records), and the reply carries no headers.
    assert engine.traceparents == [trace.traceparent]
    assert reply.trace is None


async def test_a_task_sent_without_a_trace_reaches_the_engine_without_one(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    # An untraced validator starts no trace: no headers on the task, none made up by the miner.
    async with RunningMiner(subnet, MINERS[0], engine):
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        seen: list[nats.aio.msg.Msg] = []

        async def copy(msg: nats.aio.msg.Msg) -> None:
            seen.append(msg)

        await client_nc.subscribe(subjects.miner_tasks(NETUID, MINERS[0].hotkey), cb=copy)
        await client_nc.flush()
        reply = await sender.send(sealed(sender, outgoing(MINERS[0], nonce=1)), timeout_s=5, trace=None)
    assert reply.outcome is Outcome.OK, reply.detail
    assert [msg.headers for msg in seen] == [None]
    assert engine.traceparents == []
    assert reply.trace is None


async def test_send_round_answers_every_task_and_continues_the_round_trace(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    async with RunningMiner(subnet, MINERS[0], engine), RunningMiner(subnet, MINERS[5], engine):
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        trace = TraceContext.start()
        first = outgoing(MINERS[0], nonce=1)
        tasks = [first] + [
            replace(first, task_id=f"task-{nonce}", miner_hotkey=miner.hotkey, nonce=nonce)
            for miner, nonce in ((MINERS[5], 2), (MINERS[1], 3))
        ]
        replies = await sender.send_round(sender.seal(tasks), timeout_s=2, trace=trace, wave=1)
    # In order: both running miners answer, the one that is down has no responders; latencies are real.
    assert [reply.outcome for reply in replies] == [Outcome.OK, Outcome.OK, Outcome.NO_RESPONDERS]
    assert [reply.completion for reply in replies[:2]] == ["231", "231"]
    assert all(0 < reply.latency_s < 5 for reply in replies)
    # Each miner's engine continued the round's trace, from the span of its own task.
    assert {TraceContext.parse(seen).trace_id for seen in engine.traceparents} == {trace.trace_id}  # type: ignore[union-attr]
    assert len(set(engine.traceparents)) == 2
    assert [reply.trace for reply in replies] == [None, None, None]


async def test_miner_refuses_a_validator_without_permit(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    async with RunningMiner(subnet, MINERS[0], engine):
        sender = MinerTaskClient(client_nc, keypair=UNPERMITTED)
        reply = await sender.send(
            sealed(sender, outgoing(MINERS[0], nonce=1)), timeout_s=5, trace=TraceContext.start()
        )
    assert reply.outcome is Outcome.REFUSED
    assert "no validator permit" in reply.detail
    assert engine.requests == 0


async def test_miner_refuses_a_replayed_task(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    task = task_to_proto(outgoing(MINERS[0], nonce=77), keypair=VALIDATOR)
    async with RunningMiner(subnet, MINERS[0], engine):
        first = await raw_request(client_nc, task)
        second = await raw_request(client_nc, task)
    assert first.status == task_pb2.TASK_STATUS_OK
    assert second.status == task_pb2.TASK_STATUS_REFUSED
    assert "replay" in second.error
    assert engine.requests == 1


async def send_with_a_third_party_listening(
    subnet: Subnet,
    engine: FakeEngine,
    client_nc: nats.aio.client.Client,
    react: Callable[[nats.aio.client.Client, nats.aio.msg.Msg], Awaitable[None]],
    *,
    nonce: int,
    unsigned: list[Outcome] | None = None,
) -> Reply:
    """One task to ``MINERS[0]`` (running, its engine 0.3 s slow), while another client that reads the
    miner's subject calls ``react`` on each task it sees there, before the miner has answered; the
    validator's ``on_unsigned`` appends to ``unsigned``."""
    third_party = await nats.connect(subnet.nats_url)

    async def seen(msg: nats.aio.msg.Msg) -> None:
        await react(third_party, msg)
        await third_party.flush()

    try:
        await third_party.subscribe(subjects.miner_tasks(NETUID, MINERS[0].hotkey), cb=seen)
        await third_party.flush()
        engine.delay_s = 0.3
        async with RunningMiner(subnet, MINERS[0], engine):
            sender = MinerTaskClient(
                client_nc, keypair=VALIDATOR, on_unsigned=unsigned.append if unsigned is not None else None
            )
            return await sender.send(
                sealed(sender, outgoing(MINERS[0], nonce=nonce)), timeout_s=5, trace=TraceContext.start()
            )
    finally:
        await third_party.close()


async def test_copies_of_a_task_in_hand_cannot_answer_for_the_miner(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    """An eavesdropper on the miner's subject republishes each task at once, reply subject and all:
    an exact copy (a replay) and one with its envelope changed (a bad signature). Answered, their
    refusals, signed by the miner, would reach the validator's inbox before the slow genuine answer and
    count as the miner's answer; the miner answers neither, and the validator gets the completion."""
    copies: list[str] = []

    async def republish(eavesdropper: nats.aio.client.Client, msg: nats.aio.msg.Msg) -> None:
        if msg.headers is None or "copied" in msg.headers:
            return
        headers = dict(msg.headers) | {"copied": "1"}
        await eavesdropper.publish(msg.subject, msg.data, reply=msg.reply, headers=headers)
        forged = task_pb2.Task.FromString(msg.data)
        envelope = task_pb2.RoundEnvelope.FromString(forged.envelope)
        envelope.prompt = "1+1="
        forged.envelope = envelope.SerializeToString()
        await eavesdropper.publish(msg.subject, forged.SerializeToString(), reply=msg.reply, headers=headers)
        copies.append(msg.reply)

    reply = await send_with_a_third_party_listening(subnet, engine, client_nc, republish, nonce=91)
    assert len(copies) == 1
    assert reply.outcome is Outcome.OK, reply.detail
    assert reply.completion == "231"
    assert engine.requests == 1


async def test_a_competitor_answering_for_a_miner_cannot_take_its_task(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    """Another participant reads the miner's subject and answers each task at once on the validator's
    reply subject: bytes that are no TaskResponse, a no-responders status, and an answer the miner
    really signed, for an earlier task. None of them is the miner's answer to this task; the validator
    waits for that one (the miner answers 0.3 s later) and takes it."""
    async with RunningMiner(subnet, MINERS[0], engine):
        earlier = await raw_request(
            client_nc, task_to_proto(outgoing(MINERS[0], nonce=61), keypair=VALIDATOR)
        )
    assert earlier.status == task_pb2.TASK_STATUS_OK
    answered: list[str] = []

    async def answer_for_the_miner(competitor: nats.aio.client.Client, msg: nats.aio.msg.Msg) -> None:
        await competitor.publish(msg.reply, b"\x00garbage")
        await competitor.publish(msg.reply, b"", headers={"Status": "503"})
        await competitor.publish(msg.reply, earlier.SerializeToString())
        answered.append(msg.reply)

    unsigned: list[Outcome] = []
    reply = await send_with_a_third_party_listening(
        subnet, engine, client_nc, answer_for_the_miner, nonce=63, unsigned=unsigned
    )
    assert len(answered) == 1
    assert reply.outcome is Outcome.OK, reply.detail
    assert reply.completion == "231"
    assert reply.latency_s >= 0.3
    # The three answers were seen, and counted as replies the miner did not sign (the earlier answer is
    # the miner's, but for another task).
    assert unsigned == [Outcome.GARBAGE, Outcome.NO_RESPONDERS, Outcome.GARBAGE]


def one_round(miner: Keypair, nonces: range) -> list[OutgoingTask]:
    """One task to ``miner`` per nonce, as one round (one deadline)."""
    first = outgoing(miner, nonce=nonces[0])
    return [replace(first, task_id=f"task-{nonce}", nonce=nonce) for nonce in nonces]


async def test_a_participant_in_the_queue_group_named_after_a_miner_takes_none_of_its_tasks(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    """Another participant of the subnet (it has the subnet's NATS credentials) joins the queue group
    anyone can name from the miner's hotkey, ``miner.<hotkey>``, and takes what it is given without
    answering. Each queue group on a subject gets its own copy of every message, shared out among the
    group's members: the miner's group is named with a secret of its seed, so the participant only gets
    copies, and the miner answers every task of the round."""
    subject = subjects.miner_tasks(NETUID, MINERS[0].hotkey)
    taken: list[str] = []
    participant = await nats.connect(subnet.nats_url)

    async def take(msg: nats.aio.msg.Msg) -> None:
        taken.append(msg.reply)

    try:
        await participant.subscribe(subject, queue=f"miner.{MINERS[0].hotkey}", cb=take)
        await participant.flush()
        async with RunningMiner(subnet, MINERS[0], engine, max_concurrency=20, lite=True):
            sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
            replies = await sender.send_round(
                sender.seal(one_round(MINERS[0], range(401, 421))), timeout_s=5, trace=TraceContext.start()
            )
    finally:
        await participant.close()
    assert [reply.outcome for reply in replies] == [Outcome.OK] * 20, [r.detail for r in replies]
    assert len(taken) == 20
    assert engine.requests == 20


async def test_the_replicas_of_one_miner_share_its_tasks(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    """Two replicas of one miner (the same seed, so the same queue group) each answer a share of a
    round's tasks, and every task once."""
    async with (
        RunningMiner(subnet, MINERS[0], engine, max_concurrency=40, lite=True) as first,
        RunningMiner(subnet, MINERS[0], engine, max_concurrency=40) as second,
    ):
        assert first.service.queue_group == second.service.queue_group
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        replies = await sender.send_round(
            sender.seal(one_round(MINERS[0], range(431, 471))), timeout_s=5, trace=TraceContext.start()
        )
        answered = [replica.service.metrics.tasks.counts[Status.OK] for replica in (first, second)]
    assert [reply.outcome for reply in replies] == [Outcome.OK] * 40, [r.detail for r in replies]
    assert engine.requests == 40
    assert sum(answered) == 40
    assert min(answered) > 0, answered


def miner_process(
    subnet: Subnet,
    engine: FakeEngine,
    workdir: Path,
    *,
    name: str,
    keypair: Keypair,
    nats_url: str | None = None,
    replay_journal: bool = True,
    extra_env: dict[str, str] | None = None,
) -> components.Component:
    """A miner process (``python -m kubetensor.miner``, not started) of this subnet on ``engine``; its NATS
    is the subnet's unless ``nats_url`` names another."""
    return components.miner(
        workdir,
        name=name,
        keypair=keypair,
        netuid=NETUID,
        nats_url=nats_url or subnet.nats_url,
        consensus_address=subnet.address,
        engine_url=engine.base_url,
        permit_refresh_seconds=1,
        replay_journal=replay_journal,
        extra_env=extra_env,
    )


@pytest.mark.parametrize("kind", ["token", "user"])
async def test_a_miner_process_takes_its_nats_credentials_from_a_folder(
    subnet: Subnet, engine: FakeEngine, tools: Tools, tmp_path: Path, kind: str
) -> None:
    """A NATS that wants a token (or a user and password): the miner process reads them from the folder
    ``KT_MINER_NATS_AUTH_DIR`` names (a mounted Secret on Kubernetes), answers tasks, and says them
    nowhere: not in its log, not in its ready file. Without the folder it refuses to start, saying why."""
    secret = "s3cret/with:odd@chars"
    flags = ["--auth", secret] if kind == "token" else ["--user", "kt-miner", "--pass", secret]
    folder = tmp_path / "nats-auth"
    folder.mkdir()
    if kind == "token":
        (folder / "token").write_text(secret + "\n")
    else:
        (folder / "user").write_text("kt-miner")
        (folder / "password").write_text(secret)
    server = NatsServer(tmp_path / "nats", tools=tools).start(extra_args=flags)
    miner_key = MINERS[4]
    miner = miner_process(
        subnet,
        engine,
        tmp_path,
        name="authed",
        keypair=miner_key,
        nats_url=server.url,
        extra_env={"KT_MINER_NATS_AUTH_DIR": str(folder)},
    )
    refused = miner_process(
        subnet, engine, tmp_path, name="no-credentials", keypair=miner_key, nats_url=server.url
    )
    nc = None
    try:
        miner.start(timeout=60)
        credentials = {"token": secret} if kind == "token" else {"user": "kt-miner", "password": secret}
        nc = await nats.connect(server.url, **credentials)  # type: ignore[arg-type]
        answer = await raw_request(
            nc, task_to_proto(outgoing(miner_key, nonce=5151), keypair=VALIDATOR), to=miner_key
        )
        assert answer.status == task_pb2.TASK_STATUS_OK, answer.error
        assert answer.completion == "231"
        with pytest.raises(ProcessStartError):
            refused.start(timeout=60)
        assert refused.exit_code() not in (None, 0)
        # One line that says why, not a traceback.
        said = refused.log_tail(50)
        assert "not starting: the NATS server at" in said
        assert "requires authentication and none was given" in said
        assert "Traceback" not in said
    finally:
        if nc is not None:
            await nc.close()
        miner.stop(grace=5)
        refused.stop(grace=5)
        server.stop()
    for where in (miner.log_path.read_text(), miner.ready_file.read_text()):
        assert secret not in where
        assert urllib.parse.quote(secret, safe="") not in where


def test_a_validator_process_with_an_unusable_nats_credentials_folder_refuses_to_start(
    subnet: Subnet, tmp_path: Path
) -> None:
    """The validator joins the folder's credentials to its NATS URL as the miner does: a folder without
    them stops it at once, in one line naming the setting and what the folder lacks."""
    empty = tmp_path / "nats-auth"
    empty.mkdir()
    validator = components.validator(
        tmp_path,
        name="no-credentials",
        keypair=VALIDATOR,
        netuid=NETUID,
        nats_url=subnet.nats_url,
        consensus_address=subnet.address,
        round_seconds=1,
        task_timeout_seconds=1,
        weights_interval_seconds=60,
        weights_retry_seconds=5,
        moving_average_alpha=0.1,
        extra_env={"KT_VALIDATOR_NATS_AUTH_DIR": str(empty)},
    )
    try:
        with pytest.raises(ProcessStartError):
            validator.start(timeout=60)
        said = validator.log_tail(50)
    finally:
        validator.stop(grace=5)
    folder = f"KT_VALIDATOR_NATS_AUTH_DIR: NATS credentials folder {empty}"
    assert f"not starting: {folder}: needs a non-empty file" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "memory-only"])
async def test_a_miner_process_killed_and_restarted_still_refuses_a_replayed_task(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client, tmp_path: Path, journal: bool
) -> None:
    miner_key = MINERS[5]
    task = task_to_proto(outgoing(miner_key, nonce=4242, timeout_s=60), keypair=VALIDATOR)
    miner = miner_process(
        subnet, engine, tmp_path, name="restarted", keypair=miner_key, replay_journal=journal
    )
    try:
        miner.start(timeout=60)
        first = await raw_request(client_nc, task, to=miner_key)
        os.kill(miner.process.pid, signal.SIGKILL)  # a crash: no cleanup, no flush on the way out
        assert miner.process.popen is not None
        miner.process.popen.wait(timeout=10)
        miner.start(timeout=60)
        replayed = await raw_request(client_nc, task, to=miner_key)
        fresh = await raw_request(
            client_nc,
            task_to_proto(outgoing(miner_key, nonce=4243, timeout_s=60), keypair=VALIDATOR),
            to=miner_key,
        )
    finally:
        miner.stop(grace=5)
    assert first.status == task_pb2.TASK_STATUS_OK
    assert fresh.status == task_pb2.TASK_STATUS_OK
    if journal:
        assert replayed.status == task_pb2.TASK_STATUS_REFUSED
        assert "replay" in replayed.error
        assert engine.requests == 2
        assert "1 unexpired tasks restored" in miner.log_tail(200)
    else:
        # The gap the journal closes: a memory-only guard forgets across the restart.
        assert replayed.status == task_pb2.TASK_STATUS_OK
        assert engine.requests == 3


async def test_miner_refuses_a_forged_or_misaddressed_task(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    forged = task_to_proto(outgoing(MINERS[0], nonce=5), keypair=VALIDATOR)
    envelope = task_pb2.RoundEnvelope.FromString(forged.envelope)
    envelope.prompt = "1+1="  # changed after signing
    forged.envelope = envelope.SerializeToString()
    # Signed by an outsider but claiming to come from the permitted validator.
    impostor = task_to_proto(outgoing(MINERS[0], nonce=6), keypair=UNPERMITTED)
    envelope = task_pb2.RoundEnvelope.FromString(impostor.envelope)
    envelope.validator_hotkey = VALIDATOR.hotkey
    impostor.envelope = envelope.SerializeToString()
    other_subnet = task_to_proto(replace(outgoing(MINERS[0], nonce=7), netuid=NETUID + 1), keypair=VALIDATOR)
    # A round for two miners: the other miner's task sent here, and this miner's leaf with a bad proof.
    for_other, mine = seal_round(
        [outgoing(MINERS[1], nonce=8), outgoing(MINERS[0], nonce=9)], keypair=VALIDATOR
    )
    mine.proof[0] = bytes(32)
    async with RunningMiner(subnet, MINERS[0], engine):
        answers = [
            await raw_request(client_nc, task) for task in (forged, impostor, other_subnet, for_other, mine)
        ]
        garbage = await client_nc.request(
            subjects.miner_tasks(NETUID, MINERS[0].hotkey), b"\xff\x00", timeout=5
        )
    assert [a.status for a in answers] == [task_pb2.TASK_STATUS_REFUSED] * 5
    assert answers[0].error.startswith("signature")
    assert answers[1].error.startswith("signature")
    assert answers[2].error.startswith("netuid")
    assert answers[3].error.startswith("miner_hotkey")
    assert answers[4].error.startswith("proof")
    assert [a.task_id for a in answers[3:]] == ["task-8", "task-9"]
    assert task_pb2.TaskResponse.FromString(garbage.data).status == task_pb2.TASK_STATUS_REFUSED
    assert engine.requests == 0
    # Every answer, refusals included, is signed by the miner.
    for answer in answers:
        assert answer.signature.public_key == MINERS[0].public_key


async def test_miner_refuses_an_expired_task(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    async with RunningMiner(subnet, MINERS[0], engine):
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        reply = await sender.send(
            sealed(sender, outgoing(MINERS[0], nonce=1, timeout_s=-1)),
            timeout_s=5,
            trace=TraceContext.start(),
        )
    assert reply.outcome is Outcome.EXPIRED
    assert engine.requests == 0


async def test_full_miner_answers_busy_instead_of_queueing(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client
) -> None:
    engine.mode = "hang"
    async with RunningMiner(subnet, MINERS[0], engine, max_concurrency=1) as miner:
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        # The validator stops waiting (1 s) well before the task's deadline (2 s), where the miner gives
        # up on the hung generation and answers FAILED: with both at 2 s, that answer could arrive just
        # before the validator's timeout (seen once in CI, 40 us early).
        hanging = asyncio.create_task(
            sender.send(
                sealed(sender, outgoing(MINERS[0], nonce=1, timeout_s=2)),
                timeout_s=1,
                trace=TraceContext.start(),
            )
        )
        await eventually(lambda: engine.requests == 1, what="the first task to reach the engine")
        second = await sender.send(
            sealed(sender, outgoing(MINERS[0], nonce=2)), timeout_s=2, trace=TraceContext.start()
        )
        # The gRPC path shares the slots: a direct call hears UNAVAILABLE at once.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel:
            stub = miner_pb2_grpc.MinerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in stub.Generate(miner_pb2.GenerateRequest(prompt="1+2="), timeout=5):
                    pass
        first = await hanging
    assert second.outcome is Outcome.BUSY
    assert "slots" in second.detail
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert first.outcome is Outcome.TIMEOUT
    assert engine.requests == 1


@pytest.mark.parametrize("lite", [True, False], ids=["lite-client", "nats.py"])
async def test_a_miner_holding_its_backlog_limit_answers_busy_unchecked_until_it_drains(
    subnet: Subnet,
    engine: FakeEngine,
    client_nc: nats.aio.client.Client,
    caplog: pytest.LogCaptureFixture,
    lite: bool,
) -> None:
    engine.mode = "hang"
    caplog.set_level(logging.INFO, logger="kubetensor.miner.subscriber")
    async with RunningMiner(subnet, MINERS[0], engine, max_pending=2, lite=lite):
        sender = MinerTaskClient(client_nc, keypair=VALIDATOR)
        held = [
            asyncio.create_task(
                sender.send(
                    sealed(sender, outgoing(MINERS[0], nonce=nonce, timeout_s=1)),
                    timeout_s=3,
                    trace=TraceContext.start(),
                )
            )
            for nonce in (1, 2)
        ]
        await eventually(lambda: engine.requests == 2, what="both tasks to reach the engine")
        # Generation slots are free (8), but the miner holds 2 tasks: its limit. The third is answered
        # at once, without reaching the engine, and so is a fourth.
        shed = [
            await sender.send(
                sealed(sender, outgoing(MINERS[0], nonce=nonce)), timeout_s=3, trace=TraceContext.start()
            )
            for nonce in (3, 4)
        ]
        # The held tasks reach their deadline (the miner answers FAILED); then tasks are taken again.
        timed_out = await asyncio.gather(*held)
        engine.mode = "answer"
        after = await sender.send(
            sealed(sender, outgoing(MINERS[0], nonce=5)), timeout_s=3, trace=TraceContext.start()
        )
    assert [reply.outcome for reply in shed] == [Outcome.BUSY, Outcome.BUSY]
    assert all("backlog limit" in reply.detail for reply in shed)
    assert [reply.outcome for reply in timed_out] == [Outcome.FAILED, Outcome.FAILED]
    assert after.outcome is Outcome.OK
    assert after.completion == "231"
    assert engine.requests == 3
    messages = [record.getMessage() for record in caplog.records]
    assert sum("answering BUSY, unchecked" in message for message in messages) == 1
    assert any("2 tasks were answered BUSY unchecked" in message for message in messages)


async def test_generate_streams_chunks_and_health_serves(subnet: Subnet, engine: FakeEngine) -> None:
    async with (
        RunningMiner(subnet, MINERS[0], engine) as miner,
        grpc.aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel,
    ):
        stub = miner_pb2_grpc.MinerServiceStub(channel)
        chunks = [c async for c in stub.Generate(miner_pb2.GenerateRequest(prompt="47+85="), timeout=10)]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.Generate(miner_pb2.GenerateRequest(prompt=""), timeout=10):
                pass
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert "".join(c.text for c in chunks) == "231"
    assert chunks[-1].finish_reason == "stop"
    assert len(chunks) > 1
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt" in (raised.value.details() or "")
    assert health.status == health_pb2.HealthCheckResponse.SERVING


# -- the validator --------------------------------------------------------------------------------------


async def bad_signature_responder(msg: nats.aio.msg.Msg) -> None:
    """Answers like a miner, but signs with a key that is not the miner's."""
    task = task_pb2.Task.FromString(msg.data)
    leaf = task_pb2.TaskLeaf.FromString(task.leaf)
    response = task_pb2.TaskResponse(
        task_id=leaf.task_id,
        miner_hotkey=leaf.miner_hotkey,
        completion="231",
        status=task_pb2.TASK_STATUS_OK,
        validator_hotkey=task_pb2.RoundEnvelope.FromString(task.envelope).validator_hotkey,
    )
    signing.sign(response, keypair(250), domain=subjects.TASK_RESPONSE_DOMAIN)
    response.signature.public_key = bytes.fromhex(leaf.miner_hotkey)
    await msg.respond(response.SerializeToString())


async def garbage_responder(msg: nats.aio.msg.Msg) -> None:
    await msg.respond(b"this is not a protobuf \xff\xfe")


async def silent_responder(msg: nats.aio.msg.Msg) -> None:
    """A miner that hangs: takes the task, never answers."""


def new_validator(
    subnet: Subnet, nc: nats.aio.client.Client, state_path: Path, consensus: ConsensusClient
) -> ValidatorService:
    state_file = StateFile(state_path, netuid=NETUID, hotkey=VALIDATOR.hotkey)
    return ValidatorService(
        hotkey=VALIDATOR.hotkey,
        netuid=NETUID,
        task_kind=default_registry().get("addition"),
        sender=MinerTaskClient(nc, keypair=VALIDATOR),
        consensus=ConsensusAdapter(consensus, keypair=VALIDATOR),
        state_file=state_file,
        state=state_file.load(alpha=0.5),
        task_timeout_s=1.5,
        sample_size=64,
        weights_interval_s=0.5,
        retry_s=0.5,
        rng=random.Random(7),
    )


async def test_round_scores_faulty_miners_zero_and_completes_with_every_miner(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client, tmp_path: Path
) -> None:
    """M0 answers right, M1 is down, M2 hangs, M3 answers garbage, M4 signs with the wrong key, M5's
    engine answers nonsense. Every one of them gets a score in the same round; only M0 scores above 0."""
    wrong_engine = FakeEngine(mode="garbage").start()
    subscriptions = [
        await client_nc.subscribe(subjects.miner_tasks(NETUID, MINERS[2].hotkey), cb=silent_responder),
        await client_nc.subscribe(subjects.miner_tasks(NETUID, MINERS[3].hotkey), cb=garbage_responder),
        await client_nc.subscribe(subjects.miner_tasks(NETUID, MINERS[4].hotkey), cb=bad_signature_responder),
    ]
    reports = await client_nc.subscribe(subjects.validator_rounds(NETUID, VALIDATOR.hotkey))
    try:
        async with (
            ConsensusClient.connect(subnet.address, netuid=NETUID) as consensus,
            RunningMiner(subnet, MINERS[0], engine),
            RunningMiner(subnet, MINERS[5], wrong_engine),
        ):
            validator = new_validator(subnet, client_nc, tmp_path / "validator.json", consensus)
            summary = await validator.run_round()
            assert summary is not None
            outcomes = {s.hotkey: s for s in summary.scores}
            report = decode_report((await reports.next_msg(timeout=5)).data)
            metagraph = from_response(await consensus.metagraph())
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
        await reports.unsubscribe()
        wrong_engine.stop()
    # Validators are not queried; every miner is, once.
    assert set(outcomes) == {m.hotkey for m in MINERS} | {UNPERMITTED.hotkey}
    assert outcomes[MINERS[0].hotkey].outcome is Outcome.OK
    assert outcomes[MINERS[0].hotkey].correctness == 1.0
    assert outcomes[MINERS[0].hotkey].score > 0.9
    expected = {
        MINERS[1].hotkey: Outcome.NO_RESPONDERS,
        MINERS[2].hotkey: Outcome.TIMEOUT,
        MINERS[3].hotkey: Outcome.GARBAGE,
        MINERS[4].hotkey: Outcome.BAD_SIGNATURE,
        MINERS[5].hotkey: Outcome.OK,
        UNPERMITTED.hotkey: Outcome.NO_RESPONDERS,
    }
    for hotkey, outcome in expected.items():
        assert outcomes[hotkey].outcome is outcome, (hotkey[:8], outcomes[hotkey])
        assert outcomes[hotkey].score == 0.0
    # The round set weights: M0 holds the whole weight on the consensus service, and the report says so.
    assert summary.weights_block > 0
    assert report is not None
    assert report.round == summary.round == 1
    assert report.weights == summary.weights
    m0_uid = metagraph.neuron(MINERS[0].hotkey).uid  # type: ignore[union-attr]
    assert dict(summary.weights)[m0_uid] == 65_535
    assert all(w == 0 for uid, w in summary.weights if uid != m0_uid)


async def test_miner_back_after_being_down_is_scored_again(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client, tmp_path: Path
) -> None:
    async with ConsensusClient.connect(subnet.address, netuid=NETUID) as consensus:
        validator = new_validator(subnet, client_nc, tmp_path / "validator.json", consensus)
        down = await validator.run_round()
        async with RunningMiner(subnet, MINERS[1], engine):
            back = await validator.run_round()
    assert down is not None
    assert back is not None
    before = {s.hotkey: s for s in down.scores}[MINERS[1].hotkey]
    after = {s.hotkey: s for s in back.scores}[MINERS[1].hotkey]
    assert before.outcome is Outcome.NO_RESPONDERS
    assert before.moving_average == 0.0
    assert after.outcome is Outcome.OK
    assert after.moving_average > 0.4


async def test_restarted_validator_resumes_its_moving_averages(
    subnet: Subnet, engine: FakeEngine, client_nc: nats.aio.client.Client, tmp_path: Path
) -> None:
    state = tmp_path / "validator.json"
    async with (
        ConsensusClient.connect(subnet.address, netuid=NETUID) as consensus,
        RunningMiner(subnet, MINERS[0], engine),
    ):
        first = new_validator(subnet, client_nc, state, consensus)
        await first.run_round()
        await first.run_round()
        # What a process that stops does: the last round's state reaches the disk.
        await first.drain()
        before = first.state
        # A new service on the same state file: what a restarted process does.
        second = new_validator(subnet, client_nc, state, consensus)
        resumed = second.state
        summary = await second.run_round()
    assert resumed == before
    assert resumed.round == 2
    m0 = {s.hotkey: s for s in summary.scores}[MINERS[0].hotkey] if summary else None
    assert m0 is not None
    # 0.5 -> 0.75 -> 0.875 with alpha 0.5 and perfect scores (latency trims a little).
    assert m0.moving_average > before.averages.value(m0.uid, MINERS[0].hotkey)
    assert summary is not None
    assert summary.round == 3
