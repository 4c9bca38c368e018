"""``MinerService``: the miner's domain service: check a task, generate within a slot, sign the answer.

Called by the NATS edge (``subscriber.TaskSubscriber``: ``answer`` for each task, ``sign`` for each
response) and the gRPC edge (``servicer.MinerServicer``: ``generate``); composed by ``__main__``.

A task is answered only when, in this order: it names this miner's hotkey and subnet; its signature is
its validator's over the round envelope; its leaf's Merkle proof leads to the envelope's root; its
deadline lies ahead, but not further than ``max_ahead_ms``; the validator holds a permit on the subnet
(``PermitChecker``); its (validator, nonce) was not seen before (``ReplayGuard``); and a generation slot
is free. Slots are shared by tasks and direct ``generate`` calls; when all ``max_concurrency`` are taken
the caller hears "busy" at once, nothing queues. A task generates greedily (temperature 0) and stops at
its deadline. ``answer`` never raises for a refused or failed task: the ``Answer`` carries the status
and the reason, and the edge signs and sends it.

A round envelope is the same for every miner of the round, so services that share a process share
one ``keys.VerifiedSignatures`` (pass it as ``signatures``): the envelope is verified once per process,
not once per hotkey; a failed verification is never remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Protocol

from kubetensor.core import keys, merkle, subjects, telemetry
from kubetensor.core.subjects import ROUND_ENVELOPE_DOMAIN
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.deadlines import GenerationDeadlines
from kubetensor.miner.errors import (
    BadTaskProofError,
    BadTaskSignatureError,
    EngineError,
    MinerBusyError,
    MinerError,
    MisaddressedTaskError,
    TaskExpiredError,
)
from kubetensor.miner.jobs import Answer, Chunk, Job, Status
from kubetensor.miner.metrics import MinerMetrics
from kubetensor.miner.replay import ReplayGuard

_log = logging.getLogger(__name__)


class Engine(Protocol):
    """Streams completions (``completions.CompletionsClient``, or a test double)."""

    def stream(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncIterator[Chunk]: ...


class PermitChecker(Protocol):
    """Says whether a validator may send tasks (``permits.PermitCache``)."""

    async def check(self, hotkey: str) -> None:
        """Return when ``hotkey`` holds a permit; raise a ``MinerError`` otherwise."""
        ...


_NO_SPAN = contextlib.nullcontext()
"""What a generation runs in when tracing is off (reusable: it holds nothing)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MinerService:
    """One miner hotkey on one subnet: see the module doc."""

    def __init__(
        self,
        *,
        keypair: keys.Keypair,
        netuid: int,
        engine: Engine,
        permits: PermitChecker,
        max_concurrency: int = 8,
        max_ahead_ms: int = 60_000,
        max_tokens_limit: int = 512,
        replay_guard: ReplayGuard | None = None,
        now_ms: Callable[[], int] = _now_ms,
        metrics: MinerMetrics | None = None,
        signatures: keys.VerifiedSignatures | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected at least 1, got {max_concurrency}")
        self._keypair = keypair
        # Read for every task: an attribute, not the keypair's property.
        self._hotkey = keypair.hotkey
        self._public_key = keypair.public_key
        self.netuid = netuid
        # Its replicas' NATS queue group: named with a secret of the hotkey's seed (see subjects.miner_queue).
        self.queue_group = subjects.miner_queue(
            self._hotkey, keypair.derive_secret(subjects.MINER_QUEUE_PURPOSE)
        )
        self._engine = engine
        self._permits = permits
        self.max_concurrency = max_concurrency
        self._max_ahead_ms = max_ahead_ms
        self._max_tokens_limit = max_tokens_limit
        # Not `or`: an empty guard has len() 0, so it is falsy.
        self._replay = replay_guard if replay_guard is not None else ReplayGuard()
        self._signatures = signatures if signatures is not None else keys.VerifiedSignatures()
        self._now_ms = now_ms
        self._in_flight = 0
        self._deadlines = GenerationDeadlines()
        self.metrics = metrics if metrics is not None else MinerMetrics()
        self.metrics.watch(in_flight=lambda: self._in_flight, slots=max_concurrency)

    @property
    def hotkey(self) -> str:
        return self._hotkey

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def in_flight(self) -> int:
        """Generations running now (tasks and direct calls)."""
        return self._in_flight

    def sign(self, domain: str, payload: bytes) -> bytes:
        """This miner's signature over ``payload`` in ``domain`` (the edge signs each response)."""
        return self._keypair.sign(domain, payload)

    # -- tasks ----------------------------------------------------------------------------------------

    async def answer(self, job: Job) -> Answer:
        """Check and run ``job``; every refusal or failure becomes an ``Answer`` with its status."""
        answer = await self._answer(job)
        self.metrics.count(answer.status)
        return answer

    async def _answer(self, job: Job) -> Answer:
        try:
            await self.check(job)
            # The slot of ``_slot``, written out: this runs for every task.
            if self._in_flight >= self.max_concurrency:
                raise MinerBusyError(f"all {self.max_concurrency} generation slots are taken")
            self._in_flight += 1
            try:
                return await self._run(job)
            finally:
                self._in_flight -= 1
        except MinerError as error:
            _log.debug("task %s: %s", job.task_id, error)
            return Answer(
                task_id=job.task_id,
                validator_hotkey=job.validator_hotkey,
                status=error.status,
                error=str(error),
            )
        except Exception:
            _log.exception("task %s failed unexpectedly", job.task_id)
            return Answer(
                task_id=job.task_id,
                validator_hotkey=job.validator_hotkey,
                status=Status.FAILED,
                error="internal error in the miner; its log has the details",
            )

    async def check(self, job: Job) -> None:
        """Raise the first reason this miner may not answer ``job`` (see the module doc)."""
        if job.miner_hotkey != self._hotkey:
            raise MisaddressedTaskError("miner_hotkey", expected=self._hotkey, got=job.miner_hotkey)
        if job.netuid != self.netuid:
            raise MisaddressedTaskError(
                "netuid", expected=f"subnet {self.netuid}", got=f"subnet {job.netuid}"
            )
        try:
            signer = keys.parse_hotkey(job.validator_hotkey)
        except ValueError:
            raise BadTaskSignatureError(job.validator_hotkey) from None
        if job.signed.public_key != signer or not self._signatures.verify(
            signer, ROUND_ENVELOPE_DOMAIN, job.signed.payload, job.signed.signature
        ):
            raise BadTaskSignatureError(job.validator_hotkey)
        if not merkle.verify(job.leaves_root, job.leaf, job.proof):
            raise BadTaskProofError(job.task_id)
        now = self._now_ms()
        if not now < job.deadline_unix_ms <= now + self._max_ahead_ms:
            raise TaskExpiredError(
                deadline_unix_ms=job.deadline_unix_ms, now_unix_ms=now, max_ahead_ms=self._max_ahead_ms
            )
        await self._permits.check(job.validator_hotkey)
        self._replay.admit(
            job.validator_hotkey, nonce=job.nonce, deadline_unix_ms=job.deadline_unix_ms, now_unix_ms=now
        )

    async def _run(self, job: Job) -> Answer:
        remaining = (job.deadline_unix_ms - self._now_ms()) / 1000
        started = time.perf_counter()
        parts: list[str] = []
        tokens: int | None = None
        events = 0
        max_tokens = min(max(job.max_tokens, 1), self._max_tokens_limit)
        generation = (
            telemetry.span(
                "miner.generate",
                attributes={
                    telemetry.NETUID: self.netuid,
                    telemetry.HOTKEY: self.hotkey,
                    telemetry.TASK_ID: job.task_id,
                    "kubetensor.validator.hotkey": job.validator_hotkey,
                    "gen_ai.request.max_tokens": max_tokens,
                    "kubetensor.miner.in_flight": self._in_flight,
                },
            )
            if telemetry.enabled()
            else _NO_SPAN
        )
        # One shared timer for all generations (``GenerationDeadlines``), not an ``asyncio.timeout`` each;
        # its cancellation becomes the TimeoutError that timeout raises, inside the span as before.
        task = self._deadlines.watch_current(within_s=remaining)
        try:
            with generation:
                try:
                    async for chunk in self._engine.stream(
                        prompt=job.prompt, max_tokens=max_tokens, temperature=0.0, trace=job.trace
                    ):
                        parts.append(chunk.text)
                        events += bool(chunk.text)
                        if chunk.completion_tokens is not None:
                            tokens = chunk.completion_tokens
                except asyncio.CancelledError:
                    if self._deadlines.finish(task):
                        raise TimeoutError from None
                    raise
                finally:
                    self._deadlines.finish(task)
        except TimeoutError:
            raise EngineError(f"generation did not finish before the deadline ({remaining:.3f}s)") from None
        return Answer(
            task_id=job.task_id,
            validator_hotkey=job.validator_hotkey,
            status=Status.OK,
            completion="".join(parts),
            completion_tokens=tokens if tokens is not None else events,
            generation_ms=round((time.perf_counter() - started) * 1000),
        )

    # -- direct inference -----------------------------------------------------------------------------

    async def generate(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncGenerator[Chunk, None]:
        """Stream a completion for a direct caller (gRPC); MinerBusyError when no slot is free.

        No timeout of its own: the caller's deadline (gRPC cancels the call) and the engine client's
        request timeout bound it.
        """
        max_tokens = min(max(max_tokens, 1), self._max_tokens_limit)
        with self._slot():
            async for chunk in self._engine.stream(
                prompt=prompt, max_tokens=max_tokens, temperature=temperature, trace=trace
            ):
                yield chunk

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._in_flight >= self.max_concurrency:
            raise MinerBusyError(f"all {self.max_concurrency} generation slots are taken")
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
