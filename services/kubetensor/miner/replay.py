"""``ReplayGuard``: refuses a (validator, nonce) pair seen before, with memory bounded by task deadlines.

Called by ``MinerService`` after a task's signature, deadline and permit were checked (so forged tasks
cannot fill it). A task is only accepted while its deadline lies in ``(now, now + max_ahead]``; a
replay after the deadline is refused as expired anyway, so the guard only has to remember each pair
until its deadline passes. That bounds memory by the task rate times ``max_ahead``, and ``capacity``
caps it outright (a full guard refuses new tasks as busy rather than forgetting pairs early).

The tasks of one round share a deadline, so pairs are kept in one bucket per deadline, and a task's
admission compares the clock with the earliest deadline once; forgetting pops a whole bucket at a time.
"""

from __future__ import annotations

import heapq
import math

from kubetensor.miner.errors import MinerBusyError, ReplayedTaskError


class ReplayGuard:
    """The (validator hotkey, nonce) pairs whose deadline has not passed yet."""

    def __init__(self, *, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._seen: set[tuple[str, int]] = set()
        # deadline -> the pairs that expire with it, and a heap of those deadlines (the earliest first)
        self._buckets: dict[int, list[tuple[str, int]]] = {}
        self._deadlines: list[int] = []
        self._earliest: float = math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, validator_hotkey: str, *, nonce: int, deadline_unix_ms: int, now_unix_ms: int) -> None:
        """Record the pair; ReplayedTaskError if it is remembered already."""
        if self._earliest < now_unix_ms:
            self._forget_until(now_unix_ms)
        key = (validator_hotkey, nonce)
        if key in self._seen:
            raise ReplayedTaskError(validator_hotkey, nonce=nonce)
        if len(self._seen) >= self._capacity:
            raise MinerBusyError(f"the replay guard holds {self._capacity} unexpired tasks")
        self._seen.add(key)
        bucket = self._buckets.get(deadline_unix_ms)
        if bucket is not None:
            bucket.append(key)
            return
        self._buckets[deadline_unix_ms] = [key]
        heapq.heappush(self._deadlines, deadline_unix_ms)
        self._earliest = self._deadlines[0]

    def _forget_until(self, now_unix_ms: int) -> None:
        deadlines, seen = self._deadlines, self._seen
        while deadlines and deadlines[0] < now_unix_ms:
            for key in self._buckets.pop(heapq.heappop(deadlines)):
                seen.discard(key)
        self._earliest = deadlines[0] if deadlines else math.inf
