"""``GenerationDeadlines``: stops each generation at its task's deadline, with one loop timer for all.

Used by ``MinerService`` around every task's generation. ``asyncio.timeout`` builds an object and arms
and cancels a loop timer per task; here a running generation is one dict entry, and a single timer is
armed for the earliest deadline among them. It is re-armed only when a generation with an earlier
deadline starts or when it fires; a generation that ends leaves the timer alone (a firing with nothing
due re-arms for what is left, or for nothing). At most ``max_concurrency`` generations run at once, so a
firing looks at few entries.

A generation whose deadline passed is cancelled as ``asyncio.timeout`` does it (``Task.cancel``), and
``finish`` tells the generation that this cancellation was its deadline and nobody else's (``uncancel``
brings the task's count back to what it was at ``watch``), so a cancellation from elsewhere (a stopping
subscriber) stays a cancellation. One event loop's use at a time; not thread-safe.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any


class GenerationDeadlines:
    """The running generations' tasks and the loop time each must end by."""

    def __init__(self) -> None:
        # task -> (loop time of its deadline, its cancel count when watched)
        self._running: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # task -> its cancel count when watched, for the tasks cancelled here and not finished yet
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._running)

    def watch(self, task: asyncio.Task[Any], *, within_s: float) -> None:
        """Cancel ``task`` once ``within_s`` seconds (0 or less: at the next loop turn) have passed,
        unless ``finish`` comes first."""
        loop = task.get_loop()
        if loop is not self._loop:
            # A timer armed on another (finished) loop would never fire here.
            self._reset(loop)
        when = loop.time() + within_s
        self._running[task] = (when, task.cancelling())
        if when < self._timer_at:
            self._arm(loop, when)

    def watch_current(self, *, within_s: float) -> asyncio.Task[Any]:
        """``watch`` the task that calls this; return it.

        The task is found on the loop of the last ``watch`` when it runs there (``asyncio.current_task``
        of no loop asks for the running loop, a system call each time: asyncio checks the process id);
        on another loop, or at the first call, it is asked for once.
        """
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("GenerationDeadlines.watch_current: not called from a task")
        self.watch(task, within_s=within_s)
        return task

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True when it was cancelled here for its deadline and by nobody else.

        Call it once the generation ended, however it ended (a second call returns False).
        """
        if self._running.pop(task, None) is not None:
            return False
        cancelling = self._expired.pop(task, None)
        if cancelling is None:
            return False
        return task.uncancel() <= cancelling

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)
        self._timer_at = when

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop, self._timer, self._timer_at = loop, None, math.inf
        self._running.clear()
        self._expired.clear()

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        # The loop runs a timer up to its clock resolution early: everything armed for now is due.
        due = max(self._timer_at, loop.time())
        self._timer, self._timer_at = None, math.inf
        earliest = math.inf
        for task, (when, cancelling) in list(self._running.items()):
            if when <= due:
                del self._running[task]
                self._expired[task] = cancelling
                task.cancel()
            elif when < earliest:
                earliest = when
        if earliest < math.inf:
            self._arm(loop, earliest)
