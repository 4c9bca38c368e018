"""``MinerTaskClient.send_round`` pacing and bookkeeping, on a NATS client stand-in that records what is
published (the replies' checks and outcomes run against a real nats-server in
``tests/integration/test_network.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubetensor.core import natslite, signing, subjects
from kubetensor.core.keys import Keypair
from kubetensor.core.tracecontext import TraceContext
from kubetensor.v1 import task_pb2
from kubetensor.validator.rounds import Outcome, OutgoingTask
from kubetensor.validator.taskclient import MinerTaskClient, seal_round, seal_round_wire

VALIDATOR = Keypair(b"\x07" * 32)
MINERS = [Keypair(bytes([i + 1]) * 32) for i in range(5)]


class RecordingClient:
    """Publishes nowhere: records each publish, and how many had been published when the first
    "flush" (scheduled at the first publish, run at the event loop's next turn) ran."""

    def __init__(self, *, fail_for: str = "") -> None:
        self.published: list[tuple[str, str, dict[str, str] | None]] = []
        self.published_at_first_flush: int | None = None
        self.fail_for = fail_for

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(
        self, subject: str, *, queue: str = "", cb: Callable[[Any], Awaitable[None]]
    ) -> object:
        self.subscribed = subject
        return object()

    async def publish(
        self, subject: str, payload: bytes, *, reply: str, headers: dict[str, str] | None
    ) -> None:
        if self.fail_for and self.fail_for in subject:
            raise ConnectionError("nats: connection closed")
        if not self.published:
            asyncio.get_running_loop().call_soon(self._flush)
        self.published.append((subject, reply, headers))

    def _flush(self) -> None:
        self.published_at_first_flush = len(self.published)


def round_of(client: MinerTaskClient) -> list[Any]:
    return client.seal(
        [
            OutgoingTask(
                task_id=f"t{i}",
                netuid=1,
                task_type="addition",
                prompt="1+2=",
                max_tokens=4,
                miner_hotkey=key.hotkey,
                nonce=i,
                deadline_unix_ms=2**40,
            )
            for i, key in enumerate(MINERS)
        ]
    )


@pytest.mark.parametrize(("wave", "first_flush"), [(2, 2), (16, 5)])
async def test_send_round_publishes_in_waves_and_times_out_unanswered_tasks(
    wave: int, first_flush: int
) -> None:
    nc = RecordingClient()
    client = MinerTaskClient(nc, keypair=VALIDATOR)  # type: ignore[arg-type]
    trace = TraceContext.start()
    published_when_sent: list[int] = []
    replies = await client.send_round(
        round_of(client),
        timeout_s=0.05,
        trace=trace,
        wave=wave,
        sent=lambda: published_when_sent.append(len(nc.published)),
    )
    # The first wave reaches the transport before the next one is published; every miner once.
    assert nc.published_at_first_flush == first_flush
    # ``sent`` is told once, when every task is out.
    assert published_when_sent == [len(MINERS)]
    assert [subject for subject, _, _ in nc.published] == [subjects.miner_tasks(1, m.hotkey) for m in MINERS]
    # Every reply subject is the client's inbox plus its own token; every task its own child span.
    inboxes = [reply for _, reply, _ in nc.published]
    assert len(set(inboxes)) == len(MINERS)
    assert all(
        inbox.startswith("_INBOX.test.") and len(inbox) == len("_INBOX.test.") + 16 for inbox in inboxes
    )
    spans = [TraceContext.parse((headers or {})[subjects.TRACEPARENT]) for _, _, headers in nc.published]
    assert all(span is not None and span.trace_id == trace.trace_id for span in spans)
    assert len({span.span_id for span in spans if span is not None}) == len(MINERS)
    assert [reply.outcome for reply in replies] == [Outcome.TIMEOUT] * len(MINERS)
    # Nothing is left waiting once the round is over.
    assert client._waiting == {}


async def test_tasks_sent_without_a_trace_carry_no_headers() -> None:
    # An untraced validator gives no trace (ValidatorService): a traceparent would name a span that no
    # tracing backend holds, so its tasks go out without headers (docs/protocol.md).
    nc = RecordingClient()
    client = MinerTaskClient(nc, keypair=VALIDATOR)  # type: ignore[arg-type]
    sealed = round_of(client)
    await client.send_round(sealed, timeout_s=0.01, trace=None, wave=16)
    await client.send(sealed[0], timeout_s=0.01, trace=None)
    assert len(nc.published) == len(MINERS) + 1
    assert [headers for _, _, headers in nc.published] == [None] * (len(MINERS) + 1)
    # Given a trace, a single task carries it as it is.
    trace = TraceContext.start()
    await client.send(sealed[0], timeout_s=0.01, trace=trace)
    assert nc.published[-1][2] == {
        subjects.TRACEPARENT: trace.traceparent,
        subjects.MESSAGE_TYPE: subjects.TASK_MESSAGE,
    }


async def test_send_round_fails_only_the_task_that_could_not_be_sent() -> None:
    nc = RecordingClient(fail_for=MINERS[1].hotkey)
    client = MinerTaskClient(nc, keypair=VALIDATOR)  # type: ignore[arg-type]
    replies = await client.send_round(round_of(client), timeout_s=0.05, trace=TraceContext.start(), wave=16)
    assert replies[1].outcome is Outcome.FAILED
    assert "connection closed" in replies[1].detail
    assert [r.outcome for i, r in enumerate(replies) if i != 1] == [Outcome.TIMEOUT] * (len(MINERS) - 1)


def signed_answer(task_id: str, miner: Keypair, completion: str) -> bytes:
    response = task_pb2.TaskResponse(
        task_id=task_id,
        miner_hotkey=miner.hotkey,
        completion=completion,
        status=task_pb2.TASK_STATUS_OK,
        validator_hotkey=VALIDATOR.hotkey,
    )
    signing.sign(response, miner, domain=subjects.TASK_RESPONSE_DOMAIN)
    return response.SerializeToString()


async def test_only_a_signed_reply_settles_a_task_and_a_raising_hook_costs_none() -> None:
    """Whatever reaches a task's inbox unsigned (a body that is no TaskResponse, a no-responders status)
    is noted, not taken: the miner's signed answer after it still counts, and a task with nothing but
    notes ends with the first of them at the deadline. ``on_reply`` hears of each settled reply once
    (and of none of the notes); one that raises is logged while the replies are kept."""
    nc = RecordingClient(fail_for=MINERS[1].hotkey)
    unsigned: list[Outcome] = []
    client = MinerTaskClient(nc, keypair=VALIDATOR, on_unsigned=unsigned.append)  # type: ignore[arg-type]
    told: list[tuple[int, Outcome]] = []

    def hook(index: int, reply: Any) -> None:
        told.append((index, reply.outcome))
        raise RuntimeError("the hook broke")

    sent = asyncio.Event()
    round_task = asyncio.create_task(
        client.send_round(
            round_of(client), timeout_s=0.3, trace=TraceContext.start(), wave=16, sent=sent.set, on_reply=hook
        )
    )
    await sent.wait()
    # Published: miners 0, 2, 3 and 4 (miner 1's task could not be sent).
    inbox = {index: reply for index, (_, reply, _) in zip((0, 2, 3, 4), nc.published, strict=True)}
    no_responders = {"Status": "503"}
    client._on_reply(natslite.Message(inbox[3], "", b"\xff\xff", None))
    client._on_reply(natslite.Message(inbox[3], "", b"", no_responders))
    client._on_reply(natslite.Message(inbox[3], "", signed_answer("t3", MINERS[3], "3"), None))
    client._on_reply(natslite.Message(inbox[2], "", b"\xff\xff", None))
    client._on_reply(natslite.Message(inbox[4], "", b"", no_responders))
    client._on_reply(natslite.Message(inbox[4], "", signed_answer("t4", MINERS[2], "3"), None))
    replies = await round_task
    assert told == [(1, Outcome.FAILED), (3, Outcome.OK)]
    assert [reply.outcome for reply in replies] == [
        Outcome.TIMEOUT,
        Outcome.FAILED,
        Outcome.GARBAGE,
        Outcome.OK,
        Outcome.NO_RESPONDERS,
    ]
    assert replies[3].completion == "3"
    # Every reply the miner did not sign was counted, in the order it came (miner 2's answer to task 4
    # is signed, but by another key than task 4's miner).
    assert unsigned == [
        Outcome.GARBAGE,
        Outcome.NO_RESPONDERS,
        Outcome.GARBAGE,
        Outcome.NO_RESPONDERS,
        Outcome.BAD_SIGNATURE,
    ]


async def test_send_round_refuses_a_wave_below_one() -> None:
    client = MinerTaskClient(RecordingClient(), keypair=VALIDATOR)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wave"):
        await client.send_round(round_of(client), timeout_s=0.05, trace=TraceContext.start(), wave=0)


@pytest.mark.parametrize("count", [1, 2, 5, 64])
def test_sealed_wire_tasks_are_byte_for_byte_the_serialized_round(count: int) -> None:
    tasks = [
        OutgoingTask(
            task_id=f"task-{i:032d}",
            netuid=1,
            task_type="addition",
            prompt="1+2=",
            max_tokens=4,
            miner_hotkey=Keypair(i.to_bytes(2, "big") * 16).hotkey,
            nonce=2**62 + i,
            deadline_unix_ms=2**40,
        )
        for i in range(count)
    ]
    wires = seal_round_wire(tasks, keypair=VALIDATOR, round_id=b"r" * 16)
    expected = [task.SerializeToString() for task in seal_round(tasks, keypair=VALIDATOR, round_id=b"r" * 16)]
    assert wires == expected


@pytest.mark.parametrize(("task_id", "hotkey", "nonce"), [("t" * 300, "ab" * 32, 7), ("", "", 0)])
def test_sealed_wire_tasks_match_the_serialized_round_for_long_and_empty_leaves(
    task_id: str, hotkey: str, nonce: int
) -> None:
    # A leaf over 127 bytes needs a two-byte length; an empty one is left out, as protobuf does.
    tasks = [
        OutgoingTask(
            task_id=task_id,
            netuid=1,
            task_type="addition",
            prompt="1+2=",
            max_tokens=4,
            miner_hotkey=hotkey,
            nonce=nonce,
            deadline_unix_ms=2**40,
        ),
        OutgoingTask(
            task_id="other",
            netuid=1,
            task_type="addition",
            prompt="1+2=",
            max_tokens=4,
            miner_hotkey="cd" * 32,
            nonce=1,
            deadline_unix_ms=2**40,
        ),
    ]
    wires = seal_round_wire(tasks, keypair=VALIDATOR, round_id=b"r" * 16)
    expected = [task.SerializeToString() for task in seal_round(tasks, keypair=VALIDATOR, round_id=b"r" * 16)]
    assert wires == expected
    # And the client's seal sends exactly those bytes (its round id is its own).
    sealed = MinerTaskClient(RecordingClient(), keypair=VALIDATOR).seal(tasks)  # type: ignore[arg-type]
    decoded = [task_pb2.Task.FromString(one.wire) for one in sealed]
    assert [one.leaf for one in decoded] == [task_pb2.Task.FromString(wire).leaf for wire in wires]
    assert len({one.envelope for one in decoded}) == 1


def test_a_round_whose_tasks_differ_in_a_shared_field_is_refused() -> None:
    tasks = [
        OutgoingTask(
            task_id=f"t{i}",
            netuid=1,
            task_type="addition",
            prompt=prompt,
            max_tokens=4,
            miner_hotkey="ab" * 32,
            nonce=i + 1,
            deadline_unix_ms=2**40,
        )
        for i, prompt in enumerate(["1+2=", "1+2=", "3+4="])
    ]
    with pytest.raises(ValueError, match="prompt: every task of a round must share it, task t2 differs"):
        seal_round_wire(tasks, keypair=VALIDATOR)
