"""Errors the miner raises; each is a ``kubetensor.core.errors`` category and names the task status.

Raised by ``service`` (task checks, concurrency, generation), ``permits`` and ``completions``. On the
gRPC path the interceptor maps the category to a status code; on the NATS path ``MinerService.answer``
turns the error into an ``Answer`` whose status is the error's ``status`` and whose text is the message.

Hierarchy (category and task status in brackets)::

    MinerError                                      base of everything below
    ├── TaskRefusedError       [PermissionDenied, REFUSED]  the task is not one this miner may answer
    │   ├── MisaddressedTaskError   not for this miner's hotkey or subnet (names the field)
    │   ├── BadTaskSignatureError   the signature is not the named validator's over the round envelope
    │   ├── BadTaskProofError       the task's leaf is not under the signed envelope's Merkle root
    │   ├── NoPermitError           the validator holds no validator permit on the subnet
    │   └── ReplayedTaskError       this (validator, nonce) was answered already
    ├── TaskExpiredError       [FailedPrecondition, EXPIRED] the deadline passed, or is too far ahead
    ├── MinerBusyError         [Unavailable, BUSY]   every generation slot is taken; nothing was queued
    ├── EngineError            [Unavailable, FAILED] the OpenAI-compatible engine failed or is unreachable
    ├── MetagraphUnavailableError [Unavailable, FAILED] permits are unknown: the consensus service is down
    └── StateDirError          [FailedPrecondition]  KT_MINER_STATE_DIR cannot hold the replay journal
"""

from __future__ import annotations

from kubetensor.core.errors import (
    FailedPreconditionError,
    KubetensorError,
    PermissionDeniedError,
    UnavailableError,
)
from kubetensor.miner.jobs import Status


class MinerError(KubetensorError):
    """Base class of every error raised by kubetensor.miner."""

    status = Status.FAILED
    """The task status a NATS answer reports for this error."""


class TaskRefusedError(MinerError, PermissionDeniedError):
    """The task is not one this miner may answer."""

    status = Status.REFUSED


class MisaddressedTaskError(TaskRefusedError):
    """The task names another miner or another subnet (``field`` says which)."""

    def __init__(self, field: str, *, expected: str, got: str) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: this miner answers {expected}, the task names {got[:80]}")


class BadTaskSignatureError(TaskRefusedError):
    """The task's signature does not verify as its validator hotkey's."""

    def __init__(self, validator_hotkey: str) -> None:
        self.validator_hotkey = validator_hotkey
        super().__init__(
            f"signature: not a valid RoundEnvelope signature by hotkey {validator_hotkey[:16]}..."
        )


class BadTaskProofError(TaskRefusedError):
    """The task's leaf (its id, miner hotkey and nonce) is not under the signed envelope's Merkle root."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(
            f"proof: task {task_id[:80]}'s leaf does not lead to the signed envelope's leaves_root"
        )


class NoPermitError(TaskRefusedError):
    """The validator is not registered on the subnet or holds no validator permit there."""

    def __init__(self, validator_hotkey: str, *, netuid: int) -> None:
        self.validator_hotkey = validator_hotkey
        self.netuid = netuid
        super().__init__(
            f"validator_hotkey: {validator_hotkey[:16]}... holds no validator permit on subnet {netuid}"
        )


class ReplayedTaskError(TaskRefusedError):
    """The validator already sent a task with this nonce (a replay)."""

    def __init__(self, validator_hotkey: str, *, nonce: int) -> None:
        self.validator_hotkey = validator_hotkey
        self.nonce = nonce
        super().__init__(f"nonce: {nonce} from {validator_hotkey[:16]}... was seen already (replay)")


class TaskExpiredError(MinerError, FailedPreconditionError):
    """The task's deadline has passed, or lies further ahead than the miner accepts."""

    status = Status.EXPIRED

    def __init__(self, *, deadline_unix_ms: int, now_unix_ms: int, max_ahead_ms: int) -> None:
        self.deadline_unix_ms = deadline_unix_ms
        self.now_unix_ms = now_unix_ms
        if deadline_unix_ms <= now_unix_ms:
            problem = f"passed {now_unix_ms - deadline_unix_ms} ms ago"
        else:
            problem = f"is {deadline_unix_ms - now_unix_ms} ms ahead (at most {max_ahead_ms} ms accepted)"
        super().__init__(f"deadline_unix_ms: the deadline {problem}")


class MinerBusyError(MinerError, UnavailableError):
    """Every generation slot is taken; the request was not queued."""

    status = Status.BUSY

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"busy: {what}; retry later")


class EngineError(MinerError, UnavailableError):
    """The OpenAI-compatible engine answered with an error, malformed output, or not at all."""

    status = Status.FAILED


class MetagraphUnavailableError(MinerError, UnavailableError):
    """The miner cannot tell who holds a permit: the consensus service has not answered yet."""

    status = Status.FAILED


class StateDirError(MinerError, FailedPreconditionError):
    """The state folder (``KT_MINER_STATE_DIR``) cannot hold the replay journal; the miner does not start."""

    def __init__(self, path: object, error: OSError) -> None:
        self.path = path
        super().__init__(f"KT_MINER_STATE_DIR: cannot keep the replay journal in {path}: {error}")
