"""ValidatorService rounds with in-process doubles for NATS and the consensus service: sampling, scoring,
faults, the weight cadence, and the state file that lets a restarted validator resume."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView, NeuronView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.validator.addition import problem_of
from kubetensor.validator.errors import (
    ConsensusUnavailableError,
    NotRegisteredError,
    StateMismatchError,
    WeightsRefusedError,
)
from kubetensor.validator.rounds import Outcome, OutgoingTask, Reply, RoundSummary, SealedTask
from kubetensor.validator.scoring import MovingAverages
from kubetensor.validator.service import ValidatorService
from kubetensor.validator.state import StateFile, StateWriter, ValidatorState
from kubetensor.validator.tasks import Challenge, default_registry

ME = Keypair(b"\x01" * 32).hotkey
OTHER_VALIDATOR = Keypair(b"\x02" * 32).hotkey
MINERS = [Keypair(bytes([10 + i]) * 32).hotkey for i in range(5)]


def neuron(uid: int, hotkey: str, *, permit: bool = False, stake: int = 0) -> NeuronView:
    return NeuronView(
        uid=uid,
        hotkey=hotkey,
        validator_permit=permit,
        stake_rao=stake,
        incentive=0.0,
        dividends=0.0,
        validator_trust=0.0,
        emission_rao=0,
    )


def metagraph(*, my_permit: bool = True) -> MetagraphView:
    return MetagraphView(
        netuid=1,
        block=100,
        epoch=1,
        neurons=(
            neuron(0, ME, permit=my_permit, stake=600),
            neuron(1, OTHER_VALIDATOR, permit=True, stake=400),
            *(neuron(2 + i, hotkey) for i, hotkey in enumerate(MINERS)),
        ),
    )


class Consensus:
    def __init__(self, view: MetagraphView) -> None:
        self.view = view
        self.weights: list[tuple[list[tuple[int, int]], int]] = []
        self.refuse: Exception | None = None

    async def metagraph(self) -> MetagraphView:
        return self.view

    async def set_weights(self, weights: Sequence[tuple[int, int]], *, nonce: int) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.weights.append((list(weights), nonce))
        return 123


class Sender:
    """Answers per miner hotkey: "right", "wrong", or an Outcome for a fault."""

    def __init__(self, behaviour: dict[str, str | Outcome]) -> None:
        self.behaviour = behaviour
        self.sent: list[OutgoingTask] = []
        self.sealed: list[list[OutgoingTask]] = []
        self.reports: list[RoundSummary] = []
        self.waves: list[int] = []
        self.traces: list[TraceContext | None] = []

    def seal(self, tasks: Sequence[OutgoingTask]) -> list[SealedTask]:
        self.sealed.append(list(tasks))
        return [SealedTask(task, b"") for task in tasks]

    async def send(self, sealed: SealedTask, *, timeout_s: float, trace: TraceContext | None) -> Reply:
        task = sealed.task
        self.sent.append(task)
        what = self.behaviour.get(task.miner_hotkey, Outcome.NO_RESPONDERS)
        if isinstance(what, Outcome):
            return Reply(what, timeout_s if what is Outcome.TIMEOUT else 0.001)
        answer = problem_of(task.prompt).answer if what == "right" else "zz"
        return Reply(Outcome.OK, 0.01, completion=answer)

    async def send_round(
        self,
        sealed: Sequence[SealedTask],
        *,
        timeout_s: float,
        trace: TraceContext | None,
        wave: int,
        sent: Callable[[], None] | None = None,
        on_reply: Callable[[int, Reply], None] | None = None,
    ) -> list[Reply]:
        self.waves.append(wave)
        self.traces.append(trace)
        queries = [
            asyncio.ensure_future(self.send(task, timeout_s=timeout_s, trace=trace)) for task in sealed
        ]
        await asyncio.sleep(0)
        if sent is not None:
            sent()
        replies = list(await asyncio.gather(*queries))
        if on_reply is not None:
            # As the real client: each reply is told as it is settled, a TIMEOUT never.
            for index, reply in enumerate(replies):
                if reply.outcome is not Outcome.TIMEOUT:
                    on_reply(index, reply)
        return replies

    async def publish_report(self, summary: RoundSummary) -> None:
        self.reports.append(summary)


def validator(
    tmp_path: Path,
    consensus: Consensus,
    sender: Sender,
    *,
    clock: list[float] | None = None,
    send_wave: int = 16,
    state_file: StateFile | None = None,
) -> ValidatorService:
    if state_file is None:
        state_file = StateFile(tmp_path / "state.json", netuid=1, hotkey=ME)
    now = clock if clock is not None else [0.0]
    return ValidatorService(
        hotkey=ME,
        netuid=1,
        task_kind=default_registry().get("addition"),
        sender=sender,
        consensus=consensus,
        state_file=state_file,
        state=state_file.load(alpha=0.5),
        task_timeout_s=2.0,
        sample_size=16,
        send_wave=send_wave,
        weights_interval_s=60.0,
        retry_s=5.0,
        rng=random.Random(1),
        clock=lambda: now[0],
    )


async def test_a_round_queries_every_miner_but_not_the_validators(tmp_path: Path) -> None:
    sender = Sender({hotkey: "right" for hotkey in MINERS})
    service = validator(tmp_path, Consensus(metagraph()), sender)
    summary = await service.run_round()
    assert summary is not None
    assert sorted(task.miner_hotkey for task in sender.sent) == sorted(MINERS)
    assert len({task.nonce for task in sender.sent}) == len(MINERS)
    assert len({task.task_id for task in sender.sent}) == len(MINERS)
    assert {task.prompt for task in sender.sent} == {sender.sent[0].prompt}  # one challenge per round
    # The whole round is sealed once, before anything is sent, with one deadline.
    assert len(sender.sealed) == 1
    assert sorted(sender.sealed[0], key=lambda t: t.nonce) == sorted(sender.sent, key=lambda t: t.nonce)
    assert len({task.deadline_unix_ms for task in sender.sent}) == 1
    assert all(s.outcome is Outcome.OK and s.correctness == 1.0 for s in summary.scores)
    await service.drain()
    assert sender.reports == [summary]


async def test_task_nonces_grow_from_round_to_round(tmp_path: Path) -> None:
    sender = Sender({hotkey: "right" for hotkey in MINERS})
    service = validator(tmp_path, Consensus(metagraph()), sender)
    await service.run_round()
    await service.run_round()
    first, second = ([task.nonce for task in tasks] for tasks in sender.sealed)
    assert len(set(first)) == len(first) == len(second) == len(set(second))
    assert min(second) > max(first)


async def test_sample_size_bounds_the_miners_per_round(tmp_path: Path) -> None:
    sender = Sender({hotkey: "right" for hotkey in MINERS})
    service = validator(tmp_path, Consensus(metagraph()), sender)
    service._sample_size = 2
    await service.run_round()
    assert len(sender.sent) == 2


@pytest.mark.parametrize("send_wave", [2, 16])
async def test_the_round_goes_to_the_sender_at_once_with_its_send_wave(
    tmp_path: Path, send_wave: int
) -> None:
    sender = Sender({hotkey: "right" for hotkey in MINERS})
    summary = await validator(tmp_path, Consensus(metagraph()), sender, send_wave=send_wave).run_round()
    assert summary is not None
    # One send_round per round, with every sampled miner's task; the sender paces the waves.
    assert sender.waves == [send_wave]
    # Tracing is off: the round starts no trace, so its tasks carry none (docs/protocol.md).
    assert sender.traces == [None]
    assert sorted(task.miner_hotkey for task in sender.sent) == sorted(MINERS)
    assert all(s.outcome is Outcome.OK for s in summary.scores)


def test_send_wave_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="send_wave"):
        validator(tmp_path, Consensus(metagraph()), Sender({}), send_wave=0)


async def test_without_a_permit_the_validator_waits(tmp_path: Path) -> None:
    sender = Sender({})
    service = validator(tmp_path, Consensus(metagraph(my_permit=False)), sender)
    assert await service.run_round() is None
    assert sender.sent == []
    assert not (tmp_path / "state.json").exists()


async def test_an_unregistered_validator_is_told_so(tmp_path: Path) -> None:
    view = metagraph()
    view = MetagraphView(netuid=1, block=1, epoch=1, neurons=view.neurons[1:])
    with pytest.raises(NotRegisteredError):
        await validator(tmp_path, Consensus(view), Sender({})).run_round()


async def test_every_fault_scores_zero_and_right_answers_score_high(tmp_path: Path) -> None:
    behaviour: dict[str, str | Outcome] = {
        MINERS[0]: "right",
        MINERS[1]: Outcome.TIMEOUT,
        MINERS[2]: Outcome.BAD_SIGNATURE,
        MINERS[3]: Outcome.GARBAGE,
        MINERS[4]: "wrong",
    }
    summary = await validator(tmp_path, Consensus(metagraph()), Sender(behaviour)).run_round()
    assert summary is not None
    scores = {s.hotkey: s for s in summary.scores}
    assert scores[MINERS[0]].score > 0.99
    for hotkey in MINERS[1:]:
        assert scores[hotkey].score == 0.0
    assert scores[MINERS[1]].outcome is Outcome.TIMEOUT
    assert scores[MINERS[1]].latency_s == 2.0


class CountingKind:
    """The addition task, counting each judgement; raises on the answer "boom"."""

    def __init__(self) -> None:
        self.inner = default_registry().get("addition")
        self.name = self.inner.name
        self.judged: list[str] = []

    def challenge(self, rng: random.Random) -> Challenge:
        return self.inner.challenge(rng)

    def correctness(self, challenge: Challenge, completion: str) -> float:
        self.judged.append(completion)
        if completion == "boom":
            raise RuntimeError("the scorer broke")
        return self.inner.correctness(challenge, completion)


async def test_a_round_judges_each_distinct_answer_once_and_never_remembers_a_failure(
    tmp_path: Path,
) -> None:
    class Answers(Sender):
        async def send(self, sealed: SealedTask, *, timeout_s: float, trace: TraceContext | None) -> Reply:
            answer = {MINERS[2]: "zz", MINERS[3]: "boom", MINERS[4]: "boom"}.get(
                sealed.task.miner_hotkey, problem_of(sealed.task.prompt).answer
            )
            return Reply(Outcome.OK, 0.01, completion=answer)

    kind = CountingKind()
    service = validator(tmp_path, Consensus(metagraph()), Answers({}))
    service._kind = kind
    summary = await service.run_round()
    assert summary is not None
    scores = {s.hotkey: s.correctness for s in summary.scores}
    assert scores == {MINERS[0]: 1.0, MINERS[1]: 1.0, MINERS[2]: 0.0, MINERS[3]: 0.0, MINERS[4]: 0.0}
    # The right answer and "zz" once each; the scorer that raised is asked again for the next "boom".
    judged = Counter(kind.judged)
    assert judged.pop("zz") == 1
    assert judged.pop("boom") == 2
    assert list(judged.values()) == [1]


async def test_weights_follow_the_moving_averages_on_the_cadence(tmp_path: Path) -> None:
    consensus = Consensus(metagraph())
    clock = [0.0]
    behaviour: dict[str, str | Outcome] = {MINERS[0]: "right", MINERS[1]: "right", MINERS[2]: Outcome.TIMEOUT}
    service = validator(tmp_path, consensus, Sender(behaviour), clock=clock)
    first = await service.run_round()
    assert first is not None
    assert first.weights_block == 123
    [(weights, nonce)] = consensus.weights
    by_uid = dict(weights)
    assert sorted(by_uid) == list(range(7))  # every uid, validators included (at 0)
    assert by_uid[2] == by_uid[3] == 65_535
    assert by_uid[0] == by_uid[1] == by_uid[4] == 0
    # Not again before the interval...
    clock[0] = 59.0
    second = await service.run_round()
    assert second is not None
    assert second.weights == ()
    assert len(consensus.weights) == 1
    # ...then again, with a larger nonce.
    clock[0] = 60.0
    await service.run_round()
    assert len(consensus.weights) == 2
    assert consensus.weights[1][1] > nonce


@pytest.mark.parametrize(
    "refusal", [WeightsRefusedError("FAILED_PRECONDITION: rate limited"), ConsensusUnavailableError("down")]
)
async def test_refused_weights_are_retried_sooner_than_the_interval(
    tmp_path: Path, refusal: Exception
) -> None:
    consensus = Consensus(metagraph())
    consensus.refuse = refusal
    clock = [0.0]
    service = validator(tmp_path, consensus, Sender({MINERS[0]: "right"}), clock=clock)
    summary = await service.run_round()
    assert summary is not None
    assert summary.weights == ()
    consensus.refuse = None
    clock[0] = 4.9
    await service.run_round()
    assert consensus.weights == []
    clock[0] = 5.0
    await service.run_round()
    assert len(consensus.weights) == 1


async def test_no_weights_while_every_average_is_zero(tmp_path: Path) -> None:
    consensus = Consensus(metagraph())
    summary = await validator(tmp_path, consensus, Sender({})).run_round()
    assert summary is not None
    assert consensus.weights == []


async def test_a_restarted_validator_resumes_from_its_state_file(tmp_path: Path) -> None:
    consensus = Consensus(metagraph())
    sender = Sender({MINERS[0]: "right"})
    first = validator(tmp_path, consensus, sender)
    await first.run_round()
    await first.run_round()
    await first.drain()
    second = validator(tmp_path, consensus, sender)
    assert second.state == first.state
    assert second.state.round == 2
    assert second.state.weights_set == 1
    before = second.state.averages.value(2, MINERS[0])
    summary = await second.run_round()
    assert summary is not None
    assert summary.round == 3
    after = second.state.averages.value(2, MINERS[0])
    assert after > before > 0.7


def test_state_file_round_trips(tmp_path: Path) -> None:
    file = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    state = ValidatorState(
        averages=MovingAverages.empty(0.3).updated([(2, MINERS[0], 0.9), (3, MINERS[1], 0.1)]),
        round=7,
        weights_nonce=99,
        weights_set=2,
    )
    file.save(state)
    assert file.load(alpha=0.3) == state
    assert StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3) == state
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.json.0"]
    # JSON padded to 4 KiB; the document is written with sorted keys, as json.dumps(sort_keys=True)
    # would, then its digest.
    raw = (tmp_path / "s.json.0").read_bytes()
    assert len(raw) % 4096 == 0
    document = json.loads(raw)
    digest = document.pop("sha256")
    assert digest == hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def state_at(round_: int) -> ValidatorState:
    return ValidatorState(
        averages=MovingAverages.empty(0.3).updated([(2, MINERS[0], round_ / 100)]), round=round_
    )


def test_saves_alternate_between_two_slots_and_load_takes_the_newest(tmp_path: Path) -> None:
    file = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    for round_ in (1, 2, 3):
        file.save(state_at(round_))
    slots = [
        StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)._verified(p, p.read_bytes()) for p in file.slots
    ]
    assert [doc["round"] for doc in slots if doc is not None] == [3, 2]
    # A new process loads the newest, then overwrites the older slot first.
    again = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    assert again.load(alpha=0.3) == state_at(3)
    again.save(state_at(4))
    assert StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3) == state_at(4)
    # One that saves without loading first also keeps the newest whole.
    StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).save(state_at(5))
    assert StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3) == state_at(5)


@pytest.mark.parametrize("damage", ["first difference", "late", "truncated", "digit"])
def test_a_save_cut_short_leaves_the_previous_state(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    file = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    file.save(state_at(1))
    file.save(state_at(2))
    old = file.slots[0].read_bytes()
    file.save(state_at(3))
    new = file.slots[0].read_bytes()
    # A crash during that save: slot 0 holds round 3's bytes up to some point, then round 1's (the
    # write went over them in place), or a new slot only partly written; or a byte went bad.
    end = len(new.rstrip())
    first = next(i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
    torn = {
        "first difference": new[: first + 1] + old[first + 1 :],
        "late": new[: end - 3] + old[end - 3 :],
        "truncated": new[: end // 2],
        "digit": new.replace(b'"round": 3', b'"round": 9'),  # still valid JSON
    }[damage]
    assert torn != new
    file.slots[0].write_bytes(torn)
    with caplog.at_level(logging.WARNING, logger="kubetensor.validator.state"):
        assert StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3) == state_at(2)
    assert "s.json.0: not a whole state" in caplog.text


def test_a_file_of_the_single_file_format_is_read_then_replaced_by_the_slots(tmp_path: Path) -> None:
    # What an earlier version wrote: the state as plain JSON at the path itself.
    state = state_at(7)
    legacy = {
        "averages": [{"count": 1, "hotkey": MINERS[0], "uid": 2, "value": state.averages.entries[2].value}],
        "format": "kubetensor.validator-state/v1",
        "hotkey": ME,
        "netuid": 1,
        "round": 7,
        "weights_nonce": 0,
        "weights_set": 0,
    }
    (tmp_path / "s.json").write_text(json.dumps(legacy))
    file = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    assert file.load(alpha=0.3) == state
    file.save(state_at(8))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.json.0"]
    assert StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3) == state_at(8)


def test_state_file_is_saved_into_a_folder_that_is_missing_or_removed(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "validator"
    file = StateFile(folder / "s.json", netuid=1, hotkey=ME)
    state = ValidatorState(averages=MovingAverages.empty(0.3).updated([(2, MINERS[0], 0.9)]), round=1)
    file.save(state)
    (folder / "s.json.0").unlink()
    folder.rmdir()
    later = ValidatorState(averages=state.averages.updated([(2, MINERS[0], 0.5)]), round=2)
    file.save(later)
    assert file.load(alpha=0.3) == later
    assert sorted(path.name for path in folder.iterdir()) == ["s.json.1"]


def test_state_file_of_another_validator_or_subnet_is_refused(tmp_path: Path) -> None:
    StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).save(
        ValidatorState(averages=MovingAverages.empty(0.3))
    )
    with pytest.raises(StateMismatchError, match="belongs to"):
        StateFile(tmp_path / "s.json", netuid=1, hotkey=OTHER_VALIDATOR).load(alpha=0.3)
    with pytest.raises(StateMismatchError, match="belongs to"):
        StateFile(tmp_path / "s.json", netuid=2, hotkey=ME).load(alpha=0.3)


@pytest.mark.parametrize("content", ["not json", "[]", '{"format": "other"}'])
def test_state_file_that_is_not_one_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(StateMismatchError):
        StateFile(tmp_path / "s.json", netuid=1, hotkey=ME).load(alpha=0.3)


def test_state_file_with_malformed_entries_is_refused(tmp_path: Path) -> None:
    file = StateFile(tmp_path / "s.json", netuid=1, hotkey=ME)
    file.save(ValidatorState(averages=MovingAverages.empty(0.3)))
    document = json.loads(file.slots[0].read_bytes())
    del document["sha256"]
    document["averages"] = [{"uid": "x"}]
    body = json.dumps(document)
    document["sha256"] = hashlib.sha256(body.encode()).hexdigest()
    file.slots[0].write_text(json.dumps(document))
    with pytest.raises(StateMismatchError, match="malformed"):
        file.load(alpha=0.3)


async def test_a_round_report_is_published_only_after_its_state_is_on_disk(tmp_path: Path) -> None:
    sender = Sender({MINERS[0]: "right"})
    service = validator(tmp_path, Consensus(metagraph()), sender)
    on_disk: list[int] = []
    publish = sender.publish_report

    async def publish_after_reading_the_file(summary: RoundSummary) -> None:
        on_disk.append(StateFile(tmp_path / "state.json", netuid=1, hotkey=ME).load(alpha=0.5).round)
        await publish(summary)

    sender.publish_report = publish_after_reading_the_file  # type: ignore[method-assign]
    first = await service.run_round()
    second = await service.run_round()
    await service.drain()
    assert first is not None
    assert second is not None
    assert [report.round for report in sender.reports] == [1, 2]
    # Each report waited for its round's state or a newer one (one save may cover both rounds).
    assert len(on_disk) == 2
    assert all(
        round_on_disk >= report.round for round_on_disk, report in zip(on_disk, sender.reports, strict=True)
    )


async def test_run_leaves_the_last_rounds_state_on_disk_when_stopped(tmp_path: Path) -> None:
    sender = Sender({MINERS[0]: "right"})
    service = validator(tmp_path, Consensus(metagraph()), sender)
    stop = asyncio.Event()

    async def stop_after_two_reports(summary: RoundSummary) -> None:
        sender.reports.append(summary)
        if len(sender.reports) == 2:
            stop.set()

    sender.publish_report = stop_after_two_reports  # type: ignore[method-assign]
    await asyncio.wait_for(service.run(round_interval_s=0.0, stop=stop), timeout=10)
    saved = StateFile(tmp_path / "state.json", netuid=1, hotkey=ME).load(alpha=0.5)
    assert saved == service.state
    assert saved.round == len(sender.reports) >= 2


class GatedStateFile(StateFile):
    """A state file whose first save waits for ``gate`` (a slow disk), recording every save."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, netuid=1, hotkey=ME)
        self.gate = threading.Event()
        self.saved: list[int] = []

    def save(self, state: ValidatorState) -> None:
        if not self.saved:
            self.gate.wait(timeout=10)
        super().save(state)
        self.saved.append(state.round)


