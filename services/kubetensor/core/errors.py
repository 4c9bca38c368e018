"""The error categories every kubetensor service raises, one per gRPC status code it may answer with.

Services define their own errors (``<service>/errors.py``) as subclasses of these categories; the
gRPC interceptor in ``kubetensor.core.grpcserver`` maps a category to its status code once, by table,
so no servicer chooses codes by hand. Anything that is not a ``KubetensorError`` reaches the client as
INTERNAL and is logged with its traceback. This module imports nothing from gRPC, so domain code can
raise these errors without depending on the transport.

Hierarchy::

    KubetensorError                  base; the message is what the client reads
    ├── InvalidArgumentError         INVALID_ARGUMENT: a field is malformed (carries ``field``)
    ├── NotFoundError                NOT_FOUND: the named thing does not exist here
    ├── AlreadyExistsError           ALREADY_EXISTS: the thing to create exists, or the request was done
    ├── FailedPreconditionError      FAILED_PRECONDITION: valid request, wrong state (retry may succeed)
    ├── UnavailableError             UNAVAILABLE: a dependency is down; retry with backoff
    ├── PermissionDeniedError        PERMISSION_DENIED: the caller is known but not allowed
    └── UnauthenticatedError         UNAUTHENTICATED: the caller could not be authenticated
"""

from __future__ import annotations


class KubetensorError(Exception):
    """Base class of every error a kubetensor service reports to its clients."""


class InvalidArgumentError(KubetensorError):
    """A request field is malformed; the message names the field and what was expected."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFoundError(KubetensorError):
    """The named resource does not exist (here)."""


class AlreadyExistsError(KubetensorError):
    """The resource to create exists already, or the identical request was already carried out."""


class FailedPreconditionError(KubetensorError):
    """The request is well formed but the system is not in the state it requires."""


class UnavailableError(KubetensorError):
    """A dependency is unavailable; the same request may succeed later."""


class PermissionDeniedError(KubetensorError):
    """The caller is authenticated but not allowed to do this."""


class UnauthenticatedError(KubetensorError):
    """The caller's identity could not be established (for example a signature that does not verify)."""
