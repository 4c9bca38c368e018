"""``TaskSubscriber``: the miner's NATS edge: decode a ``Task``, ask ``MinerService``, sign and reply.

Composed by ``__main__`` and the tests. It subscribes to ``kt.<netuid>.miner.<hotkey>.task`` in the
queue group of its hotkey's replicas (``MinerService.queue_group``, named with a secret of the seed:
``kubetensor.core.subjects.miner_queue``) and translates only: wire ``Task`` -> ``Job``
(the round envelope's fields with its signed bytes, the leaf's fields with the leaf bytes and proof),
``Answer`` -> ``TaskResponse`` signed by the miner's hotkey. Each message is handled in its own task
(a subscription's callback must return at once: nats.py runs one subscription's callbacks one after
another, and ``natslite.LiteClient``, which ``__main__`` connects with, runs them in its read path), so
slow generations never hold up the next task or a "busy" answer. When this process traces, the reply
carries the miner's span as ``traceparent``, continuing the validator's trace when it sent one; when it
does not, the reply has no headers (``_wire``) and the engine is given the validator's ``traceparent``
as it came (a span of this miner's would be one that no tracing backend holds, and vLLM's spans would
hang from it instead of from the validator's).

The tasks held at once (being checked, generated or answered) are bounded by ``max_pending``: the
generation slots already answer BUSY beyond ``max_concurrency``, but a task is held while it is checked
too, and a check can wait (a stale metagraph is read again before a permit is trusted). A task that
arrives when ``max_pending`` are held is answered BUSY at once, signed, without a check or a task of
its own (``_shed``), so a flood costs a signature per message, never memory: the lean client answers it
in its read path; on the nats.py fallback, whose publish is a coroutine, the answer is one short task
that only publishes. One warning says when shedding starts and one line when it ends.

A message whose reply subject is that of a task still in hand is not answered at all: it is a copy of
that task (anyone who can read the subject can republish it, reply subject and all) or a forgery that
borrows its inbox. Answered, its refusal (a replay, a bad signature), signed by this miner, would reach
the validator's inbox before the genuine answer and be taken as this miner's answer to the task."""

from __future__ import annotations

import asyncio
import functools
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind

from kubetensor.core import bus, keys, natslite, signing, subjects, telemetry
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.jobs import Answer, Job, SignedBytes, Status
from kubetensor.miner.service import MinerService
from kubetensor.miner.settings import DEFAULT_MAX_PENDING_TASKS
from kubetensor.v1 import task_pb2

_log = logging.getLogger(__name__)

REPLY_WRITE_BATCH_BYTES = 4096
"""The ``write_batch_bytes`` the miner connects with (``bus.connect_lite``): its answers go out every
eight or so (a signed answer with its headers is about 480 bytes) instead of once per event-loop turn.
A burst of tasks is answered in one turn; written in pieces, the validator checks the first answers
while the later ones are still being made, instead of all of them after the last (the network bench's
64-miner round: about 0.5 ms less at p50)."""

STATUS_TO_PROTO: dict[Status, int] = {
    Status.OK: task_pb2.TASK_STATUS_OK,
    Status.BUSY: task_pb2.TASK_STATUS_BUSY,
    Status.REFUSED: task_pb2.TASK_STATUS_REFUSED,
    Status.EXPIRED: task_pb2.TASK_STATUS_EXPIRED,
    Status.FAILED: task_pb2.TASK_STATUS_FAILED,
}


@functools.lru_cache(maxsize=64)
def _envelope_fields(envelope_bytes: bytes) -> tuple[int, str, str, int, str, int, bytes]:
    """A round envelope's fields (netuid, task type, prompt, max tokens, validator hotkey, deadline,
    leaves root). Every task of a round carries the same envelope: a process that serves several
    hotkeys decodes it once (the decoding is a pure function of the bytes)."""
    envelope = task_pb2.RoundEnvelope.FromString(envelope_bytes)
    return (
        envelope.netuid,
        envelope.task_type,
        envelope.prompt,
        envelope.max_tokens,
        envelope.validator_hotkey,
        envelope.deadline_unix_ms,
        envelope.leaves_root,
    )


_NOT_A_TASK = "task: not a Task with a RoundEnvelope and a TaskLeaf"


