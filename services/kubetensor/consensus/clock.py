"""Block numbers for the consensus service: ``block = floor(seconds since genesis / block_seconds)``.

``__main__`` composes a ``WallClock`` on the subnet's persisted genesis time; tests and simulations
compose a ``ManualClock`` they advance by hand. ``ConsensusService`` reads ``block()`` for every
registration, weight set and epoch, and waits with ``wait_for_block`` for the next epoch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class BlockClock(Protocol):
    """The current block, and a way to wait for a later one."""

    def block(self) -> int:
        """The current block; never less than a block returned before."""
        ...

    async def wait_for_block(self, block: int) -> None:
        """Return once ``block()`` is at least ``block``."""
        ...


class WallClock:
    """Blocks from the wall clock: ``(now - genesis) // block_ns``, held monotonic by a floor.

    The floor (the highest block the persisted state mentions, then every block returned) keeps the
    block from going backwards when the wall clock is stepped back, so block numbers stay ordered
    across restarts.
    """

    def __init__(
        self, *, genesis_ns: int, block_ns: int, floor: int = 0, time_ns: Callable[[], int] = time.time_ns
    ) -> None:
        if block_ns <= 0:
            raise ValueError(f"block_ns: expected a positive number of nanoseconds, got {block_ns}")
        self._genesis_ns = genesis_ns
        self._block_ns = block_ns
        self._floor = floor
        self._time_ns = time_ns

    def block(self) -> int:
        current = max(self._floor, (self._time_ns() - self._genesis_ns) // self._block_ns)
        self._floor = current
        return current

    async def wait_for_block(self, block: int) -> None:
        while self.block() < block:
            remaining_ns = self._genesis_ns + block * self._block_ns - self._time_ns()
            # A clock stepped back can leave the target far away; re-read at least once a block.
            await asyncio.sleep(min(max(remaining_ns, 0), self._block_ns) / 1e9)


class ManualClock:
    """A clock that moves only when told to (``advance``); for tests and simulations."""

    def __init__(self, block: int = 0) -> None:
        self._block = block
        self._moved = asyncio.Event()

    def block(self) -> int:
        return self._block

    def advance(self, blocks: int = 1) -> int:
        """Move ``blocks`` blocks forward; wake every waiter; return the new block."""
        if blocks < 0:
            raise ValueError(f"blocks: a clock only moves forward, got {blocks}")
        self._block += blocks
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        return self._block

    async def wait_for_block(self, block: int) -> None:
        while self._block < block:
            await self._moved.wait()
