"""The NATS protocol: subjects, trace context, and the signed round envelope / Task / TaskResponse /
RoundReport encodings."""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from kubetensor.core import keys, merkle, signing, subjects
from kubetensor.core.keys import Keypair
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.jobs import Answer, Status
from kubetensor.miner.subscriber import job_from_proto, response_to_wire
from kubetensor.v1 import task_pb2
from kubetensor.validator.rounds import Outcome, OutgoingTask, RoundSummary, ScoredTask
from kubetensor.validator.taskclient import (
    decode_reply,
    decode_report,
    report_to_proto,
    seal_round,
    task_to_proto,
)

VALIDATOR = Keypair(b"\x01" * 32)
MINER = Keypair(b"\x02" * 32)
OTHER = Keypair(b"\x03" * 32)


class _Signer:
    """The part of MinerService that response_to_wire uses."""

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self.hotkey = keypair.hotkey
        self.public_key = keypair.public_key

    def sign(self, domain: str, payload: bytes) -> bytes:
        return self._keypair.sign(domain, payload)


def outgoing(**overrides: object) -> OutgoingTask:
    fields: dict[str, object] = {
        "task_id": "t-1",
        "netuid": 1,
        "task_type": "addition",
        "prompt": "47+85=",
        "max_tokens": 6,
        "miner_hotkey": MINER.hotkey,
        "nonce": 42,
        "deadline_unix_ms": 1_900_000_000_000,
    }
    fields.update(overrides)
    return OutgoingTask(**fields)  # type: ignore[arg-type]


def answer(**overrides: object) -> Answer:
    fields: dict[str, object] = {
        "task_id": "t-1",
        "validator_hotkey": VALIDATOR.hotkey,
        "status": Status.OK,
        "completion": "231",
    }
    fields.update(overrides)
    return Answer(**fields)  # type: ignore[arg-type]


def test_subjects_are_per_subnet_and_hotkey() -> None:
    assert subjects.miner_tasks(1, MINER.hotkey) == f"kt.1.miner.{MINER.hotkey}.task"
    secret = bytes(range(16))
    assert subjects.miner_queue(MINER.hotkey, secret) == f"miner.{MINER.hotkey}.{secret.hex()}"
    assert subjects.validator_rounds(7, VALIDATOR.hotkey) == f"kt.7.validator.{VALIDATOR.hotkey}.round"
    assert subjects.all_validator_rounds(7) == "kt.7.validator.*.round"


def test_a_miners_queue_group_needs_a_secret_of_16_bytes_or_more() -> None:
    with pytest.raises(ValueError, match="secret: at least 16 bytes, got 8"):
        subjects.miner_queue(MINER.hotkey, bytes(8))


@pytest.mark.parametrize("hotkey", ["", "ab", "G" * 64, ("a" * 63) + ".", "A" * 64])
def test_subjects_refuse_what_is_not_a_hotkey(hotkey: str) -> None:
    with pytest.raises(ValueError, match="hotkey"):
        subjects.miner_tasks(1, hotkey)


def test_subjects_refuse_a_netuid_outside_u16() -> None:
    with pytest.raises(ValueError, match="netuid"):
        subjects.miner_tasks(65_536, MINER.hotkey)


def test_traceparent_round_trips_and_children_share_the_trace() -> None:
    root = TraceContext.start()
    parsed = TraceContext.parse(root.traceparent)
    assert parsed == root
    child = root.child()
    assert child.trace_id == root.trace_id
    assert child.span_id != root.span_id
    assert root.traceparent.startswith("00-")
    assert root.traceparent.endswith("-01")


@pytest.mark.parametrize("flags", ["00", "01", "0a", "ff"])
def test_a_traceparent_is_written_back_as_it_was_read(flags: str) -> None:
    value = f"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"
    context = TraceContext.parse(value)
    assert context is not None
    assert context.flags == int(flags, 16)
    assert context.traceparent == value
    assert TraceContext.start(sampled=False).traceparent.endswith("-00")


