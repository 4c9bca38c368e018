"""The miner's domain values: a verified-on-arrival task (``Job``), its ``Answer``, and stream ``Chunk``s.

Built by the edges (``subscriber`` from a NATS ``Task``, ``servicer`` from a gRPC request) and consumed
by ``MinerService``; nothing here imports generated code.

They are immutable ``NamedTuple``s rather than frozen dataclasses: a miner builds a ``Job``, its
``SignedBytes``, an ``Answer`` and the engine's ``Chunk``s for every task, and a frozen dataclass sets
each field through ``object.__setattr__`` (a ``Job`` cost 1.2 us to build, a tuple 0.4 us).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from kubetensor.core.tracecontext import TraceContext


class Status(enum.Enum):
    """How a task ended, as the miner reports it (``TaskStatus`` on the wire)."""

    OK = "ok"
    BUSY = "busy"
    REFUSED = "refused"
    EXPIRED = "expired"
    FAILED = "failed"


class SignedBytes(NamedTuple):
    """A signature and the exact bytes it must cover."""

    public_key: bytes
    signature: bytes
    payload: bytes


class Job(NamedTuple):
    """One task from a validator, as it arrived (nothing is verified yet).

    The round's fields come from the signed round envelope (``signed.payload`` is its bytes), the task's
    own (``task_id``, ``miner_hotkey``, ``nonce``) from its Merkle leaf (``leaf``, the bytes hashed), which
    ``proof`` must lead to the envelope's ``leaves_root``.
    """

    task_id: str
    netuid: int
    task_type: str
    prompt: str
    max_tokens: int
    validator_hotkey: str
    miner_hotkey: str
    nonce: int
    deadline_unix_ms: int
    signed: SignedBytes
    leaf: bytes
    proof: tuple[bytes, ...]
    leaves_root: bytes
    trace: TraceContext | None = None
    """The miner's own span for this task (a child of the validator's, when it sent one)."""


class Answer(NamedTuple):
    """The miner's answer to a ``Job``."""

    task_id: str
    validator_hotkey: str
    status: Status
    completion: str = ""
    completion_tokens: int = 0
    generation_ms: int = 0
    error: str = ""


class Chunk(NamedTuple):
    """A piece of a streamed completion; the last one carries ``finish_reason``."""

    text: str
    finish_reason: str = ""
    """"" until the last chunk; then "stop", "length" or another engine reason."""
    completion_tokens: int | None = None
    """Tokens generated so far, when the engine reported usage (only on the last chunk)."""
