"""``MinerTaskClient``: the validator's NATS edge: a signed round out, checked replies in, reports out.

Composed by ``__main__`` (one per validator process) and the tests; ``ValidatorService`` calls ``seal``
once per round with every sampled miner's ``OutgoingTask``, then ``send_round`` with all of them, and
``publish_report`` after the round. It translates only. ``seal`` (``seal_round``): the round's shared
fields and the Merkle root (``kubetensor.core.merkle``) over every miner's serialized ``TaskLeaf``
(task id, miner hotkey, nonce) go into one ``RoundEnvelope``, signed once by the validator's hotkey;
each miner's wire ``Task`` is that envelope, the signature, its leaf and its proof. ``send_round`` (and
``send``, one task): request/reply to ``kt.<netuid>.miner.<hotkey>.task`` with a timeout, and a
``traceparent`` header when the caller gives a trace (an untraced validator gives none, and its tasks
carry no headers: see docs/protocol.md); each reply ->
``Reply`` (``decode_reply``: a TaskResponse for this task, signed by that miner's hotkey, or the outcome
that says what was wrong; ``send_round`` splits it into ``precheck_reply`` on arrival and one group
signature check per burst of replies). Subjects and headers: ``kubetensor.core.subjects``.

**Only the miner's signature settles a task.** A task's reply subject is no secret to whoever can read
the miner's subject (the task message carries it), so anything that cannot be held to the miner: a body
that is not a TaskResponse or answers another task (GARBAGE), one signed by another key or whose
signature does not verify (BAD_SIGNATURE), a no-responders status (NO_RESPONDERS: nats-server sends it
when nobody subscribes, but anyone can publish one), is noted and does not end the task's wait. Taken
as the answer, it would let a competitor zero out a miner by answering for it first. A task whose miner
signs no reply before the deadline gets the first thing noted for it, else TIMEOUT; so a miner that
is down or answers garbage still scores 0, and the round still ends at the deadline, but no sooner.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from nats.aio.client import NO_RESPONDERS_STATUS, Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header
from opentelemetry.trace import SpanKind

from kubetensor.core import bus, keys, merkle, natslite, signing, subjects, telemetry
from kubetensor.core.tracecontext import TraceContext
from kubetensor.v1 import common_pb2, task_pb2
from kubetensor.validator.rounds import Outcome, OutgoingTask, Reply, RoundSummary, ScoredTask, SealedTask

_log = logging.getLogger(__name__)

_STATUS_OUTCOMES = {
    task_pb2.TASK_STATUS_OK: Outcome.OK,
    task_pb2.TASK_STATUS_BUSY: Outcome.BUSY,
    task_pb2.TASK_STATUS_REFUSED: Outcome.REFUSED,
    task_pb2.TASK_STATUS_EXPIRED: Outcome.EXPIRED,
    task_pb2.TASK_STATUS_FAILED: Outcome.FAILED,
}


_STATUS_HEADER = Header.STATUS.value
"""The header nats-server's status replies carry (a no-responders reply's is ``NO_RESPONDERS_STATUS``)."""

_SHARED = ("netuid", "task_type", "prompt", "max_tokens", "deadline_unix_ms")


def _sealed_parts(
    tasks: Sequence[OutgoingTask], *, keypair: keys.Keypair, round_id: bytes | None
) -> tuple[bytes, common_pb2.Signature, list[bytes], list[tuple[bytes, ...]]]:
    """The round's signed envelope, its signature, and every task's leaf and proof (see ``seal_round``)."""
    if not tasks:
        raise ValueError("tasks: a round needs at least one task")
    first = tasks[0]
    shared = (first.netuid, first.task_type, first.prompt, first.max_tokens, first.deadline_unix_ms)
    for task in tasks:
        if (task.netuid, task.task_type, task.prompt, task.max_tokens, task.deadline_unix_ms) != shared:
            name = next(name for name in _SHARED if getattr(task, name) != getattr(first, name))
            raise ValueError(f"{name}: every task of a round must share it, task {task.task_id} differs")
    leaves = [
        task_pb2.TaskLeaf(
            task_id=task.task_id, miner_hotkey=task.miner_hotkey, nonce=task.nonce
        ).SerializeToString(deterministic=True)
        for task in tasks
    ]
    root, proofs = merkle.tree(leaves)
    envelope = task_pb2.RoundEnvelope(
        round_id=round_id if round_id is not None else secrets.token_bytes(16),
        netuid=first.netuid,
        task_type=first.task_type,
        prompt=first.prompt,
        max_tokens=first.max_tokens,
        validator_hotkey=keypair.hotkey,
        deadline_unix_ms=first.deadline_unix_ms,
        leaves_root=root,
        leaf_count=len(leaves),
    ).SerializeToString(deterministic=True)
    signature = common_pb2.Signature(
        public_key=keypair.public_key, signature=keypair.sign(subjects.ROUND_ENVELOPE_DOMAIN, envelope)
    )
    return envelope, signature, leaves, proofs


def seal_round(
    tasks: Sequence[OutgoingTask], *, keypair: keys.Keypair, round_id: bytes | None = None
) -> list[task_pb2.Task]:
    """One wire task per ``tasks`` item, all under one envelope signed once by ``keypair``.

    Every task must share the round's fields (``netuid``, ``task_type``, ``prompt``, ``max_tokens``,
    ``deadline_unix_ms``): ValueError naming the field otherwise, or for no tasks.
    """
    envelope, signature, leaves, proofs = _sealed_parts(tasks, keypair=keypair, round_id=round_id)
    return [
        task_pb2.Task(envelope=envelope, signature=signature, leaf=leaf, proof=proof)
        for leaf, proof in zip(leaves, proofs, strict=True)
    ]


def seal_round_wire(
    tasks: Sequence[OutgoingTask], *, keypair: keys.Keypair, round_id: bytes | None = None
) -> list[bytes]:
    """``seal_round``'s tasks serialized, byte for byte, without serializing the shared envelope once per
    task: a message's encoding is its fields' encodings in field-number order, and the envelope and its
    signature (fields 1 and 2) come before every task's leaf and proof (3 and 4), so each wire task is
    the encoding of the shared part followed by that of its own part."""
    envelope, signature, leaves, proofs = _sealed_parts(tasks, keypair=keypair, round_id=round_id)
    shared = task_pb2.Task(envelope=envelope, signature=signature).SerializeToString()
    return [
        shared + task_pb2.Task(leaf=leaf, proof=proof).SerializeToString()
        for leaf, proof in zip(leaves, proofs, strict=True)
    ]


def task_to_proto(task: OutgoingTask, *, keypair: keys.Keypair) -> task_pb2.Task:
    """The wire task of a round of one (``seal_round`` of ``[task]``)."""
    return seal_round([task], keypair=keypair)[0]


@dataclass(frozen=True, slots=True)
class UnverifiedReply:
    """A reply that passed ``precheck_reply``'s cheap checks; only its signature is left to verify.

    ``check`` is the ``(public_key, domain, payload, signature)`` to pass to ``keys.verify`` (or, with the
    other replies that arrived with it, to ``keys.verify_many``); ``finish`` turns the verdict into the
    reply.
    """

    check: tuple[bytes, str, bytes, bytes]
    verified: Reply
    """What the reply is when its signature verifies."""

    def finish(self, valid: bool) -> Reply:
        """The checked reply: ``verified`` when the signature verified, BAD_SIGNATURE otherwise."""
        if valid:
            return self.verified
        return Reply(
            Outcome.BAD_SIGNATURE,
            self.verified.latency_s,
            detail="the response's signature does not verify",
            trace=self.verified.trace,
        )


def precheck_reply(
    data: bytes,
    *,
    task: OutgoingTask,
    validator_hotkey: str,
    latency_s: float,
    trace: TraceContext | None = None,
) -> Reply | UnverifiedReply:
    """``decode_reply`` up to the signature: the reply when a cheap check already decides it (GARBAGE,
    BAD_SIGNATURE from another key), else the signature check still to do. ``trace`` (the miner's span)
    goes into whatever reply comes of it."""
    try:
        response = task_pb2.TaskResponse.FromString(data)
    except DecodeError as error:
        return Reply(Outcome.GARBAGE, latency_s, detail=f"not a TaskResponse: {error}", trace=trace)
    if response.task_id != task.task_id or response.validator_hotkey != validator_hotkey:
        return Reply(Outcome.GARBAGE, latency_s, detail="the response answers another task", trace=trace)
    miner_key = bytes.fromhex(task.miner_hotkey)
    # The decoded response is this function's own: detach its signature instead of copying it.
    public_key, signature, payload = signing.detach(response)
    if response.miner_hotkey != task.miner_hotkey or public_key != miner_key:
        return Reply(
            Outcome.BAD_SIGNATURE, latency_s, detail="the response is signed by another key", trace=trace
        )
    outcome = _STATUS_OUTCOMES.get(response.status, Outcome.GARBAGE)
    if outcome is not Outcome.OK:
        detail = response.error or f"status {response.status}"
        verified = Reply(outcome, latency_s, detail=detail, trace=trace)
    else:
        verified = Reply(Outcome.OK, latency_s, completion=response.completion, trace=trace)
    return UnverifiedReply((miner_key, subjects.TASK_RESPONSE_DOMAIN, payload, signature), verified)


def decode_reply(data: bytes, *, task: OutgoingTask, validator_hotkey: str, latency_s: float) -> Reply:
    """Check a reply's bytes: a TaskResponse to ``task``, signed by the miner it was sent to
    (``precheck_reply``, then its signature check on its own)."""
    checked = precheck_reply(data, task=task, validator_hotkey=validator_hotkey, latency_s=latency_s)
    if isinstance(checked, Reply):
        return checked
    return checked.finish(keys.verify(*checked.check))


def report_to_proto(summary: RoundSummary, *, keypair: keys.Keypair) -> task_pb2.RoundReport:
    """The wire round report, signed by ``keypair``."""
    report = task_pb2.RoundReport(
        netuid=summary.netuid,
        validator_hotkey=keypair.hotkey,
        round=summary.round,
        started_unix_ms=summary.started_unix_ms,
        duration_ms=summary.duration_s * 1000,
        weights=[common_pb2.WeightEntry(uid=uid, weight=weight) for uid, weight in summary.weights],
        weights_block=summary.weights_block,
    )
    # Each score is built in place: a list of Score messages would be built, then copied in.
    add = report.scores.add
    for scored in summary.scores:
        add(
            task_id=scored.task_id,
            uid=scored.uid,
            score=scored.score,
            latency_ms=scored.latency_s * 1000,
            hotkey=scored.hotkey,
            moving_average=scored.moving_average,
            correctness=scored.correctness,
            outcome=scored.outcome.value,
        )
    signing.sign(report, keypair, domain=subjects.ROUND_REPORT_DOMAIN)
    return report


_SUBJECTS_KEPT = 4096
"""Miner subjects a client remembers (``MinerTaskClient._miner_tasks``) before it starts over."""


ReplyHook = Callable[[int, Reply], None]
"""``send_round``'s ``on_reply``: told of task ``index``'s checked reply as soon as it is settled."""


def _tell(on_reply: ReplyHook, index: int, reply: Reply) -> None:
    # A hook that raises must not cost the round its other replies: the reply is settled all the same.
    try:
        on_reply(index, reply)
    except Exception:
        _log.exception("the reply hook failed on the reply to task %d", index)


class _Round:
    """The replies one ``send_round`` is waiting for, by index, and when each task went out."""

    __slots__ = ("done", "left", "noted", "on_reply", "replies", "sent_at", "tasks")

    def __init__(
        self, tasks: Sequence[SealedTask], done: asyncio.Future[None], on_reply: ReplyHook | None
    ) -> None:
        self.tasks = tasks
        self.sent_at = [0.0] * len(tasks)
        self.replies: list[Reply | None] = [None] * len(tasks)
        self.noted: list[Reply | None] = [None] * len(tasks)
        self.left = len(tasks)
        self.done = done
        self.on_reply = on_reply

    def note(self, index: int, reply: Reply) -> None:
        """Keep the first reply for task ``index`` that nobody can be held to (see the module doc): it
        is the task's outcome only if no signed reply comes before the deadline."""
        if self.noted[index] is None:
            self.noted[index] = reply

    def outcomes(self, timeout: Reply) -> list[Reply]:
        """Each task's signed reply, else what was noted for it, else ``timeout``."""
        return [
            reply if reply is not None else noted if noted is not None else timeout
            for reply, noted in zip(self.replies, self.noted, strict=True)
        ]

    def settle(self, index: int, reply: Reply) -> None:
        """Keep the first reply for task ``index`` (and tell ``on_reply``): one the miner signed, or a
        failure of this validator's own; the round is done when every task has one."""
        if self.replies[index] is not None:
            return
        self.replies[index] = reply
        self.left -= 1
        if self.on_reply is not None:
            _tell(self.on_reply, index, reply)
        if not self.left and not self.done.done():
            self.done.set_result(None)


class MinerTaskClient:
    """Sends one validator's tasks to miners and publishes its round reports."""

    def __init__(
        self,
        client: Client | natslite.LiteClient,
        *,
        keypair: keys.Keypair,
        on_unsigned: Callable[[Outcome], None] | None = None,
    ) -> None:
        """``on_unsigned(outcome)`` hears of each reply its miner did not sign (see the module doc), as
        it is noted (``ValidatorMetrics.unsigned_reply``)."""
        self._client = client
        self._on_unsigned = on_unsigned
        self._keypair = keypair
        self._hotkey = keypair.hotkey
        self._inbox: str | None = None
        self._replies: Subscription | natslite.LiteSubscription | None = None
        self._waiting: dict[str, tuple[_Round, int]] = {}
        self._unverified: list[tuple[_Round, int, UnverifiedReply]] = []
        self._subjects: dict[tuple[int, str], str] = {}

    def seal(self, tasks: Sequence[OutgoingTask]) -> list[SealedTask]:
        """``tasks`` as one round under one signed envelope, ready to ``send`` (see ``seal_round``)."""
        wires = seal_round_wire(tasks, keypair=self._keypair)
        return [SealedTask(task, wire) for task, wire in zip(tasks, wires, strict=True)]

    async def send_round(
        self,
        sealed: Sequence[SealedTask],
        *,
        timeout_s: float,
        trace: TraceContext | None,
        wave: int = 32,  # ValidatorService.SEND_WAVE: see there why
        sent: Callable[[], None] | None = None,
        on_reply: ReplyHook | None = None,
    ) -> list[Reply]:
        """Send a sealed round's tasks, ``wave`` at a time, and wait up to ``timeout_s`` for the checked
        replies (one per task, in order; a task that could not be sent is FAILED). ``sent`` is called once
        every task has been handed to NATS, before the replies are awaited. ``on_reply(index, reply)`` is
        called as each task's reply is settled (in the NATS client's read path, so it must not block;
        one that raises is logged and the reply kept), at most once per task; a task that has no signed
        reply at the deadline gets what was noted for it (see the module doc) or TIMEOUT in the list,
        without a call.

        ``trace`` is the round's span: each task's ``traceparent`` names a child of it. With ``trace`` None
        and tracing off, the tasks carry no headers. With tracing on, each task is a ``send`` (its own
        PRODUCER span, a child of ``trace``, else of a new trace). Otherwise the round is one
        request/reply exchange of this client's own (``_exchange``): every task's reply subject is this
        client's inbox plus an unguessable per-task token, one subscription receives the replies, and one
        timer bounds the round, instead of a future and a timer per task. A reply's latency and cheap
        checks are taken as it arrives (``precheck_reply``); the signatures of the replies that arrive
        together are then verified as one group (``keys.verify_many``), once per burst.
        """
        if wave < 1:
            raise ValueError(f"wave: expected at least 1, got {wave}")
        if not sealed:
            return []
        if telemetry.enabled():
            traces = (trace or TraceContext.start()).children(len(sealed))
            return await self._send_each(
                sealed, timeout_s=timeout_s, traces=traces, wave=wave, sent=sent, on_reply=on_reply
            )
        return await self._exchange(
            sealed,
            None if trace is None else [span.traceparent for span in trace.children(len(sealed))],
            timeout_s=timeout_s,
            wave=wave,
            sent=sent,
            on_reply=on_reply,
        )

    async def _exchange(
        self,
        sealed: Sequence[SealedTask],
        traceparents: Sequence[str] | None,
        *,
        timeout_s: float,
        wave: int,
        sent: Callable[[], None] | None,
        on_reply: ReplyHook | None,
    ) -> list[Reply]:
        """Send ``sealed`` (each with its ``traceparent``, or with no headers when ``traceparents`` is
        None) with this client's own reply subjects and wait for their signed replies (see ``send_round``)."""
        prefix = await self._reply_inbox()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = _Round(sealed, loop.create_future(), on_reply)
        tokens = secrets.token_bytes(8 * len(sealed)).hex()
        inboxes = [f"{prefix}{tokens[16 * i : 16 * i + 16]}" for i in range(len(sealed))]
        for index, inbox in enumerate(inboxes):
            self._waiting[inbox] = (pending, index)
        try:
            for index, (task, inbox) in enumerate(zip(sealed, inboxes, strict=True)):
                pending.sent_at[index] = time.perf_counter()
                try:
                    await self._client.publish(
                        self._miner_tasks(task.task.netuid, task.task.miner_hotkey),
                        task.wire,
                        reply=inbox,
                        headers=None
                        if traceparents is None
                        else {
                            subjects.TRACEPARENT: traceparents[index],
                            subjects.MESSAGE_TYPE: subjects.TASK_MESSAGE,
                        },
                    )
                except Exception as error:
                    # A transport failure (NATS reconnecting, ...) costs this miner this task, not the round.
                    _log.warning("sending a task to %s failed: %s", task.task.miner_hotkey[:16], error)
                    pending.settle(index, Reply(Outcome.FAILED, 0.0, detail=f"send failed: {error}"))
                if index % wave == wave - 1:
                    # One turn of the event loop: the NATS client's flusher sends this wave.
                    await asyncio.sleep(0)
            if sent is not None:
                sent()
            if pending.left:
                try:
                    async with asyncio.timeout_at(deadline):
                        await pending.done
                except TimeoutError:
                    pass
        finally:
            for inbox in inboxes:
                self._waiting.pop(inbox, None)
            # Replies that arrived in time but whose group check has not run yet still count; the check
            # scheduled for them then finds nothing left to do.
            self._verify_unverified()
        return pending.outcomes(
            Reply(Outcome.TIMEOUT, timeout_s, detail=f"no answer within {timeout_s:.3f}s")
        )

    def _miner_tasks(self, netuid: int, hotkey: str) -> str:
        """``subjects.miner_tasks``, checked once per miner rather than once per task."""
        subject = self._subjects.get((netuid, hotkey))
        if subject is None:
            subject = subjects.miner_tasks(netuid, hotkey)
            if len(self._subjects) >= _SUBJECTS_KEPT:
                # Hotkeys come and go with registrations; forget them all now and then.
                self._subjects.clear()
            self._subjects[(netuid, hotkey)] = subject
        return subject

    async def _send_each(
        self,
        sealed: Sequence[SealedTask],
        *,
        timeout_s: float,
        traces: Sequence[TraceContext],
        wave: int,
        sent: Callable[[], None] | None,
        on_reply: ReplyHook | None,
    ) -> list[Reply]:
        queries: list[asyncio.Task[Reply]] = []
        try:
            for first in range(0, len(sealed), wave):
                queries.extend(
                    asyncio.create_task(
                        self._send_one(task, timeout_s=timeout_s, trace=span, index=index, on_reply=on_reply)
                    )
                    for index, task, span in zip(
                        range(first, first + wave),
                        sealed[first : first + wave],
                        traces[first : first + wave],
                        strict=False,
                    )
                )
                await asyncio.sleep(0)
            if sent is not None:
                sent()
            return list(await asyncio.gather(*queries))
        except BaseException:
            for query in queries:
                query.cancel()
            raise

    async def _send_one(
        self,
        sealed: SealedTask,
        *,
        timeout_s: float,
        trace: TraceContext,
        index: int,
        on_reply: ReplyHook | None,
    ) -> Reply:
        # The task's own exchange tells of its signed reply as it is settled, under the round's index.
        hook: ReplyHook | None = None
        if on_reply is not None:
            round_hook = on_reply

            def hook(_: int, reply: Reply) -> None:
                round_hook(index, reply)

        try:
            return await self.send(sealed, timeout_s=timeout_s, trace=trace, on_reply=hook)
        except Exception as error:
            _log.warning("sending a task to %s failed: %s", sealed.task.miner_hotkey[:16], error)
            reply = Reply(Outcome.FAILED, timeout_s, detail=f"send failed: {error}")
            if on_reply is not None:
                _tell(on_reply, index, reply)
            return reply

    async def _reply_inbox(self) -> str:
        """The prefix of this client's reply subjects; subscribed on first use."""
        if self._inbox is None:
            prefix = f"{self._client.new_inbox()}."
            self._replies = await bus.subscribe(self._client, f"{prefix}*", cb=self._on_reply)
            self._inbox = prefix
        return self._inbox

    def _on_reply(self, msg: Msg | natslite.Message) -> None:
        waiting = self._waiting.get(msg.subject)
        if waiting is None:
            return  # late (after its round's deadline) or not ours
        pending, index = waiting
        # The latency is taken on arrival; only the signature check waits for the burst's group check.
        latency = time.perf_counter() - pending.sent_at[index]
        headers = msg.headers
        if headers and headers.get(_STATUS_HEADER) == NO_RESPONDERS_STATUS:
            self._note(pending, index, Reply(Outcome.NO_RESPONDERS, latency, detail="no miner subscribed"))
            return
        try:
            checked = self._prechecked(msg, task=pending.tasks[index].task, latency_s=latency)
        except Exception as error:
            self._note(pending, index, self._check_failed(pending, index, latency, error))
            return
        if isinstance(checked, Reply):
            self._note(pending, index, checked)
            return
        if not self._unverified:
            # Both clients hand a subscription every message they parsed from one read without yielding in
            # between (and this callback never awaits), so the group check runs once the burst is taken.
            asyncio.get_running_loop().call_soon(self._verify_unverified)
        self._unverified.append((pending, index, checked))

    def _verify_unverified(self) -> None:
        """Verify the signatures of the replies queued since the last call as one group, and settle
        their tasks (a reply whose check raises fails only its own task)."""
        group, self._unverified = self._unverified, []
        if not group:
            return
        try:
            verdicts = keys.verify_many([checked.check for _, _, checked in group])
            if len(verdicts) != len(group):
                raise ValueError(f"{len(verdicts)} verdicts for {len(group)} signatures")
        except Exception:
            # Find out which reply it was: each on its own, so the others still settle.
            _log.exception("verifying a group of %d replies failed; verifying them one by one", len(group))
            for pending, index, checked in group:
                try:
                    valid = keys.verify(*checked.check)
                except Exception as error:
                    self._note(
                        pending, index, self._check_failed(pending, index, checked.verified.latency_s, error)
                    )
                else:
                    self._conclude(pending, index, checked, valid)
            return
        for (pending, index, checked), valid in zip(group, verdicts, strict=True):
            self._conclude(pending, index, checked, valid)

    def _conclude(self, pending: _Round, index: int, checked: UnverifiedReply, valid: bool) -> None:
        # Only the miner's signature settles a task; a reply that fails it is noted (see the module doc).
        if valid:
            pending.settle(index, checked.verified)
        else:
            self._note(pending, index, checked.finish(valid))

    def _note(self, pending: _Round, index: int, reply: Reply) -> None:
        pending.note(index, reply)
        if self._on_unsigned is not None:
            try:
                self._on_unsigned(reply.outcome)
            except Exception:
                _log.exception("counting an unsigned reply failed")

    @staticmethod
    def _check_failed(pending: _Round, index: int, latency_s: float, error: Exception) -> Reply:
        # Whatever went wrong checking it costs this miner this task, never the round's other tasks.
        _log.exception("checking the reply of task %s failed", pending.tasks[index].task.task_id)
        return Reply(Outcome.FAILED, latency_s, detail=f"checking the reply failed: {error}")

    def _prechecked(
        self, msg: Msg | natslite.Message, *, task: OutgoingTask, latency_s: float
    ) -> Reply | UnverifiedReply:
        return precheck_reply(
            msg.data,
            task=task,
            validator_hotkey=self._hotkey,
            latency_s=latency_s,
            trace=TraceContext.from_headers(msg.headers),
        )

    async def send(
        self,
        sealed: SealedTask,
        *,
        timeout_s: float,
        trace: TraceContext | None,
        on_reply: ReplyHook | None = None,
    ) -> Reply:
        """Send ``sealed`` and wait up to ``timeout_s`` for the miner's checked reply (``on_reply(0,
        reply)`` as soon as a reply the miner signed settles it, as in ``send_round``).

        Traced (when tracing is on) as a PRODUCER span whose context the ``traceparent`` header carries.
        With tracing off, the header carries ``trace`` as it is; with ``trace`` None too, the task carries
        no headers.
        """
        task = sealed.task
        if not telemetry.enabled():
            return await self._send(
                sealed,
                timeout_s=timeout_s,
                traceparent=None if trace is None else trace.traceparent,
                on_reply=on_reply,
            )
        attributes: telemetry.Attributes = {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "request",
            "messaging.destination.name": subjects.miner_tasks(task.netuid, task.miner_hotkey),
            "messaging.destination.template": subjects.MINER_TASKS_TEMPLATE,
            "messaging.message.id": task.task_id,
            telemetry.NETUID: task.netuid,
            telemetry.HOTKEY: task.miner_hotkey,
            telemetry.TASK_ID: task.task_id,
        }
        with telemetry.span(
            f"send {subjects.MINER_TASKS_TEMPLATE}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            own = telemetry.current_trace() or trace or TraceContext.start()
            reply = await self._send(
                sealed, timeout_s=timeout_s, traceparent=own.traceparent, on_reply=on_reply
            )
            if span is not None:
                span.set_attribute(telemetry.OUTCOME, reply.outcome.value)
            return reply

    async def _send(
        self, sealed: SealedTask, *, timeout_s: float, traceparent: str | None, on_reply: ReplyHook | None
    ) -> Reply:
        [reply] = await self._exchange(
            [sealed],
            None if traceparent is None else [traceparent],
            timeout_s=timeout_s,
            wave=1,
            sent=None,
            on_reply=on_reply,
        )
        return reply

    async def publish_report(self, summary: RoundSummary) -> None:
        """Publish the round's report on ``kt.<netuid>.validator.<hotkey>.round``."""
        report = report_to_proto(summary, keypair=self._keypair)
        await self._client.publish(
            subjects.validator_rounds(summary.netuid, self._keypair.hotkey),
            report.SerializeToString(),
            headers={subjects.MESSAGE_TYPE: subjects.ROUND_REPORT_MESSAGE},
        )


def _outcome(text: str) -> Outcome:
    try:
        return Outcome(text)
    except ValueError:
        return Outcome.GARBAGE


def decode_report(data: bytes) -> RoundSummary | None:
    """A round report's content when it decodes and its signature verifies (else None); for observers."""
    try:
        report = task_pb2.RoundReport.FromString(data)
        signer = keys.parse_hotkey(report.validator_hotkey)
    except (DecodeError, ValueError):
        return None
    if report.signature.public_key != signer or not keys.verify(
        signer, subjects.ROUND_REPORT_DOMAIN, signing.payload(report), report.signature.signature
    ):
        return None
    return RoundSummary(
        netuid=report.netuid,
        validator_hotkey=report.validator_hotkey,
        round=report.round,
        started_unix_ms=report.started_unix_ms,
        duration_s=report.duration_ms / 1000,
        scores=tuple(
            ScoredTask(
                task_id=score.task_id,
                uid=score.uid,
                hotkey=score.hotkey,
                outcome=_outcome(score.outcome),
                correctness=score.correctness,
                score=score.score,
                latency_s=score.latency_ms / 1000,
                moving_average=score.moving_average,
            )
            for score in report.scores
        ),
        weights=tuple((entry.uid, entry.weight) for entry in report.weights),
        weights_block=report.weights_block,
    )
