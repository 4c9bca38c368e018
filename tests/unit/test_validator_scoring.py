"""Task scores, moving averages and the u16 weights they become (kubetensor.validator.scoring)."""

from __future__ import annotations

import pytest
from kubetensor.validator.scoring import U16_MAX, MovingAverages, task_score

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_task_score_is_correctness_when_instant() -> None:
    assert task_score(correctness=1.0, latency_s=0.0, timeout_s=5.0, latency_weight=0.05) == 1.0
    assert task_score(correctness=0.25, latency_s=0.0, timeout_s=5.0, latency_weight=0.05) == 0.25


def test_task_score_latency_breaks_ties_only() -> None:
    fast = task_score(correctness=1.0, latency_s=0.1, timeout_s=5.0, latency_weight=0.05)
    slow = task_score(correctness=1.0, latency_s=4.0, timeout_s=5.0, latency_weight=0.05)
    near_miss_instant = task_score(correctness=0.9, latency_s=0.0, timeout_s=5.0, latency_weight=0.05)
    assert fast > slow
    # The slowest exact answer still beats a 10% worse answer that came at once.
    assert slow >= 0.95 > near_miss_instant


def test_task_score_is_zero_for_wrong_answers_however_fast() -> None:
    assert task_score(correctness=0.0, latency_s=0.0, timeout_s=5.0, latency_weight=0.05) == 0.0
    assert task_score(correctness=-1.0, latency_s=0.0, timeout_s=5.0, latency_weight=0.05) == 0.0


def test_task_score_caps_latency_at_the_timeout() -> None:
    at = task_score(correctness=1.0, latency_s=5.0, timeout_s=5.0, latency_weight=0.05)
    beyond = task_score(correctness=1.0, latency_s=50.0, timeout_s=5.0, latency_weight=0.05)
    assert at == beyond == pytest.approx(0.95)


def test_moving_average_is_an_ema_from_zero() -> None:
    averages = MovingAverages.empty(0.5)
    averages = averages.updated([(0, A, 1.0)])
    assert averages.value(0, A) == 0.5
    averages = averages.updated([(0, A, 1.0)])
    assert averages.value(0, A) == 0.75
    averages = averages.updated([(0, A, 0.0)])
    assert averages.value(0, A) == 0.375
    assert averages.entries[0].count == 3


def test_moving_average_restarts_when_the_uid_changes_hands() -> None:
    averages = MovingAverages.empty(0.5).updated([(0, A, 1.0), (0, A, 1.0)])
    assert averages.value(0, A) == 0.75
    assert averages.value(0, B) == 0.0
    averages = averages.updated([(0, B, 1.0)])
    assert averages.value(0, B) == 0.5
    assert averages.value(0, A) == 0.0
    assert averages.entries[0].count == 1


def test_moving_averages_are_immutable_values() -> None:
    before = MovingAverages.empty(0.5)
    after = before.updated([(1, A, 1.0)])
    assert before.entries == {}
    assert after.value(1, A) == 0.5


def test_folded_averages_are_what_updated_stores_when_put_in_place() -> None:
    before = MovingAverages.empty(0.5).updated([(0, A, 1.0), (1, A, 1.0), (2, B, 0.5)])
    scores = [(0, A, 0.0), (1, B, 1.0), (3, A, 1.0)]
    folded = before.with_entries({uid: before.folded(uid, hotkey, score) for uid, hotkey, score in scores})
    assert folded == before.updated(scores)
    # uid 0 went on from 0.5, uid 1 changed hands and started again, uid 3 is new, uid 2 is untouched.
    assert [folded.entries[uid].count for uid in range(4)] == [2, 1, 1, 1]
    assert folded.value(0, A) == 0.25
    assert folded.value(2, B) == before.value(2, B) == 0.25
    # ``folded`` changes nothing by itself.
    assert before.entries[0].count == 1


def test_weights_are_max_upscaled_and_cover_every_uid() -> None:
    averages = MovingAverages.empty(1.0).updated([(2, A, 0.8), (3, B, 0.4)])
    weights = averages.weights([(0, C), (1, "d" * 64), (2, A), (3, B), (4, "e" * 64)])
    assert weights == [(0, 0), (1, 0), (2, U16_MAX), (3, round(U16_MAX / 2)), (4, 0)]


def test_weights_ignore_a_uid_whose_hotkey_changed() -> None:
    averages = MovingAverages.empty(1.0).updated([(0, A, 0.9), (1, B, 0.3)])
    assert averages.weights([(0, C), (1, B)]) == [(0, 0), (1, U16_MAX)]


def test_no_weights_when_every_average_is_zero() -> None:
    averages = MovingAverages.empty(0.5).updated([(0, A, 0.0)])
    assert averages.weights([(0, A), (1, B)]) is None
    assert MovingAverages.empty(0.5).weights([]) is None


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_alpha_out_of_range_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        MovingAverages.empty(alpha)
