"""``ReplayGuard``: refuses a (validator, nonce) pair seen before, with memory bounded by task deadlines.

Called by ``MinerService`` after a task's signature, deadline and permit were checked (so forged tasks
cannot fill it). A task is only accepted while its deadline lies in ``(now, now + max_ahead]``; a
replay after the deadline is refused as expired anyway, so the guard only has to remember each pair
until its deadline passes. That bounds memory by the task rate times ``max_ahead``, and ``capacity``
caps it outright (a full guard refuses new tasks as busy rather than forgetting pairs early).
"""

from __future__ import annotations

import heapq

from kubetensor.miner.errors import MinerBusyError, ReplayedTaskError


class ReplayGuard:
    """The (validator hotkey, nonce) pairs whose deadline has not passed yet."""

    def __init__(self, *, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._seen: set[tuple[str, int]] = set()
        self._expiry: list[tuple[int, str, int]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, validator_hotkey: str, *, nonce: int, deadline_unix_ms: int, now_unix_ms: int) -> None:
        """Record the pair; ReplayedTaskError if it is remembered already."""
        self._forget_until(now_unix_ms)
        key = (validator_hotkey, nonce)
        if key in self._seen:
            raise ReplayedTaskError(validator_hotkey, nonce=nonce)
        if len(self._seen) >= self._capacity:
            raise MinerBusyError(f"the replay guard holds {self._capacity} unexpired tasks")
        self._seen.add(key)
        heapq.heappush(self._expiry, (deadline_unix_ms, validator_hotkey, nonce))

    def _forget_until(self, now_unix_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_unix_ms:
            _, hotkey, nonce = heapq.heappop(self._expiry)
            self._seen.discard((hotkey, nonce))
