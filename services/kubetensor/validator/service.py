"""``ValidatorService``: rounds of tasks to sampled miners, scores, moving averages, weights on a cadence.

Composed by ``__main__``; the tests drive ``run_round`` directly. Each round:

1. reads the metagraph; without a uid or a validator permit there is nothing to do yet (miners refuse
   tasks from validators without a permit, and an epoch grants permits by stake);
2. samples up to ``sample_size`` miners: every other uid except those holding a permit with more than
   ``vpermit_stake_limit_rao`` stake (Bittensor's validator template rule), drawn at random;
3. draws one challenge from the subnet's task plug-in and sends it, with a deadline, to every sampled
   miner at once (``TaskSender``); the round waits at most ``task_timeout_s``, so a miner that hangs or
   is gone costs the round nothing but its own zero. All the round's tasks are built first (one task id
   and nonce per miner, one deadline) and sealed under one signed round envelope (``seal``: a single
   signature, whatever the number of miners); then they go out in waves of ``send_wave`` (the sender's
   ``send_round``): a wave is handed to NATS, then the event loop runs once so the NATS client sends it
   while the next wave starts, and replies to early waves are checked while later waves are still out;
4. scores each reply (``scoring.task_score``: the plug-in's correctness with a latency tiebreak; any
   failure is 0) and folds the scores into the per-uid moving averages;
5. when ``weights_interval_s`` has passed since the last accepted weights (or ``retry_s`` since a
   refused attempt), sets weights from the averages on the consensus service;
6. saves the state (averages, round number, weight nonce) atomically and publishes a round report.

Step 6 is the round's tail and runs off its critical path (``_persist``): ``run_round`` returns once the
scores and averages are computed; the state then goes to the validator's ``StateWriter`` (one thread of
its own writes and fsyncs the states in order, only the newest of those waiting) and the round's report
is published once that state, or a newer one, is on disk. Reports go out in round order. A round does
not wait for the previous round's tail, only for older ones (at most ``_UNSAVED_ROUNDS`` rounds are ever
on their way to disk, so a slow disk slows the rounds down instead of piling them up). After a failed
save every round raises its error and nothing is reported again; ``drain`` waits for every tail on
shutdown. So a report is only ever published for a round whose state is on disk, and a crash loses at
most the rounds whose reports never went out, as if it had crashed a moment earlier.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from kubetensor.core import telemetry
from kubetensor.core.metagraphview import MetagraphView, NeuronView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.validator.consensus import ConsensusPort
from kubetensor.validator.errors import NotRegisteredError, ValidatorError
from kubetensor.validator.metrics import ValidatorMetrics
from kubetensor.validator.rounds import Outcome, OutgoingTask, Reply, RoundSummary, ScoredTask, SealedTask
from kubetensor.validator.scoring import Average, MovingAverages, task_score
from kubetensor.validator.state import StateFile, StateWriter, ValidatorState
from kubetensor.validator.tasks import Challenge, TaskKind

_log = logging.getLogger(__name__)

SEND_WAVE = 32
"""Tasks handed to NATS per turn of the event loop (one socket write each). Measured with 64 miners
(tests/bench/bench_network.py, one round's wall time): 8 and 64 were slowest, 32 a little ahead of 16,
on a quiet and on a loaded machine alike: each wave is a write system call and a loop turn, but one
wave of everything makes the miners wait for the last task to be built before the first goes out."""

_UNSAVED_ROUNDS = 2
"""Rounds whose state may still be on its way to disk when the next round folds in its scores."""


class TaskSender(Protocol):
    """Seals rounds, sends their tasks and publishes reports (``taskclient.MinerTaskClient``, or a test
    double)."""

    def seal(self, tasks: Sequence[OutgoingTask]) -> list[SealedTask]: ...

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
        """One checked reply per task, in order, within ``timeout_s``; ``wave`` tasks go out per turn
        of the event loop; a task that could not be sent is FAILED, whatever the others do; ``sent`` is
        called once every task is out, before the replies are awaited; ``on_reply(index, reply)`` as
        each task's reply is settled, at most once per task and never for a TIMEOUT (it must not
        block)."""
        ...

    async def publish_report(self, summary: RoundSummary) -> None: ...


def _trace_score(scored: ScoredTask) -> None:
    """A ``validator.score`` span for one miner's task (a child of the round)."""
    attributes: telemetry.Attributes = {
        telemetry.UID: scored.uid,
        telemetry.HOTKEY: scored.hotkey,
        telemetry.TASK_ID: scored.task_id,
        telemetry.OUTCOME: scored.outcome.value,
        "kubetensor.task.correctness": scored.correctness,
        "kubetensor.task.latency_s": scored.latency_s,
        telemetry.SCORE: scored.score,
    }
    with telemetry.span("validator.score", attributes=attributes):
        pass