def job_from_proto(task: task_pb2.Task, *, trace: TraceContext | None) -> Job:
    """The domain job a wire task carries, with the bytes its signature and proof must cover.

    DecodeError when the envelope or the leaf is not a serialized ``RoundEnvelope``/``TaskLeaf``.
    """
    # Each read of a bytes field copies it: read each once.
    envelope_bytes, leaf_bytes, signature = task.envelope, task.leaf, task.signature
    netuid, task_type, prompt, max_tokens, validator_hotkey, deadline, root = _envelope_fields(envelope_bytes)
    leaf = task_pb2.TaskLeaf.FromString(leaf_bytes)
    # Positional, in ``Job``'s field order: a named tuple builds faster so, once per task.
    return Job(
        leaf.task_id,
        netuid,
        task_type,
        prompt,
        max_tokens,
        validator_hotkey,
        leaf.miner_hotkey,
        leaf.nonce,
        deadline,
        SignedBytes(signature.public_key, signature.signature, envelope_bytes),
        leaf_bytes,
        # A slice of the repeated field, then a tuple: half the cost of a tuple of the field.
        tuple(task.proof[:]),
        root,
        trace,
    )


@functools.lru_cache(maxsize=1024)
def _signature_prefix(public_key: bytes) -> bytes:
    return signing.signature_prefix(task_pb2.TaskResponse, public_key=public_key)


def response_to_wire(answer: Answer, *, service: MinerService) -> bytes:
    """The wire ``TaskResponse`` for ``answer``, signed by ``service``'s hotkey.

    Serialized once: the response without its signature, serialized deterministically, is what the
    signature covers (``signing.payload`` of it, without the check that there is no signature to clear),
    and the wire bytes are those followed by the encoded signature field (``signing.signature_prefix``).
    The validator reads them as the response with its signature, and ``signing.detach`` gives it back
    the signed bytes.
    """
    payload = task_pb2.TaskResponse(
        task_id=answer.task_id,
        miner_hotkey=service.hotkey,
        completion=answer.completion,
        completion_tokens=answer.completion_tokens,
        generation_ms=min(answer.generation_ms, 2**32 - 1),
        error=answer.error,
        status=STATUS_TO_PROTO[answer.status],  # type: ignore[arg-type]
        validator_hotkey=answer.validator_hotkey,
    ).SerializeToString(deterministic=True)
    signature = service.sign(subjects.TASK_RESPONSE_DOMAIN, payload)
    if len(signature) != keys.SIGNATURE_BYTES:
        raise ValueError(f"an ed25519 signature is {keys.SIGNATURE_BYTES} bytes, got {len(signature)}")
    return payload + _signature_prefix(service.public_key) + signature


def _job(msg: Msg | natslite.Message, span: TraceContext | None) -> Job | Answer:
    """The job ``msg`` carries, or the REFUSED answer when it is not a task."""
    try:
        return job_from_proto(task_pb2.Task.FromString(msg.data), trace=span)
    except DecodeError:
        return Answer(task_id="", validator_hotkey="", status=Status.REFUSED, error=_NOT_A_TASK)


def _consume_attributes(msg: Msg | natslite.Message, *, netuid: int) -> dict[str, str | int]:
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": msg.subject,
        "messaging.destination.template": subjects.MINER_TASKS_TEMPLATE,
        "messaging.message.body.size": len(msg.data),
        telemetry.NETUID: netuid,
    }