def test_minted_trace_and_span_ids_are_well_formed_and_distinct() -> None:
    roots = [TraceContext.start() for _ in range(200)]
    spans = [span for root in roots[:4] for span in [root.child(), *root.children(50)]]
    for context in roots + spans:
        assert TraceContext.parse(context.traceparent) == context
    assert len({root.trace_id for root in roots}) == len(roots)
    assert len({span.span_id for span in spans}) == len(spans)
    assert {span.trace_id for span in spans} == {root.trace_id for root in roots[:4]}


def test_a_minted_id_that_comes_out_all_zero_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randbytes", bytes)  # every draw all zero bytes
    root = TraceContext.start()
    for context in (root, root.child(), *root.children(3)):
        assert TraceContext.parse(context.traceparent) == context


def test_a_traceparent_with_spaces_or_capitals_is_read_as_its_lowercase() -> None:
    value = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
    assert TraceContext.parse(f"  {value} ") == TraceContext.parse(value.lower())
    assert TraceContext.parse(value.lower()) is not None


def test_traceparent_is_read_case_insensitively_from_headers() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    context = TraceContext.from_headers({"TraceParent": value})
    assert context is not None
    assert context.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert context.span_id == "00f067aa0ba902b7"
    assert context.flags == 1
    assert TraceContext.from_headers({"other": "x"}) is None
    assert TraceContext.from_headers(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ],
)
def test_invalid_traceparents_are_ignored(value: str) -> None:
    assert TraceContext.parse(value) is None


def test_a_later_traceparent_version_is_read_by_its_first_four_fields() -> None:
    context = TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
    assert context is not None
    assert context.span_id == "00f067aa0ba902b7"


def test_a_sealed_round_arrives_as_jobs_under_one_signed_envelope() -> None:
    miners = [MINER, OTHER, VALIDATOR]
    tasks = [outgoing(task_id=f"t-{i}", miner_hotkey=m.hotkey, nonce=40 + i) for i, m in enumerate(miners)]
    wires = [task_pb2.Task.FromString(t.SerializeToString()) for t in seal_round(tasks, keypair=VALIDATOR)]
    jobs = [job_from_proto(wire, trace=None) for wire in wires]
    # One envelope, one signature, for the whole round; each job keeps its own leaf's fields.
    assert len({job.signed.payload for job in jobs}) == 1
    assert len({job.signed.signature for job in jobs}) == 1
    assert [(job.task_id, job.miner_hotkey, job.nonce) for job in jobs] == [
        (t.task_id, t.miner_hotkey, t.nonce) for t in tasks
    ]
    envelope = task_pb2.RoundEnvelope.FromString(jobs[0].signed.payload)
    assert envelope.leaf_count == 3
    assert len(envelope.round_id) == 16
    for job in jobs:
        assert job.validator_hotkey == VALIDATOR.hotkey
        assert job.signed.public_key == VALIDATOR.public_key
        assert (job.prompt, job.max_tokens, job.deadline_unix_ms) == ("47+85=", 6, 1_900_000_000_000)
        assert keys.verify(
            VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, job.signed.payload, job.signed.signature
        )
        assert merkle.verify(job.leaves_root, job.leaf, job.proof)
    # The signature covers the round's content: a changed prompt no longer verifies.
    changed = task_pb2.RoundEnvelope.FromString(wires[0].envelope)
    changed.prompt = "1+1="
    assert not keys.verify(
        VALIDATOR.public_key,
        subjects.ROUND_ENVELOPE_DOMAIN,
        changed.SerializeToString(deterministic=True),
        wires[0].signature.signature,
    )


def test_each_round_gets_a_fresh_round_id() -> None:
    first = seal_round([outgoing()], keypair=VALIDATOR)[0]
    second = seal_round([outgoing()], keypair=VALIDATOR)[0]
    assert first.envelope != second.envelope


@pytest.mark.parametrize("field", ["netuid", "task_type", "prompt", "max_tokens", "deadline_unix_ms"])
def test_a_round_refuses_tasks_that_do_not_share_its_fields(field: str) -> None:
    differing = {"netuid": 2, "task_type": "echo", "prompt": "1+1=", "max_tokens": 7, "deadline_unix_ms": 1}
    tasks = [outgoing(), outgoing(task_id="t-2", nonce=43, **{field: differing[field]})]
    with pytest.raises(ValueError, match=field):
        seal_round(tasks, keypair=VALIDATOR)


