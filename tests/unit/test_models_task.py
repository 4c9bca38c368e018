"""The addition task's prompts, held-out split and scoring."""

from __future__ import annotations

import pytest
from kubetensor.models import task


def test_answer_is_reversed_sum() -> None:
    assert task.Problem(47, 85).prompt == "47+85="
    assert task.Problem(47, 85).answer == "231"
    assert task.Problem(0, 0).answer == "0"


def test_held_out_split_is_disjoint_and_about_a_tenth() -> None:
    train = {(p.a, p.b) for p in task.training_problems()}
    held = {(p.a, p.b) for p in task.held_out_problems()}
    assert not train & held
    assert len(train) + len(held) == 100 * 100
    assert 900 <= len(held) <= 1100


@pytest.mark.parametrize(
    ("completion", "expected"),
    [("231", 1.0), (" 2 3 1", 1.0), ("231</s>", 1.0), ("23", 1 / 3), ("2", 0.5 / 3), ("", 0.0), ("999", 0.0)],
)
def test_score_gives_full_credit_only_for_exact_answer(completion: str, expected: float) -> None:
    assert task.score(task.Problem(47, 85), completion) == pytest.approx(expected)


def test_accuracy_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        task.accuracy([task.Problem(1, 1), task.Problem(2, 2)], ["2"])


def test_accuracy_counts_exact_answers() -> None:
    problems = [task.Problem(1, 1), task.Problem(10, 5)]
    assert task.accuracy(problems, ["2", "51"]) == 1.0
    assert task.accuracy(problems, ["2", "15"]) == 0.5