class _RoundScores:
    """One round's scores, judged as the replies arrive (``add``, the sender's ``on_reply``), so the
    round's end has only the replies that never came to score (``finish``).

    Scoring is step 4 of the module doc: correctness from the task kind (each distinct completion is
    judged once per round: the kind is pure and most miners give the same answer; a judgement that
    raises scores 0 and is not remembered), ``task_score``'s latency tiebreak, and the uid's moving
    average with the score folded in. Nothing is written to the validator's state until ``finish``.
    """

    def __init__(
        self,
        *,
        kind: TaskKind,
        challenge: Challenge,
        sample: Sequence[NeuronView],
        tasks: Sequence[OutgoingTask],
        averages: MovingAverages,
        timeout_s: float,
        latency_weight: float,
    ) -> None:
        self._kind = kind
        self._challenge = challenge
        self._sample = sample
        self._tasks = tasks
        self._averages = averages
        self._timeout_s = timeout_s
        self._latency_weight = latency_weight
        self._judged: dict[str, float] = {}
        self._scored: list[tuple[ScoredTask, Average] | None] = [None] * len(sample)

    def add(self, index: int, reply: Reply) -> None:
        """Score task ``index``'s ``reply`` (its first: a later one for the same task is ignored)."""
        if self._scored[index] is None:
            self._scored[index] = self._score(index, reply)

    def _score(self, index: int, reply: Reply) -> tuple[ScoredTask, Average]:
        neuron = self._sample[index]
        correctness = 0.0
        if reply.outcome is Outcome.OK:
            known = self._judged.get(reply.completion)
            if known is not None:
                correctness = known
            else:
                try:
                    correctness = min(
                        max(self._kind.correctness(self._challenge, reply.completion), 0.0), 1.0
                    )
                except Exception:
                    _log.exception("the %s scorer failed on uid %d's answer", self._kind.name, neuron.uid)
                else:
                    self._judged[reply.completion] = correctness
        score = task_score(
            correctness=correctness,
            latency_s=reply.latency_s,
            timeout_s=self._timeout_s,
            latency_weight=self._latency_weight,
        )
        average = self._averages.folded(neuron.uid, neuron.hotkey, score)
        scored = ScoredTask(
            task_id=self._tasks[index].task_id,
            uid=neuron.uid,
            hotkey=neuron.hotkey,
            outcome=reply.outcome,
            correctness=correctness,
            score=score,
            latency_s=reply.latency_s,
            moving_average=average.value,
        )
        return scored, average

    def finish(self, replies: Sequence[Reply]) -> tuple[tuple[ScoredTask, ...], MovingAverages]:
        """Every task's score, in order (``replies`` is the sender's list: those not ``add``ed yet are
        scored now), and the moving averages with all of them folded in."""
        if len(replies) != len(self._scored):
            raise ValueError(f"{len(replies)} replies for a round of {len(self._scored)} tasks")
        done = [
            result if result is not None else self._score(index, reply)
            for index, (result, reply) in enumerate(zip(self._scored, replies, strict=True))
        ]
        if telemetry.enabled():
            for scored, _ in done:
                _trace_score(scored)
        averages = self._averages.with_entries({scored.uid: average for scored, average in done})
        return tuple(scored for scored, _ in done), averages


