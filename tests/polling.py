"""Bounded polling for tests: ``eventually`` waits for a condition and names what it waited for.

Used through ``tests.consensus_support`` and ``tests.network_support`` (which keep their own defaults),
never with a wall-clock assertion: the bound only turns a hang into a failure that says what was missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    what: str,
    seconds: float = 10.0,
    interval: float = 0.01,
) -> None:
    """Poll ``check`` (sync or async) every ``interval`` seconds until it is true; fail naming ``what``
    after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
