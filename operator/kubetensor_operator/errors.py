"""The operator's errors; each carries the fields a status message or a log line needs.

Hierarchy::

    OperatorError                     base
    ├── SpecError                     a custom resource's spec is invalid (carries ``field``); raised by
    │                                 ``model``; the handler turns it into ``kopf.PermanentError`` and an
    │                                 ``InvalidSpec`` condition
    ├── HotkeySecretError             a user-provided hotkey Secret lacks a valid seed (carries ``secret``)
    ├── KubeApiError                  the API server answered an error (carries ``status``, ``reason``)
    │   └── KubeConflictError         409: the object exists already / the write conflicted
    ├── KubeConfigError               no usable credentials (kubeconfig or in-cluster)
    └── ConsensusError                a subnet's consensus service could not do what was asked
        ├── ConsensusUnavailableError it could not be reached (UNAVAILABLE, deadline): retry later
        └── ConsensusRefusedError     it answered with a refusal (carries the gRPC ``code`` name)

Transient trouble (``KubeApiError`` with a 5xx or 429 status, ``ConsensusUnavailableError``) is retried
by the resync timer; the lasting record is ``status.conditions``.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base class of the operator's errors."""


class SpecError(OperatorError):
    """A spec field is invalid; the message names the field and what was expected."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class HotkeySecretError(OperatorError):
    """A hotkey Secret exists but does not hold a usable seed (the value itself is never shown)."""

    def __init__(self, secret: str, problem: str) -> None:
        self.secret = secret
        self.problem = problem
        super().__init__(f"Secret {secret}: {problem}")


class KubeApiError(OperatorError):
    """The API server refused or failed a request."""

    def __init__(self, *, method: str, path: str, status: int, reason: str, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {status} {reason}: {message}")

    @property
    def transient(self) -> bool:
        """True for answers that may change on retry (throttling, server errors, timeouts)."""
        return self.status in (0, 429) or self.status >= 500


class KubeConflictError(KubeApiError):
    """409: the object to create exists already, or a write conflicted with another."""


class KubeConfigError(OperatorError):
    """No usable credentials: a kubeconfig that cannot be read, or no in-cluster service account."""


class ConsensusError(OperatorError):
    """A call to a subnet's consensus service failed."""

    def __init__(self, address: str, detail: str) -> None:
        self.address = address
        self.detail = detail
        super().__init__(f"consensus service at {address}: {detail}")


class ConsensusUnavailableError(ConsensusError):
    """The consensus service could not be reached or did not answer in time."""


class ConsensusRefusedError(ConsensusError):
    """The consensus service answered with a refusal (``code`` is the gRPC status name)."""

    def __init__(self, address: str, *, code: str, detail: str) -> None:
        self.code = code
        super().__init__(address, f"{code}: {detail}")
