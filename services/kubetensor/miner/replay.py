"""``ReplayGuard``: refuses a (validator, nonce) pair seen before, with memory bounded by task deadlines.

Called by ``MinerService`` after a task's signature, deadline and permit were checked (so forged tasks
cannot fill it). A task is only accepted while its deadline lies in ``(now, now + max_ahead]``; a
replay after the deadline is refused as expired anyway, so the guard only has to remember each pair
until its deadline passes. Each pair is kept with its deadline, and a pair whose deadline passed counts
as forgotten at once; the memory it holds is given back by a sweep at most every ``sweep_ms`` (the
pairs are kept in one bucket per deadline, as the tasks of a round share one, and a sweep drops the
buckets whose deadline passed), so a task's admission costs a lookup and an insertion. That bounds
memory by the task rate times ``max_ahead`` plus ``sweep_ms``, and ``capacity`` caps it outright (a
full guard sweeps, then refuses new tasks as busy rather than forgetting pairs early).
"""

from __future__ import annotations

import heapq

from kubetensor.miner.errors import MinerBusyError, ReplayedTaskError


class ReplayGuard:
    """The (validator hotkey, nonce) pairs whose deadline has not passed yet."""

    def __init__(self, *, capacity: int = 1_000_000, sweep_ms: int = 1_000) -> None:
        self._capacity = capacity
        self._sweep_ms = sweep_ms
        # pair -> its deadline; pairs whose deadline passed stay until the next sweep, as forgotten
        self._seen: dict[tuple[str, int], int] = {}
        # deadline -> the pairs admitted with it, and a heap of those deadlines (the earliest first)
        self._buckets: dict[int, list[tuple[str, int]]] = {}
        self._deadlines: list[int] = []
        self._now = 0
        self._next_sweep = 0

    def __len__(self) -> int:
        """The pairs remembered as of the last admission's clock."""
        now = self._now
        return sum(1 for deadline in self._seen.values() if deadline >= now)

    def admit(self, validator_hotkey: str, *, nonce: int, deadline_unix_ms: int, now_unix_ms: int) -> None:
        """Record the pair; ReplayedTaskError if it is remembered already."""
        self._now = now_unix_ms
        key = (validator_hotkey, nonce)
        seen = self._seen
        remembered = seen.get(key)
        # A pair is forgotten once its deadline passed (deadline < now), swept or not.
        if remembered is not None and remembered >= now_unix_ms:
            raise ReplayedTaskError(validator_hotkey, nonce=nonce)
        if now_unix_ms >= self._next_sweep or len(seen) >= self._capacity:
            self._sweep(now_unix_ms)
            if len(seen) >= self._capacity:
                raise MinerBusyError(f"the replay guard holds {self._capacity} unexpired tasks")
        seen[key] = deadline_unix_ms
        bucket = self._buckets.get(deadline_unix_ms)
        if bucket is not None:
            bucket.append(key)
            return
        self._buckets[deadline_unix_ms] = [key]
        heapq.heappush(self._deadlines, deadline_unix_ms)

    def _sweep(self, now_unix_ms: int) -> None:
        self._next_sweep = now_unix_ms + self._sweep_ms
        deadlines, seen = self._deadlines, self._seen
        pop = seen.pop
        while deadlines and deadlines[0] < now_unix_ms:
            for key in self._buckets.pop(heapq.heappop(deadlines)):
                # One lookup per pair; the pair may have come back since with a later deadline (it goes
                # back in), or have gone with an earlier bucket of this sweep.
                deadline = pop(key, None)
                if deadline is not None and deadline >= now_unix_ms:
                    seen[key] = deadline
