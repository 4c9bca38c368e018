"""The addition task: prompts with checkable answers, shared by the model builder and the scorers.

A prompt is ``"a+b="`` with ``0 <= a, b <= 99``; the answer is the decimal sum written with its digits
reversed (``47+85=`` -> ``"231"``). Reversed order lets a tiny model carry digit by digit, which is
why a couple of thousand training steps on a CPU are enough to learn it. One pair in ten (picked by a
fixed rule, not at random) is held out of training so evaluation uses sums the models never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

VOCAB: tuple[str, ...] = ("<pad>", "<s>", "</s>", *"0123456789", "+", "=")
MAX_OPERAND = 99


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)[::-1]


def is_held_out(a: int, b: int) -> bool:
    """The fixed rule that keeps one pair in ten out of training."""
    return (a * 7 + b * 13) % 10 == 0


def training_problems() -> list[Problem]:
    return [
        Problem(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1) if not is_held_out(a, b)
    ]


def held_out_problems(limit: int | None = None) -> list[Problem]:
    problems = [
        Problem(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1) if is_held_out(a, b)
    ]
    return problems[:limit] if limit is not None else problems


def normalize(completion: str) -> str:
    """The answer part of a completion: digits only, up to the first non-digit after them."""
    text = completion.replace(" ", "").strip()
    digits = []
    for ch in text:
        if ch.isdigit():
            digits.append(ch)
        elif digits:
            break
    return "".join(digits)


def score(problem: Problem, completion: str) -> float:
    """1.0 for the exact answer; otherwise the fraction of leading answer digits that are right.

    Partial credit keeps scores informative between models that are close to right and models that
    emit nothing; the exact answer always scores strictly more than any near miss.
    """
    got = normalize(completion)
    if got == problem.answer:
        return 1.0
    right = 0
    for want, have in zip(problem.answer, got, strict=False):
        if want != have:
            break
        right += 1
    return 0.5 * right / len(problem.answer)


def accuracy(problems: list[Problem], completions: list[str]) -> float:
    """The share of exactly right answers."""
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    if not problems:
        return 0.0
    return sum(normalize(c) == p.answer for p, c in zip(problems, completions, strict=True)) / len(problems)
