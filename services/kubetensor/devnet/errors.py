"""Errors the devnet raises. ``commands`` prints them as one line and exits non-zero.

Hierarchy::

    DevnetError                    base of everything below
    ├── ComponentStartError        a component did not become ready (carries its log tail)
    ├── ComponentExitedError       a component exited while the network ran (carries its log tail)
    └── ModelBuildError            ``kubetensor models build`` failed (carries its exit code)
"""

from __future__ import annotations


class DevnetError(Exception):
    """Base class of every error raised by kubetensor.devnet."""


class ComponentStartError(DevnetError):
    """A component did not become ready."""

    def __init__(self, name: str, problem: str, *, log_tail: str) -> None:
        self.name = name
        self.problem = problem
        self.log_tail = log_tail
        super().__init__(f"{name} did not start: {problem}\n--- last lines of its log ---\n{log_tail}")


class ComponentExitedError(DevnetError):
    """A component exited while the network ran; the devnet stops everything else."""

    def __init__(self, name: str, *, code: int | None, log_path: str, log_tail: str) -> None:
        self.name = name
        self.code = code
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(
            f"{name} exited with code {code} (log: {log_path})\n--- last lines of its log ---\n{log_tail}"
        )


class ModelBuildError(DevnetError):
    """Building the models in a child process failed; its output was shown line by line."""

    def __init__(self, *, code: int) -> None:
        self.code = code
        super().__init__(f"building the models failed: `kubetensor models build` exited with code {code}")
