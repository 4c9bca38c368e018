"""Errors the validator raises; each is a ``kubetensor.core.errors`` category.

Raised by ``tasks`` (an unknown task type), ``state`` (a state file of another validator or subnet),
``consensus`` (the consensus service down or refusing) and ``service``. ``__main__`` turns a refusal to
start into one log line; inside the round loop they are logged and the next round tries again.

Hierarchy (category in brackets)::

    ValidatorError                                  base of everything below
    ├── UnknownTaskTypeError       [InvalidArgument] no plug-in for the subnet's task type (lists known)
    ├── StateMismatchError         [FailedPrecondition] the state file belongs to another validator/subnet
    ├── NotRegisteredError         [FailedPrecondition] the validator's hotkey holds no uid on the subnet
    ├── ConsensusUnavailableError  [Unavailable] the consensus service did not answer
    └── WeightsRefusedError        [FailedPrecondition] the consensus service refused the weights
"""

from __future__ import annotations

from collections.abc import Iterable

from kubetensor.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    KubetensorError,
    UnavailableError,
)


class ValidatorError(KubetensorError):
    """Base class of every error raised by kubetensor.validator."""


class UnknownTaskTypeError(ValidatorError, InvalidArgumentError):
    """No task plug-in is registered for the subnet's task type."""

    def __init__(self, task_type: str, *, known: Iterable[str]) -> None:
        self.task_type = task_type
        self.known = sorted(known)
        super().__init__("task_type", f"no task plug-in named {task_type!r}; known: {', '.join(self.known)}")


class StateMismatchError(ValidatorError, FailedPreconditionError):
    """The state file was written by another validator hotkey or for another subnet."""


class NotRegisteredError(ValidatorError, FailedPreconditionError):
    """The validator's hotkey holds no uid on the subnet."""

    def __init__(self, hotkey: str, *, netuid: int) -> None:
        self.hotkey = hotkey
        self.netuid = netuid
        super().__init__(f"hotkey {hotkey[:16]}... is not registered on subnet {netuid}")


class ConsensusUnavailableError(ValidatorError, UnavailableError):
    """The consensus service did not answer (down, or past the call deadline)."""


class WeightsRefusedError(ValidatorError, FailedPreconditionError):
    """The consensus service refused the weights (rate limit, no permit, ...); the message says why."""