def test_an_empty_round_cannot_be_sealed() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        seal_round([], keypair=VALIDATOR)


@pytest.mark.parametrize("part", ["envelope", "leaf"])
def test_a_task_whose_envelope_or_leaf_is_not_a_message_does_not_decode(part: str) -> None:
    wire = task_to_proto(outgoing(), keypair=VALIDATOR)
    setattr(wire, part, b"\xff\xff")
    with pytest.raises(DecodeError):
        job_from_proto(wire, trace=None)


def response(answer: Answer, *, keypair: Keypair = MINER) -> task_pb2.TaskResponse:
    """The response the miner sends for ``answer``, decoded."""
    return task_pb2.TaskResponse.FromString(response_to_wire(answer, service=_Signer(keypair)))  # type: ignore[arg-type]


def test_a_signed_response_decodes_as_ok() -> None:
    data = response_to_wire(answer(), service=_Signer(MINER))  # type: ignore[arg-type]
    reply = decode_reply(data, task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1)
    assert reply.outcome is Outcome.OK
    assert reply.completion == "231"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (Status.BUSY, Outcome.BUSY),
        (Status.REFUSED, Outcome.REFUSED),
        (Status.EXPIRED, Outcome.EXPIRED),
        (Status.FAILED, Outcome.FAILED),
    ],
)
def test_a_miners_refusal_keeps_its_status_and_reason(status: Status, outcome: Outcome) -> None:
    data = response_to_wire(
        answer(status=status, completion="", error="why"),
        service=_Signer(MINER),  # type: ignore[arg-type]
    )
    reply = decode_reply(data, task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1)
    assert reply.outcome is outcome
    assert reply.detail == "why"


@pytest.mark.parametrize(
    "sent",
    [
        answer(),
        answer(status=Status.FAILED, completion="", error="why", generation_ms=2**40),
        answer(completion="é" * 300, completion_tokens=300, generation_ms=12),
        answer(task_id="", validator_hotkey="", status=Status.REFUSED, error="task: not a Task"),
    ],
)
def test_a_response_is_its_signed_bytes_then_its_signature(sent: Answer) -> None:
    data = response_to_wire(sent, service=_Signer(MINER))  # type: ignore[arg-type]
    received = task_pb2.TaskResponse.FromString(data)
    # The same message as one built with its signature set the ordinary way.
    expected = task_pb2.TaskResponse(
        task_id=sent.task_id,
        miner_hotkey=MINER.hotkey,
        completion=sent.completion,
        completion_tokens=sent.completion_tokens,
        generation_ms=min(sent.generation_ms, 2**32 - 1),
        error=sent.error,
        status=task_pb2.TaskStatus.Value(f"TASK_STATUS_{sent.status.name}"),
        validator_hotkey=sent.validator_hotkey,
    )
    signing.sign(expected, MINER, domain=subjects.TASK_RESPONSE_DOMAIN)
    assert received == expected
    # What the validator takes as signed (``signing.detach``) is exactly the bytes the wire starts with.
    public_key, signature, payload = signing.detach(received)
    assert public_key == MINER.public_key
    assert signature == expected.signature.signature
    assert data.startswith(payload)
    assert payload == signing.payload(expected)
    assert keys.verify(MINER.public_key, subjects.TASK_RESPONSE_DOMAIN, payload, signature)
    reply = decode_reply(
        data,
        task=outgoing(task_id=sent.task_id),
        validator_hotkey=sent.validator_hotkey,
        latency_s=0.1,
    )
    assert (
        reply.outcome
        is {Status.OK: Outcome.OK, Status.FAILED: Outcome.FAILED, Status.REFUSED: Outcome.REFUSED}[
            sent.status
        ]
    )