def state(round_: int) -> ValidatorState:
    return ValidatorState(averages=MovingAverages.empty(0.3).updated([(2, MINERS[0], 0.5)]), round=round_)


async def test_state_writer_saves_only_the_newest_of_the_states_waiting_for_the_disk(tmp_path: Path) -> None:
    file = GatedStateFile(tmp_path / "s.json")
    writer = StateWriter(file)
    first = writer.save(state(1))
    # The first save is under way (or about to be) while the next two wait.
    waiting = [writer.save(state(2)), writer.save(state(3))]
    await asyncio.sleep(0.05)
    assert not first.done()
    assert not any(future.done() for future in waiting)
    file.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *waiting), timeout=10)
    assert file.saved in ([1, 3], [3])
    assert file.load(alpha=0.3) == state(3)


async def test_state_writer_fails_the_failed_save_and_every_later_one(tmp_path: Path) -> None:
    # The state file's folder is a file: every save fails.
    (tmp_path / "folder").write_text("")
    writer = StateWriter(StateFile(tmp_path / "folder" / "s.json", netuid=1, hotkey=ME))
    with pytest.raises(NotADirectoryError):
        await asyncio.wait_for(writer.save(state(1)), timeout=10)
    assert isinstance(writer.failure, NotADirectoryError)
    with pytest.raises(NotADirectoryError):
        await asyncio.wait_for(writer.save(state(2)), timeout=10)