class TaskSubscriber:
    """Answers the tasks addressed to one miner hotkey on one subnet."""

    def __init__(
        self,
        client: Client | natslite.LiteClient,
        service: MinerService,
        *,
        max_pending: int = DEFAULT_MAX_PENDING_TASKS,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending: expected at least 1, got {max_pending}")
        self._client = client
        self._service = service
        self.max_pending = max_pending
        self._shed_count = 0
        self._subscription: Subscription | natslite.LiteSubscription | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        # The reply subjects of the tasks in hand (see the module doc).
        self._replying: set[str] = set()
        # Busy answers on their way out through nats.py (``_shed``).
        self._publishing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subject = subjects.miner_tasks(service.netuid, service.hotkey)

    async def start(self) -> None:
        """Subscribe (the subscription is live on the server when this returns)."""
        # Kept for the message callbacks, which run on this loop: asking for the running loop costs a
        # system call (asyncio checks the process id) on every message.
        self._loop = asyncio.get_running_loop()
        self._subscription = await bus.subscribe(
            self._client, self.subject, queue=self._service.queue_group, cb=self._on_message
        )
        await self._client.flush()

    async def stop(self, *, grace: float) -> None:
        """Stop taking tasks, then give the running ones ``grace`` seconds to answer."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        if self._handlers:
            _, pending = await asyncio.wait(set(self._handlers), timeout=grace)
            for task in pending:
                task.cancel()
        # A task cancelled before it ever ran never took itself out.
        self._handlers.clear()
        self._replying.clear()

    def _on_message(self, msg: Msg | natslite.Message) -> None:
        # ``_handle`` takes its task out of ``_handlers`` itself: a done callback would cost a loop turn.
        assert self._loop is not None
        reply = msg.reply
        if not reply:
            _log.debug("ignoring a task without a reply subject")
            return
        if reply in self._replying:
            _log.debug("ignoring a second message for reply subject %s: its task is in hand", reply)
            return
        if len(self._handlers) >= self.max_pending:
            self._shed(msg)
            return
        if self._shed_count:
            _log.info(
                "the task backlog is below %d again: %d tasks were answered BUSY unchecked",
                self.max_pending,
                self._shed_count,
            )
            self._shed_count = 0
        self._replying.add(reply)
        self._handlers.add(self._loop.create_task(self._handle(msg)))

    def _shed(self, msg: Msg | natslite.Message) -> None:
        """Answer BUSY now, unchecked: ``max_pending`` tasks are held already (see the module doc)."""
        if not self._shed_count:
            _log.warning(
                "%d tasks are held already: answering BUSY, unchecked, until the backlog drains",
                self.max_pending,
            )
        self._shed_count += 1
        # Not traced: no span of its own, so the answer has no headers (``_wire``).
        job = _job(msg, None)
        answer = (
            job
            if isinstance(job, Answer)
            else Answer(
                task_id=job.task_id,
                validator_hotkey=job.validator_hotkey,
                status=Status.BUSY,
                error=f"the miner holds {self.max_pending} tasks already (its backlog limit): try later",
            )
        )
        self._service.metrics.count(answer.status)
        response, headers = self._wire(msg, answer, None)
        if not isinstance(self._client, natslite.LiteClient):
            # nats.py publishes from a coroutine: a short task, held until it is done (the loop keeps
            # only a weak reference to a task).
            assert self._loop is not None
            task = self._loop.create_task(self._publish(msg.reply, response, headers, answer.task_id))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
            return
        try:
            self._client.publish_nowait(msg.reply, response, headers=headers)
        except Exception as error:
            _log.warning("could not send the busy answer to task %s: %s", answer.task_id, error)

    async def _publish(
        self, reply: str, response: bytes, headers: dict[str, str] | None, task_id: str
    ) -> None:
        try:
            await self._client.publish(reply, response, headers=headers)
        except Exception as error:
            _log.warning("could not send the answer to task %s: %s", task_id, error)

    async def _handle(self, msg: Msg | natslite.Message) -> None:
        try:
            received = TraceContext.from_headers(msg.headers)
            if telemetry.enabled():
                await self._handle_traced(msg, received)
                return
            # Untraced: the engine continues the validator's span itself (see the module doc).
            await self._reply(msg, await self._answer(msg, received), None)
        finally:
            self._replying.discard(msg.reply)
            self._handlers.discard(asyncio.current_task(self._loop))

    async def _handle_traced(self, msg: Msg | natslite.Message, received: TraceContext | None) -> None:
        # The CONSUMER span continues the validator's producer span; the task runs inside it.
        with telemetry.span(
            f"process {subjects.MINER_TASKS_TEMPLATE}",
            kind=SpanKind.CONSUMER,
            parent=received,
            attributes=_consume_attributes(msg, netuid=self._service.netuid),
        ) as consumer:
            span = telemetry.current_trace() or TraceContext.start()
            answer = await self._answer(msg, span)
            if consumer is not None:
                consumer.set_attribute("kubetensor.task.status", answer.status.value)
                consumer.set_attribute(telemetry.TASK_ID, answer.task_id)
            await self._reply(msg, answer, span)

    async def _answer(self, msg: Msg | natslite.Message, span: TraceContext | None) -> Answer:
        job = _job(msg, span)
        if isinstance(job, Answer):
            return job
        return await self._service.answer(job)

    def _wire(
        self, msg: Msg | natslite.Message, answer: Answer, span: TraceContext | None
    ) -> tuple[bytes, dict[str, str] | None]:
        """The signed response to ``msg`` and its headers (``span``'s ``traceparent``): none when
        ``span`` is None, as when this process does not trace. Its span would then be one that no tracing
        backend holds, so its ``traceparent`` would name nothing (the validator knows what it asked, and
        the miners that trace still answer with their span)."""
        response = response_to_wire(answer, service=self._service)
        if span is None:
            return response, None
        headers = {
            subjects.TRACEPARENT: span.traceparent,
            subjects.MESSAGE_TYPE: subjects.TASK_RESPONSE_MESSAGE,
        }
        if msg.headers and subjects.TRACESTATE in msg.headers:
            headers[subjects.TRACESTATE] = msg.headers[subjects.TRACESTATE]
        return response, headers

    async def _reply(self, msg: Msg | natslite.Message, answer: Answer, span: TraceContext | None) -> None:
        response, headers = self._wire(msg, answer, span)
        await self._publish(msg.reply, response, headers, answer.task_id)