def test_a_signature_prefix_makes_any_message_a_signed_one() -> None:
    report = report_to_proto(summary(), keypair=VALIDATOR)
    unsigned = signing.payload(report)
    prefix = signing.signature_prefix(task_pb2.RoundReport, public_key=VALIDATOR.public_key)
    assert task_pb2.RoundReport.FromString(unsigned + prefix + report.signature.signature) == report
    # A different key gives a different prefix (the key is inside it).
    assert signing.signature_prefix(task_pb2.RoundReport, public_key=OTHER.public_key) != prefix


def test_a_response_signed_by_another_key_is_a_bad_signature() -> None:
    forged = response(answer(), keypair=OTHER)
    forged.miner_hotkey = MINER.hotkey
    reply = decode_reply(
        forged.SerializeToString(), task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1
    )
    assert reply.outcome is Outcome.BAD_SIGNATURE
    # Claiming the miner's public key does not help: the signature does not verify.
    forged.signature.public_key = MINER.public_key
    reply = decode_reply(
        forged.SerializeToString(), task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1
    )
    assert reply.outcome is Outcome.BAD_SIGNATURE


def test_a_response_changed_after_signing_is_a_bad_signature() -> None:
    changed = response(answer(completion="999"))
    changed.completion = "231"
    reply = decode_reply(
        changed.SerializeToString(), task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1
    )
    assert reply.outcome is Outcome.BAD_SIGNATURE


def test_a_response_to_another_task_is_garbage() -> None:
    data = response_to_wire(answer(task_id="t-2"), service=_Signer(MINER))  # type: ignore[arg-type]
    reply = decode_reply(data, task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1)
    assert reply.outcome is Outcome.GARBAGE
    other_validator = response_to_wire(
        answer(validator_hotkey=OTHER.hotkey),
        service=_Signer(MINER),  # type: ignore[arg-type]
    )
    reply = decode_reply(other_validator, task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1)
    assert reply.outcome is Outcome.GARBAGE


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab"])
def test_bytes_that_are_not_a_response_are_garbage(data: bytes) -> None:
    reply = decode_reply(data, task=outgoing(), validator_hotkey=VALIDATOR.hotkey, latency_s=0.1)
    assert reply.outcome is Outcome.GARBAGE


def summary() -> RoundSummary:
    return RoundSummary(
        netuid=1,
        round=3,
        started_unix_ms=1_700_000_000_000,
        duration_s=0.25,
        scores=(
            ScoredTask(
                task_id="t-1",
                uid=2,
                hotkey=MINER.hotkey,
                outcome=Outcome.OK,
                correctness=1.0,
                score=0.99,
                latency_s=0.05,
                moving_average=0.5,
            ),
            ScoredTask(
                task_id="t-2",
                uid=3,
                hotkey=OTHER.hotkey,
                outcome=Outcome.TIMEOUT,
                correctness=0.0,
                score=0.0,
                latency_s=5.0,
                moving_average=0.0,
            ),
        ),
        weights=((0, 0), (2, 65_535), (3, 0)),
        weights_block=77,
    )


def test_a_round_report_round_trips_with_its_signature() -> None:
    data = report_to_proto(summary(), keypair=VALIDATOR).SerializeToString()
    decoded = decode_report(data)
    assert decoded is not None
    assert decoded.validator_hotkey == VALIDATOR.hotkey
    assert decoded.scores == summary().scores
    assert decoded.weights == summary().weights
    assert decoded.weights_block == 77
    assert decoded.round == 3


def test_a_round_report_that_does_not_verify_is_dropped() -> None:
    report = report_to_proto(summary(), keypair=VALIDATOR)
    report.scores[0].moving_average = 1.0
    assert decode_report(report.SerializeToString()) is None
    forged = report_to_proto(summary(), keypair=OTHER)
    forged.validator_hotkey = VALIDATOR.hotkey
    assert decode_report(forged.SerializeToString()) is None
    assert decode_report(b"\xff") is None


def test_signing_domains_differ_per_message_kind() -> None:
    task = task_to_proto(outgoing(), keypair=VALIDATOR)
    payload = task.envelope
    assert keys.verify(
        VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, task.signature.signature
    )
    assert not keys.verify(
        VALIDATOR.public_key, subjects.ROUND_REPORT_DOMAIN, payload, task.signature.signature
    )
