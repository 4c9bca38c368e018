"""The ``addition`` task type: "a+b=" prompts answered with the reversed sum, matched to the small models.

The definition (prompt, answer, partial credit) is the model builder's own (``kubetensor.models.task``),
so validators score exactly what the project's models were trained to do. Challenges come from the
held-out sums only (one operand pair in ten, by a fixed rule, never in any training set): the
validator's private evaluation set, so a miner is paid for having learned addition, not for having
memorized its training data. ``correctness`` is ``task.score``: 1.0 for the exact answer, partial
credit for a right prefix.
"""

from __future__ import annotations

import functools
import random

from kubetensor.models import task
from kubetensor.validator.tasks import Challenge

_MAX_TOKENS = 6
"""A sum of two operands below 100 has at most 3 digits; the rest leaves room for the end token."""


class AdditionTask:
    """``TaskKind`` for two-digit addition with reversed answers."""

    def __init__(self) -> None:
        self._problems = task.held_out_problems()

    @property
    def name(self) -> str:
        return "addition"

    def challenge(self, rng: random.Random) -> Challenge:
        problem = rng.choice(self._problems)
        return Challenge(prompt=problem.prompt, max_tokens=_MAX_TOKENS, reference=problem.answer)

    def correctness(self, challenge: Challenge, completion: str) -> float:
        return task.score(problem_of(challenge.prompt), completion)


# A round scores every miner's answer to the same prompt: it is parsed once (the problem is a pure
# function of the prompt; a prompt that is not one raises, and raising is not remembered).
@functools.lru_cache(maxsize=256)
def problem_of(prompt: str) -> task.Problem:
    """The problem a prompt "a+b=" states (ValueError for anything else)."""
    left, plus, right = prompt.removesuffix("=").partition("+")
    if not plus or not prompt.endswith("=") or not left.isdigit() or not right.isdigit():
        raise ValueError(f"not an addition prompt: {prompt!r}")
    return task.Problem(int(left), int(right))
