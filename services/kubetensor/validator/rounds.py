"""The validator's domain values for one round: the task it sends, the reply it got, the scores it gave.

Built by ``ValidatorService`` and the NATS edge (``taskclient``), which converts them to and from the
wire (``Task``, ``TaskResponse``, ``RoundReport``); nothing here imports generated code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kubetensor.core.tracecontext import TraceContext


class Outcome(enum.Enum):
    """How one task ended, from the validator's side (``Score.outcome`` on the wire)."""

    OK = "ok"
    """A verified answer arrived in time (its correctness is still to be judged)."""
    TIMEOUT = "timeout"
    """No answer before the deadline (a miner that hangs)."""
    NO_RESPONDERS = "no_responders"
    """Nobody subscribes to the miner's subject (a miner that is down)."""
    GARBAGE = "garbage"
    """The answer is not a TaskResponse, or answers another task."""
    BAD_SIGNATURE = "bad_signature"
    """The answer is not signed by the miner's hotkey."""
    BUSY = "busy"
    REFUSED = "refused"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True)
class OutgoingTask:
    """One task for one miner, before the edge seals it into its round (every task of a round shares
    ``netuid``, ``task_type``, ``prompt``, ``max_tokens`` and ``deadline_unix_ms``)."""

    task_id: str
    netuid: int
    task_type: str
    prompt: str
    max_tokens: int
    miner_hotkey: str
    nonce: int
    deadline_unix_ms: int


@dataclass(frozen=True)
class SealedTask:
    """One task of a sealed round, ready to send (built by the edge's ``seal``)."""

    task: OutgoingTask
    wire: bytes
    """The serialized wire ``Task``: the round's signed envelope, this task's leaf and its proof."""


@dataclass(frozen=True)
class Reply:
    """What came back for one task, after the edge checked it."""

    outcome: Outcome
    latency_s: float
    completion: str = ""
    detail: str = ""
    """Why the outcome is not OK (the miner's error text, the decode error, ...)."""
    trace: TraceContext | None = None
    """The miner's span, when its reply carried a traceparent."""


@dataclass(frozen=True)
class ScoredTask:
    """One miner's result in a round."""

    task_id: str
    uid: int
    hotkey: str
    outcome: Outcome
    correctness: float
    score: float
    latency_s: float
    moving_average: float


@dataclass(frozen=True)
class RoundSummary:
    """What a round did: its scores and, when the cadence came round, the weights it set."""

    netuid: int
    round: int
    started_unix_ms: int
    duration_s: float
    scores: tuple[ScoredTask, ...]
    weights: tuple[tuple[int, int], ...] = ()
    weights_block: int = 0
    validator_hotkey: str = ""
    """Who ran the round (filled in by ``taskclient.decode_report`` for observers)."""
