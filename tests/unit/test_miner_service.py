"""MinerService's checks, slots and answers; the replay guard; the permit cache; SSE event parsing.
No servers: the engine and the permit source are in-process doubles (the integration tests use real ones)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from kubetensor.core import keys, subjects
from kubetensor.core.keys import Keypair, VerifiedSignatures
from kubetensor.core.metagraphview import MetagraphView, NeuronView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.completions import parse_event
from kubetensor.miner.deadlines import GenerationDeadlines
from kubetensor.miner.errors import (
    EngineError,
    MetagraphUnavailableError,
    MinerBusyError,
    NoPermitError,
    ReplayedTaskError,
)
from kubetensor.miner.jobs import Chunk, Job, Status
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.replay import ReplayGuard
from kubetensor.miner.service import MinerService
from kubetensor.miner.subscriber import job_from_proto
from kubetensor.v1 import task_pb2
from kubetensor.validator.rounds import OutgoingTask
from kubetensor.validator.taskclient import seal_round, task_to_proto

VALIDATOR = Keypair(b"\x01" * 32)
MINER = Keypair(b"\x02" * 32)
STRANGER = Keypair(b"\x03" * 32)
NOW_MS = 1_800_000_000_000


class Engine:
    """Streams a fixed answer; ``gate`` (when set) holds every stream until released."""

    def __init__(self, text: str = "231") -> None:
        self.text = text
        self.calls: list[tuple[str, int, float, TraceContext | None]] = []
        self.gate: asyncio.Event | None = None
        self.entered: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def stream(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncIterator[Chunk]:
        self.calls.append((prompt, max_tokens, temperature, trace))
        if self.entered is not None:
            self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        for ch in self.text:
            yield Chunk(text=ch)
        yield Chunk(text="", finish_reason="stop")
        yield Chunk(text="", completion_tokens=len(self.text) + 1)


class Permits:
    def __init__(self, *permitted: str) -> None:
        self.permitted = set(permitted)

    async def check(self, hotkey: str) -> None:
        if hotkey not in self.permitted:
            raise NoPermitError(hotkey, netuid=1)


def service(
    engine: Engine | None = None,
    *,
    max_concurrency: int = 4,
    now_ms: int = NOW_MS,
    keypair: Keypair = MINER,
    signatures: VerifiedSignatures | None = None,
) -> MinerService:
    return MinerService(
        keypair=keypair,
        netuid=1,
        engine=engine or Engine(),
        permits=Permits(VALIDATOR.hotkey),
        max_concurrency=max_concurrency,
        max_ahead_ms=60_000,
        now_ms=lambda: now_ms,
        signatures=signatures,
    )


def test_a_miners_queue_group_is_named_with_a_secret_of_its_seed() -> None:
    """Its replicas (the same seed) share one group; nobody can name it from the hotkey alone."""
    group = service().queue_group
    assert group == service().queue_group
    assert group == subjects.miner_queue(MINER.hotkey, MINER.derive_secret(subjects.MINER_QUEUE_PURPOSE))
    assert group.startswith(f"miner.{MINER.hotkey}.")
    assert group != f"miner.{MINER.hotkey}"
    other = service(keypair=STRANGER).queue_group
    assert other.startswith(f"miner.{STRANGER.hotkey}.")
    assert other.rpartition(".")[2] != group.rpartition(".")[2]


def job(
    *, signer: Keypair = VALIDATOR, nonce: int = 1, deadline_ms: int = NOW_MS + 5_000, **overrides: object
) -> Job:
    fields: dict[str, object] = {
        "task_id": f"t-{nonce}",
        "netuid": 1,
        "task_type": "addition",
        "prompt": "47+85=",
        "max_tokens": 6,
        "miner_hotkey": MINER.hotkey,
        "nonce": nonce,
        "deadline_unix_ms": deadline_ms,
    }
    fields.update(overrides)
    return job_from_proto(task_to_proto(OutgoingTask(**fields), keypair=signer), trace=None)  # type: ignore[arg-type]


async def test_a_valid_task_is_answered_greedily_and_signed_later_by_the_edge() -> None:
    engine = Engine()
    answer = await service(engine).answer(job())
    assert answer.status is Status.OK
    assert answer.completion == "231"
    assert answer.completion_tokens == 4
    assert answer.validator_hotkey == VALIDATOR.hotkey
    assert [(p, m, t) for p, m, t, _ in engine.calls] == [("47+85=", 6, 0.0)]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: job(miner_hotkey=STRANGER.hotkey), "miner_hotkey"),
        (lambda: job(netuid=2), "netuid"),
    ],
)
async def test_a_misaddressed_task_is_refused(make: object, field: str) -> None:
    engine = Engine()
    answer = await service(engine).answer(make())  # type: ignore[operator]
    assert answer.status is Status.REFUSED
    assert answer.error.startswith(field)
    assert engine.calls == []


async def test_a_task_signed_by_someone_else_is_refused() -> None:
    forged = job(signer=STRANGER)
    # The stranger claims to be the permitted validator; the signature gives it away.
    forged = forged._replace(validator_hotkey=VALIDATOR.hotkey)
    answer = await service().answer(forged)
    assert answer.status is Status.REFUSED
    assert "signature" in answer.error


def round_of(miners: list[Keypair], *, signer: Keypair = VALIDATOR) -> list[task_pb2.Task]:
    """One sealed round: a task per miner under one envelope."""
    return seal_round(
        [
            OutgoingTask(
                task_id=f"t-{i}",
                netuid=1,
                task_type="addition",
                prompt="47+85=",
                max_tokens=6,
                miner_hotkey=miner.hotkey,
                nonce=100 + i,
                deadline_unix_ms=NOW_MS + 5_000,
            )
            for i, miner in enumerate(miners)
        ],
        keypair=signer,
    )


async def test_every_miner_of_a_round_answers_its_own_leaf() -> None:
    wires = round_of([STRANGER, MINER, VALIDATOR])
    answer = await service().answer(job_from_proto(wires[1], trace=None))
    assert answer.status is Status.OK
    assert answer.task_id == "t-1"


async def test_a_leaf_addressed_to_another_miner_is_refused() -> None:
    # A valid envelope, leaf and proof, but for the stranger's task.
    engine = Engine()
    answer = await service(engine).answer(job_from_proto(round_of([STRANGER, MINER])[0], trace=None))
    assert answer.status is Status.REFUSED
    assert answer.error.startswith("miner_hotkey")
    assert engine.calls == []


async def test_a_leaf_not_under_the_signed_root_is_refused() -> None:
    # The stranger's leaf rewritten to name this miner (a new nonce), with the stranger's proof.
    stolen = round_of([STRANGER, MINER])[0]
    leaf = task_pb2.TaskLeaf.FromString(stolen.leaf)
    leaf.miner_hotkey, leaf.nonce = MINER.hotkey, 999
    stolen.leaf = leaf.SerializeToString()
    engine = Engine()
    answer = await service(engine).answer(job_from_proto(stolen, trace=None))
    assert answer.status is Status.REFUSED
    assert answer.error.startswith("proof")
    assert engine.calls == []


@pytest.mark.parametrize("damage", ["flip", "drop", "extra"])
async def test_a_damaged_proof_is_refused(damage: str) -> None:
    wire = round_of([STRANGER, MINER, VALIDATOR])[1]
    proof = list(wire.proof)
    if damage == "flip":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    elif damage == "drop":
        proof.pop()
    else:
        proof.append(bytes(32))
    del wire.proof[:]
    wire.proof.extend(proof)
    answer = await service().answer(job_from_proto(wire, trace=None))
    assert answer.status is Status.REFUSED
    assert answer.error.startswith("proof")


async def test_a_changed_envelope_is_refused_as_a_bad_signature() -> None:
    wire = round_of([MINER])[0]
    envelope = task_pb2.RoundEnvelope.FromString(wire.envelope)
    envelope.prompt = "1+1="
    wire.envelope = envelope.SerializeToString()
    engine = Engine()
    answer = await service(engine).answer(job_from_proto(wire, trace=None))
    assert answer.status is Status.REFUSED
    assert answer.error.startswith("signature")
    assert engine.calls == []


async def test_miners_sharing_a_process_verify_a_round_envelope_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = keys.verify

    def counting(public_key: bytes, domain: str, payload: bytes, signature: bytes) -> bool:
        calls.append(payload)
        return real(public_key, domain, payload, signature)

    monkeypatch.setattr(keys, "verify", counting)
    shared = VerifiedSignatures()
    miners = [MINER, STRANGER]
    wires = round_of(miners)
    for miner, wire in zip(miners, wires, strict=True):
        answer = await service(keypair=miner, signatures=shared).answer(job_from_proto(wire, trace=None))
        assert answer.status is Status.OK
    assert len(calls) == 1
    # A forged signature is verified (and refused) each time it comes: failures are not remembered.
    forged = round_of(miners)
    for miner, wire in zip(miners, forged, strict=True):
        wire.signature.signature = bytes([wire.signature.signature[0] ^ 1]) + wire.signature.signature[1:]
        answer = await service(keypair=miner, signatures=shared).answer(job_from_proto(wire, trace=None))
        assert answer.status is Status.REFUSED
        assert answer.error.startswith("signature")
    assert len(calls) == 3


def test_verified_signatures_remember_only_the_exact_check_that_passed() -> None:
    cache = VerifiedSignatures(capacity=2)
    payload = b"round"
    signature = VALIDATOR.sign(subjects.ROUND_ENVELOPE_DOMAIN, payload)
    assert cache.verify(VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, signature)
    assert cache.verify(VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, signature)
    # A different message, key, domain or signature is not a hit: it is verified, and fails.
    assert not cache.verify(VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, b"other", signature)
    assert not cache.verify(STRANGER.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, signature)
    assert not cache.verify(VALIDATOR.public_key, subjects.ROUND_REPORT_DOMAIN, payload, signature)
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    assert not cache.verify(VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, forged)
    assert len(cache) == 1


def test_verified_signatures_forget_the_least_recently_used_beyond_capacity() -> None:
    cache = VerifiedSignatures(capacity=2)
    signed = [(p, VALIDATOR.sign("D", p)) for p in (b"a", b"b", b"c")]
    for payload, signature in signed:
        assert cache.verify(VALIDATOR.public_key, "D", payload, signature)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="capacity"):
        VerifiedSignatures(capacity=0)


async def test_a_validator_without_permit_is_refused() -> None:
    engine = Engine()
    answer = await service(engine).answer(job(signer=STRANGER))
    assert answer.status is Status.REFUSED
    assert "permit" in answer.error
    assert engine.calls == []


@pytest.mark.parametrize("deadline_ms", [NOW_MS, NOW_MS - 1, NOW_MS + 60_001])
async def test_a_deadline_past_or_too_far_ahead_expires_the_task(deadline_ms: int) -> None:
    answer = await service().answer(job(deadline_ms=deadline_ms))
    assert answer.status is Status.EXPIRED
    assert "deadline_unix_ms" in answer.error


async def test_the_same_nonce_twice_is_a_replay() -> None:
    miner = service()
    first = await miner.answer(job(nonce=5))
    second = await miner.answer(job(nonce=5))
    third = await miner.answer(job(nonce=6))
    assert (first.status, second.status, third.status) == (Status.OK, Status.REFUSED, Status.OK)
    assert "replay" in second.error


async def test_a_full_miner_answers_busy_at_once() -> None:
    engine = Engine()
    engine.gate = asyncio.Event()
    miner = service(engine, max_concurrency=1)
    engine.entered = asyncio.Event()
    running = asyncio.create_task(miner.answer(job(nonce=1)))
    await engine.entered.wait()
    busy = await miner.answer(job(nonce=2))
    assert busy.status is Status.BUSY
    with pytest.raises(MinerBusyError):
        async for _ in miner.generate(prompt="1+1=", max_tokens=4, temperature=0.0):
            pass
    engine.gate.set()
    assert (await running).status is Status.OK
    assert miner.in_flight == 0
    # Once the slot is free again, work is accepted.
    assert (await miner.answer(job(nonce=3))).status is Status.OK


async def test_an_engine_failure_is_a_failed_answer_and_frees_the_slot() -> None:
    engine = Engine()
    engine.fail = EngineError("the engine is down")
    miner = service(engine, max_concurrency=1)
    answer = await miner.answer(job())
    assert answer.status is Status.FAILED
    assert "engine is down" in answer.error
    assert miner.in_flight == 0


async def test_generation_stops_at_the_task_deadline() -> None:
    engine = Engine()
    engine.gate = asyncio.Event()  # never released: the engine hangs
    now = time.time_ns() // 1_000_000
    miner = MinerService(keypair=MINER, netuid=1, engine=engine, permits=Permits(VALIDATOR.hotkey))
    answer = await miner.answer(job(deadline_ms=now + 100))
    assert answer.status is Status.FAILED
    assert "deadline" in answer.error
    assert miner.in_flight == 0


async def test_each_generation_stops_at_its_own_deadline_and_no_sooner() -> None:
    engine = Engine()
    engine.gate = asyncio.Event()  # held until the test releases it
    now = time.time_ns() // 1_000_000
    miner = MinerService(keypair=MINER, netuid=1, engine=engine, permits=Permits(VALIDATOR.hotkey))
    # Latest deadline first, so each later start must bring the shared timer forward.
    late = asyncio.create_task(miner.answer(job(nonce=1, deadline_ms=now + 30_000)))
    middle = asyncio.create_task(miner.answer(job(nonce=2, deadline_ms=now + 300)))
    early = asyncio.create_task(miner.answer(job(nonce=3, deadline_ms=now + 100)))
    # (Bounded, so that a deadline that never fires fails the test instead of hanging it.)
    first, second = await asyncio.wait_for(asyncio.gather(early, middle), 10)
    assert (first.status, second.status) == (Status.FAILED, Status.FAILED)
    assert "deadline" in first.error
    assert "deadline" in second.error
    assert not late.done()
    assert miner.in_flight == 1
    engine.gate.set()
    answer = await late
    assert (answer.status, answer.completion) == (Status.OK, "231")
    assert miner.in_flight == 0


async def test_a_generation_cancelled_from_outside_stays_cancelled() -> None:
    engine = Engine()
    engine.gate = asyncio.Event()
    engine.entered = asyncio.Event()
    now = time.time_ns() // 1_000_000
    miner = MinerService(keypair=MINER, netuid=1, engine=engine, permits=Permits(VALIDATOR.hotkey))
    running = asyncio.create_task(miner.answer(job(deadline_ms=now + 30_000)))
    await engine.entered.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert miner.in_flight == 0


async def test_generation_deadlines_leave_a_cancellation_from_elsewhere_alone() -> None:
    deadlines = GenerationDeadlines()
    outcome: list[bool] = []

    async def generation(*, also_cancelled: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        deadlines.watch(task, within_s=0.0)
        if also_cancelled:
            task.cancel()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append(deadlines.finish(task))

    await asyncio.create_task(generation(also_cancelled=False))
    await asyncio.create_task(generation(also_cancelled=True))
    assert outcome == [True, False]
    assert len(deadlines) == 0


def test_generation_deadlines_watch_the_calling_task_on_each_loop() -> None:
    deadlines = GenerationDeadlines()

    async def watched() -> bool:
        task = deadlines.watch_current(within_s=30)
        found = task is asyncio.current_task()
        deadlines.finish(task)
        return found

    async def two() -> list[bool]:
        return list(await asyncio.gather(watched(), watched()))

    assert asyncio.run(two()) == [True, True]
    # On a new loop (the last one finished), each task is found again.
    assert asyncio.run(two()) == [True, True]
    assert len(deadlines) == 0


def test_deadlines_are_honoured_when_a_service_moves_to_another_event_loop() -> None:
    engine = Engine()
    miner = MinerService(keypair=MINER, netuid=1, engine=engine, permits=Permits(VALIDATOR.hotkey))

    async def hung(nonce: int, *, within_ms: int, cancel: bool) -> Status | None:
        engine.gate, engine.entered = asyncio.Event(), asyncio.Event()
        now = time.time_ns() // 1_000_000
        running = asyncio.create_task(miner.answer(job(nonce=nonce, deadline_ms=now + within_ms)))
        if not cancel:
            return (await asyncio.wait_for(running, 10)).status
        await engine.entered.wait()
        running.cancel()
        return None

    # The first loop ends with the shared timer armed on it; the second must arm its own.
    asyncio.run(hung(1, within_ms=200, cancel=True))
    assert asyncio.run(hung(2, within_ms=400, cancel=False)) is Status.FAILED


async def test_direct_generation_streams_and_caps_max_tokens() -> None:
    engine = Engine("42")
    miner = MinerService(keypair=MINER, netuid=1, engine=engine, permits=Permits(), max_tokens_limit=16)
    chunks = [c async for c in miner.generate(prompt="hi", max_tokens=1000, temperature=0.7)]
    assert "".join(c.text for c in chunks) == "42"
    assert engine.calls[0][1:3] == (16, 0.7)


def test_replay_guard_forgets_pairs_once_their_deadline_passed() -> None:
    guard = ReplayGuard()
    guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)
    with pytest.raises(ReplayedTaskError):
        guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=50)
    guard.admit("w", nonce=1, deadline_unix_ms=100, now_unix_ms=50)  # another validator's nonce 1
    assert len(guard) == 2
    guard.admit("v", nonce=2, deadline_unix_ms=300, now_unix_ms=101)
    assert len(guard) == 1  # both deadline-100 pairs are gone


def test_replay_guard_forgets_pairs_in_deadline_order_whatever_their_arrival() -> None:
    guard = ReplayGuard()
    for nonce, deadline in ((1, 300), (2, 100), (3, 200), (4, 100)):
        guard.admit("v", nonce=nonce, deadline_unix_ms=deadline, now_unix_ms=0)
    guard.admit("v", nonce=5, deadline_unix_ms=400, now_unix_ms=150)
    assert len(guard) == 3  # nonces 2 and 4 (deadline 100) are gone
    for nonce in (1, 3, 5):
        with pytest.raises(ReplayedTaskError):
            guard.admit("v", nonce=nonce, deadline_unix_ms=400, now_unix_ms=150)
    guard.admit("v", nonce=2, deadline_unix_ms=400, now_unix_ms=150)
    guard.admit("v", nonce=6, deadline_unix_ms=400, now_unix_ms=301)
    assert len(guard) == 3  # 2, 5 and 6: deadlines 200 and 300 passed
    with pytest.raises(ReplayedTaskError):
        guard.admit("v", nonce=5, deadline_unix_ms=400, now_unix_ms=301)


def test_replay_guard_forgets_a_pair_at_its_deadline_between_sweeps() -> None:
    guard = ReplayGuard(sweep_ms=10_000)
    guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)
    with pytest.raises(ReplayedTaskError):
        guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=100)
    # No sweep is due yet, but the deadline passed: the pair is forgotten and may come back.
    guard.admit("v", nonce=1, deadline_unix_ms=50_000, now_unix_ms=101)
    assert len(guard) == 1
    # The sweep that drops the deadline-100 bucket keeps the pair's later admission.
    guard.admit("w", nonce=1, deadline_unix_ms=50_000, now_unix_ms=10_001)
    with pytest.raises(ReplayedTaskError):
        guard.admit("v", nonce=1, deadline_unix_ms=50_000, now_unix_ms=10_002)
    assert len(guard) == 2


def test_replay_guard_forgets_a_pair_admitted_twice_when_both_deadlines_passed() -> None:
    guard = ReplayGuard(sweep_ms=10_000)
    guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)
    guard.admit("v", nonce=1, deadline_unix_ms=200, now_unix_ms=101)
    # One sweep drops both of the pair's buckets: the pair is forgotten, not kept by the second.
    guard.admit("w", nonce=1, deadline_unix_ms=50_000, now_unix_ms=10_001)
    guard.admit("v", nonce=1, deadline_unix_ms=50_000, now_unix_ms=10_001)
    assert len(guard) == 2


def test_replay_guard_at_capacity_makes_room_from_passed_deadlines() -> None:
    guard = ReplayGuard(capacity=2, sweep_ms=10_000)
    guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)
    guard.admit("v", nonce=2, deadline_unix_ms=200, now_unix_ms=0)
    guard.admit("v", nonce=3, deadline_unix_ms=300, now_unix_ms=150)
    with pytest.raises(MinerBusyError):
        guard.admit("v", nonce=4, deadline_unix_ms=300, now_unix_ms=150)
    assert len(guard) == 2


def test_replay_guard_at_capacity_is_busy_not_forgetful() -> None:
    guard = ReplayGuard(capacity=2)
    guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)
    guard.admit("v", nonce=2, deadline_unix_ms=100, now_unix_ms=0)
    with pytest.raises(MinerBusyError):
        guard.admit("v", nonce=3, deadline_unix_ms=100, now_unix_ms=0)
    with pytest.raises(ReplayedTaskError):
        guard.admit("v", nonce=1, deadline_unix_ms=100, now_unix_ms=0)


def view(*permitted: str, block: int = 1) -> MetagraphView:
    return MetagraphView(
        netuid=1,
        block=block,
        epoch=1,
        neurons=tuple(
            NeuronView(
                uid=uid,
                hotkey=hotkey,
                validator_permit=True,
                stake_rao=1,
                incentive=0.0,
                dividends=0.0,
                validator_trust=0.0,
                emission_rao=0,
            )
            for uid, hotkey in enumerate(permitted)
        ),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_permit_cache_reads_once_then_refreshes_on_its_period() -> None:
    reads: list[MetagraphView] = []
    source = [view(VALIDATOR.hotkey)]

    async def fetch() -> MetagraphView:
        reads.append(source[0])
        return source[0]

    clock = Clock()
    cache = PermitCache(fetch, netuid=1, refresh_seconds=10, miss_refresh_seconds=1, clock=clock)
    await cache.check(VALIDATOR.hotkey)
    await cache.check(VALIDATOR.hotkey)
    assert len(reads) == 1
    clock.now = 10
    source[0] = view()  # the permit is gone at the next epoch
    with pytest.raises(NoPermitError):
        await cache.check(VALIDATOR.hotkey)
    assert len(reads) == 2


async def test_permit_cache_rereads_early_for_an_unknown_validator_but_not_too_often() -> None:
    reads = 0
    source = [view()]

    async def fetch() -> MetagraphView:
        nonlocal reads
        reads += 1
        return source[0]

    clock = Clock()
    cache = PermitCache(fetch, netuid=1, refresh_seconds=100, miss_refresh_seconds=1, clock=clock)
    with pytest.raises(NoPermitError):
        await cache.check(VALIDATOR.hotkey)
    with pytest.raises(NoPermitError):
        await cache.check(VALIDATOR.hotkey)  # too soon to read again
    assert reads == 1
    source[0] = view(VALIDATOR.hotkey)  # an epoch granted the permit
    clock.now = 1
    await cache.check(VALIDATOR.hotkey)
    assert reads == 2


async def test_permit_cache_keeps_the_last_view_when_the_metagraph_is_down() -> None:
    up = [True]

    async def fetch() -> MetagraphView:
        if not up[0]:
            raise ConnectionError("consensus is down")
        return view(VALIDATOR.hotkey)

    clock = Clock()
    cache = PermitCache(fetch, netuid=1, refresh_seconds=10, miss_refresh_seconds=1, clock=clock)
    await cache.check(VALIDATOR.hotkey)
    up[0] = False
    clock.now = 20
    await cache.check(VALIDATOR.hotkey)


async def test_permit_cache_without_any_view_says_the_metagraph_is_unavailable() -> None:
    async def fetch() -> MetagraphView:
        raise ConnectionError("consensus is down")

    cache = PermitCache(fetch, netuid=1, clock=Clock())
    with pytest.raises(MetagraphUnavailableError):
        await cache.check(VALIDATOR.hotkey)


def test_sse_events_become_chunks() -> None:
    assert parse_event('{"choices":[{"index":0,"text":"2","finish_reason":null}]}') == Chunk(text="2")
    assert parse_event('{"choices":[{"text":"","finish_reason":"length"}]}') == Chunk(
        text="", finish_reason="length"
    )
    assert parse_event('{"choices":[],"usage":{"completion_tokens":4}}') == Chunk(
        text="", completion_tokens=4
    )
    assert parse_event('{"choices":[]}') is None


@pytest.mark.parametrize("data", ["not json", "[1]", '{"error":{"message":"boom"}}', '{"choices":[1]}'])
def test_malformed_sse_events_are_engine_errors(data: str) -> None:
    with pytest.raises(EngineError):
        parse_event(data)


async def test_permit_cache_does_not_hammer_a_consensus_service_that_is_down() -> None:
    attempts = 0

    async def fetch() -> MetagraphView:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("consensus is down")

    clock = Clock()
    cache = PermitCache(fetch, netuid=1, refresh_seconds=10, miss_refresh_seconds=1, clock=clock)
    for _ in range(5):
        with pytest.raises(MetagraphUnavailableError):
            await cache.check(VALIDATOR.hotkey)
    assert attempts == 1
    clock.now = 1
    with pytest.raises(MetagraphUnavailableError):
        await cache.check(VALIDATOR.hotkey)
    assert attempts == 2