async def test_a_failed_state_save_stops_the_rounds_and_nothing_is_reported(tmp_path: Path) -> None:
    sender = Sender({MINERS[0]: "right"})
    state_file = StateFile(tmp_path / "folder" / "state.json", netuid=1, hotkey=ME)
    service = validator(tmp_path, Consensus(metagraph()), sender, state_file=state_file)
    # Where the state's folder should be, a file: every save fails.
    (tmp_path / "folder").write_text("")
    failed = False
    for _ in range(100):
        try:
            await service.run_round()
        except NotADirectoryError:
            failed = True
            break
        # The first round's save fails on the writer's thread; a later round finds out.
        await asyncio.sleep(0.01)
    assert failed
    # Every later round fails the same way.
    with pytest.raises(NotADirectoryError):
        await service.run_round()
    with contextlib.suppress(NotADirectoryError):
        await service.drain()
    assert sender.reports == []


async def test_rounds_go_on_while_the_last_state_is_saved_but_wait_for_older_ones(tmp_path: Path) -> None:
    sender = Sender({MINERS[0]: "right"})
    file = GatedStateFile(tmp_path / "state.json")
    service = validator(tmp_path, Consensus(metagraph()), sender, state_file=file)
    await service.run_round()
    # Round 1's state is stuck on its way to disk: round 2 still runs, round 3 waits for round 1's.
    second = await asyncio.wait_for(service.run_round(), timeout=10)
    assert second is not None
    third = asyncio.create_task(service.run_round())
    await asyncio.sleep(0.05)
    assert not third.done()
    assert sender.reports == []
    file.gate.set()
    summary = await asyncio.wait_for(third, timeout=10)
    assert summary is not None
    await service.drain()
    assert [report.round for report in sender.reports] == [1, 2, 3]
    assert file.load(alpha=0.5) == service.state
