"""The NATS side of kubetensor's protocol in one place: subjects, headers and signing domains.

Imported by the miner (which subscribes), the validator (which requests and reports) and the devnet
(which listens to reports); ``docs/protocol.md`` is the same table for readers. Messages are the
protobufs of ``protos/kubetensor/v1/task.proto``, serialized with ``SerializeToString()``.

Subjects (``<netuid>`` is decimal, hotkeys are 64 lowercase hex characters)::

    kt.<netuid>.miner.<miner_hotkey>.task            request/reply: Task -> TaskResponse
                                                     (replicas of one miner share queue group
                                                     "miner.<miner_hotkey>.<secret>": miner_queue)
    kt.<netuid>.validator.<validator_hotkey>.round   publish: RoundReport after each round

Headers (all optional; a receiver never trusts them for authorization, the signed body decides)::

    traceparent      W3C trace context (``00-<trace-id>-<span-id>-<flags>``); a miner continues the
                     trace it receives (vLLM gets it too) and, when it traces, answers with its own
                     span's traceparent (a validator or miner that does not trace sends its tasks and
                     answers with no headers)
    tracestate       W3C vendor trace state, passed through unchanged
    Kt-Message       the protobuf message type of the body, e.g. "kubetensor.v1.Task"

Signing domains (``kubetensor.core.keys.signing_bytes``): a signature made for one message kind can
never be replayed as another.
"""

from __future__ import annotations

import re

PREFIX = "kt"
"""First token of every kubetensor subject."""

TRACEPARENT = "traceparent"
"""Header: W3C trace context of the sender's span."""
TRACESTATE = "tracestate"
"""Header: W3C vendor trace state (passed through)."""
MESSAGE_TYPE = "Kt-Message"
"""Header: full protobuf name of the body's message type."""

ROUND_ENVELOPE_DOMAIN = "RoundEnvelope"
"""Signing domain of ``RoundEnvelope`` (signed once per round by the validator's hotkey; each ``Task``
carries it with the miner's Merkle leaf and proof)."""
TASK_RESPONSE_DOMAIN = "TaskResponse"
"""Signing domain of ``TaskResponse`` (signed by the miner's hotkey)."""
ROUND_REPORT_DOMAIN = "RoundReport"
"""Signing domain of ``RoundReport`` (signed by the validator's hotkey)."""

TASK_MESSAGE = "kubetensor.v1.Task"
TASK_RESPONSE_MESSAGE = "kubetensor.v1.TaskResponse"
ROUND_REPORT_MESSAGE = "kubetensor.v1.RoundReport"

_HOTKEY = re.compile(r"[0-9a-f]{64}")


def _check(netuid: int, hotkey: str) -> None:
    if not 0 <= netuid <= 65_535:
        raise ValueError(f"netuid: expected 0..65535, got {netuid}")
    if not _HOTKEY.fullmatch(hotkey):
        raise ValueError(f"hotkey: expected 64 lowercase hex characters, got {hotkey[:80]!r}")


MINER_TASKS_TEMPLATE = f"{PREFIX}.{{netuid}}.miner.{{hotkey}}.task"
"""``miner_tasks`` with its variable parts named (span names and ``messaging.destination.template``)."""


def miner_tasks(netuid: int, hotkey: str) -> str:
    """The subject a miner with ``hotkey`` answers tasks on."""
    _check(netuid, hotkey)
    return f"{PREFIX}.{netuid}.miner.{hotkey}.task"


MINER_QUEUE_PURPOSE = "nats queue group of the miner's replicas"
"""What a miner derives its queue group's secret for (``keys.Keypair.derive_secret``)."""


def miner_queue(hotkey: str, secret: bytes) -> str:
    """The queue group the replicas of one miner hotkey share: ``miner.<hotkey>.<secret, hex>``, where
    ``secret`` (16 bytes or more) comes from the hotkey's seed (``Keypair.derive_secret`` of
    ``MINER_QUEUE_PURPOSE``). Every client that joins a queue group takes a share of its messages, so a
    group anyone could name would let any participant of the subnet take a miner's tasks away from it;
    only the miner's own replicas hold the seed, so only they can name this one."""
    _check(0, hotkey)
    if len(secret) < 16:
        raise ValueError(f"secret: at least 16 bytes, got {len(secret)}")
    return f"miner.{hotkey}.{secret.hex()}"


def validator_rounds(netuid: int, hotkey: str) -> str:
    """The subject a validator with ``hotkey`` publishes its round reports on."""
    _check(netuid, hotkey)
    return f"{PREFIX}.{netuid}.validator.{hotkey}.round"


def all_validator_rounds(netuid: int) -> str:
    """A wildcard subject matching every validator's round reports on ``netuid``."""
    if not 0 <= netuid <= 65_535:
        raise ValueError(f"netuid: expected 0..65535, got {netuid}")
    return f"{PREFIX}.{netuid}.validator.*.round"
