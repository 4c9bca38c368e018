"""Task scores, per-uid moving averages and the u16 weights they become. Pure: no I/O, no clock.

Called by ``ValidatorService`` after each round and before each weight set; ``state`` persists
``MovingAverages``. The rules:

* A task's score is ``correctness * (1 - latency_weight * min(latency / timeout, 1))``: correctness
  (the subnet's scorer, in [0, 1]) decides; latency only breaks ties between equally correct answers
  (with the default weight 0.05 a slow exact answer still beats any answer that is not exact by more
  than 5%). Any failure (no answer, timeout, refusal, garbage, a bad signature) scores 0.
* Each uid's moving average is ``(1 - alpha) * previous + alpha * score`` (an exponential moving
  average starting at 0, as Bittensor's validator template keeps). A uid that changed hotkey (a new
  registration replaced the old one) starts again from 0.
* Weights are the moving averages of every uid in the metagraph (0 for a uid never scored, including
  validators), max-upscaled to u16 so the largest is 65535; all-zero averages give no weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

U16_MAX = 65_535


def task_score(*, correctness: float, latency_s: float, timeout_s: float, latency_weight: float) -> float:
    """The score of one answer (see the module doc); 0 when ``correctness`` is 0 or less."""
    if correctness <= 0.0:
        return 0.0
    slowness = min(max(latency_s / timeout_s, 0.0), 1.0) if timeout_s > 0 else 1.0
    return min(correctness, 1.0) * (1.0 - latency_weight * slowness)


@dataclass(frozen=True)
class Average:
    """One uid's moving average, tied to the hotkey that earned it."""

    hotkey: str
    value: float = 0.0
    count: int = 0
    """Scores folded in so far."""


@dataclass(frozen=True)
class MovingAverages:
    """Exponential moving averages of task scores per uid."""

    alpha: float
    entries: Mapping[int, Average]

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha: expected 0 < alpha <= 1, got {self.alpha}")

    @classmethod
    def empty(cls, alpha: float) -> MovingAverages:
        return cls(alpha=alpha, entries={})

    def value(self, uid: int, hotkey: str) -> float:
        """``uid``'s average while ``hotkey`` holds it (0 for anything else)."""
        entry = self.entries.get(uid)
        return entry.value if entry is not None and entry.hotkey == hotkey else 0.0

    def folded(self, uid: int, hotkey: str, score: float) -> Average:
        """``uid``'s average once ``score`` is folded in (by ``hotkey``); this object is not changed."""
        return _fold(self.entries.get(uid), hotkey, score, self.alpha)

    def with_entries(self, entries: Mapping[int, Average]) -> MovingAverages:
        """These averages with ``entries`` in place of those of the uids they name (``folded`` results)."""
        return replace(self, entries={**self.entries, **entries})

    def updated(self, scores: Iterable[tuple[int, str, float]]) -> MovingAverages:
        """The averages after folding in ``(uid, hotkey, score)`` triples (one per uid)."""
        entries = dict(self.entries)
        for uid, hotkey, score in scores:
            entries[uid] = _fold(entries.get(uid), hotkey, score, self.alpha)
        return replace(self, entries=entries)

    def weights(self, neurons: Iterable[tuple[int, str]]) -> list[tuple[int, int]] | None:
        """u16 weights for every ``(uid, hotkey)`` in the metagraph, max-upscaled; None when all are 0."""
        values = [(uid, self.value(uid, hotkey)) for uid, hotkey in neurons]
        top = max((value for _, value in values), default=0.0)
        if top <= 0.0:
            return None
        return [(uid, round(value / top * U16_MAX)) for uid, value in sorted(values)]


def _fold(previous: Average | None, hotkey: str, score: float, alpha: float) -> Average:
    """The average after ``score``: a uid that changed hotkey (or was never scored) starts from 0."""
    if previous is None or previous.hotkey != hotkey:
        previous = Average(hotkey=hotkey)
    return Average(
        hotkey=hotkey, value=(1.0 - alpha) * previous.value + alpha * score, count=previous.count + 1
    )
