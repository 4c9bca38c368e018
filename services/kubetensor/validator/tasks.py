"""The task plug-in interface: how a subnet's task type makes challenges and judges completions.

A plug-in (``TaskKind``) is chosen by the subnet's ``task`` type (``KT_VALIDATOR_TASK_TYPE``, the
Subnet resource's ``spec.task``) through a ``TaskRegistry``. ``default_registry()`` holds the task types
that ship with kubetensor (``addition``); another one is a class with a ``name``, ``challenge`` and
``correctness``, registered with ``registry.register(kind)`` by whoever composes the validator.
Called by ``ValidatorService`` (one challenge per round, one judgement per answer).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kubetensor.validator.errors import UnknownTaskTypeError


@dataclass(frozen=True)
class Challenge:
    """What one round asks: the prompt miners see, and the reference only the validator keeps."""

    prompt: str
    max_tokens: int
    reference: str
    """The checkable answer (never sent to miners)."""


class TaskKind(Protocol):
    """A task type: makes challenges and judges completions. Implementations must be pure and fast."""

    @property
    def name(self) -> str:
        """The task type this plug-in implements (``Subnet.spec.task``), e.g. "addition"."""
        ...

    def challenge(self, rng: random.Random) -> Challenge:
        """A new challenge drawn with ``rng``."""
        ...

    def correctness(self, challenge: Challenge, completion: str) -> float:
        """How right ``completion`` is, in [0, 1]; 1 only for a fully correct answer."""
        ...


class TaskRegistry:
    """Task plug-ins by task type."""

    def __init__(self, kinds: Iterable[TaskKind] = ()) -> None:
        self._kinds: dict[str, TaskKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: TaskKind) -> None:
        """Add ``kind``; ValueError if its name is taken."""
        if kind.name in self._kinds:
            raise ValueError(f"a task plug-in named {kind.name!r} is registered already")
        self._kinds[kind.name] = kind

    def get(self, task_type: str) -> TaskKind:
        """The plug-in for ``task_type``; UnknownTaskTypeError listing the known ones otherwise."""
        kind = self._kinds.get(task_type)
        if kind is None:
            raise UnknownTaskTypeError(task_type, known=self._kinds)
        return kind

    def names(self) -> list[str]:
        return sorted(self._kinds)


def default_registry() -> TaskRegistry:
    """The task types that ship with kubetensor."""
    from kubetensor.validator.addition import AdditionTask

    return TaskRegistry([AdditionTask()])