class ValidatorService:
    """One validator hotkey on one subnet: see the module doc."""

    def __init__(
        self,
        *,
        hotkey: str,
        netuid: int,
        task_kind: TaskKind,
        sender: TaskSender,
        consensus: ConsensusPort,
        state_file: StateFile,
        state: ValidatorState,
        task_timeout_s: float = 5.0,
        sample_size: int = 16,
        send_wave: int = SEND_WAVE,
        latency_weight: float = 0.05,
        weights_interval_s: float = 60.0,
        retry_s: float = 5.0,
        vpermit_stake_limit_rao: int = 0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: ValidatorMetrics | None = None,
    ) -> None:
        self.hotkey = hotkey
        self.netuid = netuid
        self._kind = task_kind
        self._sender = sender
        self._consensus = consensus
        self._writer = StateWriter(state_file)
        self.state = state
        self._task_timeout_s = task_timeout_s
        self._sample_size = sample_size
        if send_wave < 1:
            raise ValueError(f"send_wave: expected at least 1, got {send_wave}")
        self._send_wave = send_wave
        self._latency_weight = latency_weight
        self._weights_interval_s = weights_interval_s
        self._retry_s = retry_s
        self._vpermit_stake_limit_rao = vpermit_stake_limit_rao
        self._rng = rng or random.Random()
        self._clock = clock
        self._next_weights_at = float("-inf")
        self._last_nonce = 0
        self._waiting_logged = False
        self.metrics = metrics if metrics is not None else ValidatorMetrics()
        self._tails: collections.deque[asyncio.Task[None]] = collections.deque()
        self._sending: asyncio.Future[None] | None = None

    # -- one round ------------------------------------------------------------------------------------

    def candidates(self, view: MetagraphView) -> list[NeuronView]:
        """The uids this validator may query: everyone but itself and the staked validators."""
        return [
            neuron
            for neuron in view.neurons
            if neuron.hotkey != self.hotkey
            and not (neuron.validator_permit and neuron.stake_rao > self._vpermit_stake_limit_rao)
        ]

    async def run_round(self) -> RoundSummary | None:
        """Run one round (see the module doc); None when this validator cannot query yet.

        Traced as one ``validator.round`` span: the task requests, the scores and the weight submission
        are its children (the round's trace id is the one the miners and vLLM continue). Untraced, the
        round starts no trace: its tasks carry no ``traceparent`` (one would name a span that no tracing
        backend holds; docs/protocol.md).
        """
        attributes: telemetry.Attributes = {telemetry.NETUID: self.netuid, telemetry.HOTKEY: self.hotkey}
        with telemetry.span("validator.round", attributes=attributes) as span:
            summary = await self._round()
            if summary is not None:
                self.metrics.observe_round(summary)
                if span is not None:
                    span.set_attribute(telemetry.ROUND, summary.round)
                    span.set_attribute("kubetensor.round.tasks", len(summary.scores))
                    span.set_attribute("kubetensor.round.weights_block", summary.weights_block)
            return summary

    async def _round(self) -> RoundSummary | None:
        view = await self._consensus.metagraph()
        me = view.neuron(self.hotkey)
        if me is None:
            raise NotRegisteredError(self.hotkey, netuid=self.netuid)
        if not me.validator_permit:
            if not self._waiting_logged:
                _log.info("uid %d has no validator permit yet; waiting for an epoch to grant one", me.uid)
                self._waiting_logged = True
            return None
        self._waiting_logged = False
        candidates = self.candidates(view)
        sample = self._rng.sample(candidates, min(self._sample_size, len(candidates)))
        started_ms = time.time_ns() // 1_000_000
        started = time.perf_counter()
        challenge = self._kind.challenge(self._rng)
        trace = telemetry.current_trace()
        tasks = self._tasks(sample, challenge)
        scores = _RoundScores(
            kind=self._kind,
            challenge=challenge,
            sample=sample,
            tasks=tasks,
            averages=self.state.averages,
            timeout_s=self._task_timeout_s,
            latency_weight=self._latency_weight,
        )
        replies = await self._fan_out(tasks, trace=trace, on_reply=scores.add)
        await self._settle_tails()
        scored, averages = scores.finish(replies)
        weights: tuple[tuple[int, int], ...] = ()
        weights_block = 0
        self.state = replace(self.state, averages=averages, round=self.state.round + 1)
        if self._clock() >= self._next_weights_at:
            weights, weights_block = await self._set_weights(view)
        summary = RoundSummary(
            netuid=self.netuid,
            round=self.state.round,
            started_unix_ms=started_ms,
            duration_s=time.perf_counter() - started,
            scores=scored,
            weights=weights,
            weights_block=weights_block,
            validator_hotkey=self.hotkey,
        )
        previous = self._tails[-1] if self._tails else None
        self._tails.append(
            asyncio.create_task(self._persist(self.state, summary, previous), name="validator-round-tail")
        )
        return summary

    async def _settle_tails(self) -> None:
        """Forget the finished tails (raising what one raised) and wait for the oldest ones while more than
        ``_UNSAVED_ROUNDS`` are left (see the module doc)."""
        tails = self._tails
        while tails and (tails[0].done() or len(tails) >= _UNSAVED_ROUNDS):
            await tails.popleft()
        failure = self._writer.failure
        if failure is not None:
            # Once a state could not be saved, no round is reported again: every one raises why.
            raise failure

    async def drain(self) -> None:
        """Wait until every round's state is on disk and its report published (see the module doc);
        raises what saving a state raised."""
        tails = self._tails
        while tails:
            await tails.popleft()

    async def _persist(
        self, state: ValidatorState, summary: RoundSummary, previous: asyncio.Task[None] | None
    ) -> None:
        # The state is written and fsynced on the writer's thread while the event loop goes on. It is
        # handed over when the loop has little else to do: not as the round ends, and, when the next
        # round is already sending its tasks (back to back), once they are all out and it waits for
        # replies (waking the writer mid-wave delays the wave).
        sending = self._sending
        if sending is not None:
            await sending
        await self._writer.save(state)
        if previous is not None:
            # Reports go out in round order (the previous round's state is on disk by now).
            await previous
        try:
            await self._sender.publish_report(summary)
        except Exception as error:
            _log.warning("publishing the report of round %d failed: %s", summary.round, error)

    def _tasks(self, sample: Sequence[NeuronView], challenge: Challenge) -> list[OutgoingTask]:
        """One task per sampled miner: one deadline, a random task id each, consecutive nonces."""
        deadline_unix_ms = time.time_ns() // 1_000_000 + round(self._task_timeout_s * 1000)
        # One draw of random bytes for every task id of the round, and one clock read for its nonces.
        ids = secrets.token_bytes(16 * len(sample)).hex()
        first_nonce = self._next_nonces(len(sample))
        netuid, task_type, prompt, max_tokens = (
            self.netuid,
            self._kind.name,
            challenge.prompt,
            challenge.max_tokens,
        )
        return [
            OutgoingTask(
                task_id=ids[32 * i : 32 * i + 32],
                netuid=netuid,
                task_type=task_type,
                prompt=prompt,
                max_tokens=max_tokens,
                miner_hotkey=neuron.hotkey,
                nonce=first_nonce + i,
                deadline_unix_ms=deadline_unix_ms,
            )
            for i, neuron in enumerate(sample)
        ]

    async def _fan_out(
        self, tasks: list[OutgoingTask], *, trace: TraceContext | None, on_reply: Callable[[int, Reply], None]
    ) -> list[Reply]:
        """Seal one round of ``tasks``, then query their miners, ``send_wave`` at a time (see the module
        doc); ``on_reply`` hears of each reply as it is settled."""
        if not tasks:
            return []
        sealed = self._sender.seal(tasks)
        self._sending = asyncio.get_running_loop().create_future()
        try:
            return await self._sender.send_round(
                sealed,
                timeout_s=self._task_timeout_s,
                trace=trace,
                wave=self._send_wave,
                sent=self._tasks_sent,
                on_reply=on_reply,
            )
        finally:
            self._tasks_sent()

    def _tasks_sent(self) -> None:
        sending, self._sending = self._sending, None
        if sending is not None and not sending.done():
            sending.set_result(None)

    # -- weights --------------------------------------------------------------------------------------

    async def _set_weights(self, view: MetagraphView) -> tuple[tuple[tuple[int, int], ...], int]:
        weights = self.state.averages.weights((neuron.uid, neuron.hotkey) for neuron in view.neurons)
        if weights is None:
            return (), 0
        # Wall-clock nanoseconds keep nonces increasing across restarts even if a state save was lost.
        nonce = max(time.time_ns(), self.state.weights_nonce + 1)
        self.state = replace(self.state, weights_nonce=nonce)
        try:
            block = await self._consensus.set_weights(weights, nonce=nonce)
        except ValidatorError as error:
            _log.warning("setting weights failed (%s); retrying in %.1fs", error, self._retry_s)
            self._next_weights_at = self._clock() + self._retry_s
            return (), 0
        self.state = replace(self.state, weights_set=self.state.weights_set + 1)
        self._next_weights_at = self._clock() + self._weights_interval_s
        _log.info("set weights at block %d: %s", block, ", ".join(f"{uid}:{w}" for uid, w in weights))
        return tuple(weights), block

    def _next_nonces(self, count: int) -> int:
        """The first of ``count`` consecutive nonces, each larger than every nonce before (wall-clock
        nanoseconds, so they keep increasing across restarts)."""
        first = max(time.time_ns(), self._last_nonce + 1)
        self._last_nonce = first + count - 1
        return first

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self, *, round_interval_s: float, stop: asyncio.Event | None = None) -> None:
        """Run rounds every ``round_interval_s`` seconds until ``stop`` is set (after a whole round) or
        the task is cancelled; round errors are logged, not fatal."""
        stop = stop or asyncio.Event()
        try:
            await self._rounds(round_interval_s, stop)
        finally:
            await self.drain()

    async def _rounds(self, round_interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = self._clock()
            try:
                summary = await self.run_round()
            except ValidatorError as error:
                _log.warning("round skipped: %s", error)
            else:
                if summary is not None:
                    _log.debug(
                        "round %d: %s",
                        summary.round,
                        ", ".join(f"{s.uid}={s.outcome.value}:{s.score:.2f}" for s in summary.scores),
                    )
            pause = max(0.0, round_interval_s - (self._clock() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)
