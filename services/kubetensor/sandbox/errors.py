"""Errors raised while starting or stopping local servers.

Hierarchy::

    SandboxError                 anything that went wrong in kubetensor.sandbox
    ├── ToolNotFoundError        a pinned binary is not built (run `make tools`)
    ├── ProcessStartError        a server exited or never became healthy; carries its log tail
    └── SandboxStateError        `sandbox up/down/status` found an inconsistent state directory
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base class for every error raised by kubetensor.sandbox."""


class ToolNotFoundError(SandboxError):
    """A pinned tool binary is missing."""

    def __init__(self, name: str, searched: list[str]) -> None:
        self.name = name
        self.searched = searched
        where = ", ".join(searched)
        super().__init__(f"{name} not found (looked in: {where}); build the pinned tools with `make tools`")


class ProcessStartError(SandboxError):
    """A server process failed to start; the message names the binary and shows its log tail."""

    def __init__(self, name: str, reason: str, *, log_tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"{name} failed to start: {reason}\n--- last lines of {name}'s log ---\n{log_tail}")


class SandboxStateError(SandboxError):
    """The sandbox state directory does not describe what the command expected."""
