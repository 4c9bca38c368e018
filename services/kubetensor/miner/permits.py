"""``PermitCache``: which validators hold a validator permit on the miner's subnet, from the metagraph.

Called by ``MinerService`` for every task (``check``), refreshed by its own background task every
``refresh_seconds``. A validator that is not permitted in the cached view triggers one early refresh
(at most every ``miss_refresh_seconds``), so a validator that has just gained its permit at an epoch is
not refused for a whole refresh period, while a stream of tasks from an unpermitted key cannot turn into
a stream of metagraph reads. When the consensus service is down the last view stays in use; before any
view exists, ``check`` raises ``MetagraphUnavailableError`` (and retries at most every
``miss_refresh_seconds``). A permitted validator's permit is trusted until the next refresh, so a permit
lost at an epoch is noticed within ``refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from kubetensor.core.metagraphview import MetagraphView
from kubetensor.miner.errors import MetagraphUnavailableError, NoPermitError

_log = logging.getLogger(__name__)

MetagraphFetch = Callable[[], Awaitable[MetagraphView]]
"""Reads the subnet's current metagraph (raises when the consensus service is unreachable)."""


class PermitCache:
    """A cached view of the metagraph, answering "may this hotkey send tasks here?"."""

    def __init__(
        self,
        fetch: MetagraphFetch,
        *,
        netuid: int,
        refresh_seconds: float = 12.0,
        miss_refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._netuid = netuid
        self._refresh_seconds = refresh_seconds
        self._miss_refresh_seconds = miss_refresh_seconds
        self._clock = clock
        self._view: MetagraphView | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def view(self) -> MetagraphView | None:
        """The last metagraph read (None before the first)."""
        return self._view

    async def refresh(self) -> MetagraphView | None:
        """Read the metagraph now (concurrent callers share one read); keep the old view on failure."""
        started = self._clock()
        async with self._lock:
            if self._fetched_at >= started:
                return self._view  # someone refreshed while we waited for the lock
            try:
                view = await self._fetch()
            except Exception as error:
                _log.warning("reading the metagraph failed (%s); keeping the last view", error)
                # Do not hammer a consensus service that is down: count the attempt as a refresh.
                self._fetched_at = self._clock()
                return self._view
            self._view, self._fetched_at = view, self._clock()
            return view

    async def check(self, hotkey: str) -> None:
        """Return when ``hotkey`` holds a permit; NoPermitError or MetagraphUnavailableError otherwise."""
        age = self._clock() - self._fetched_at
        view = self._view
        permitted = view is not None and view.has_permit(hotkey)
        if permitted and age < self._refresh_seconds:
            # The common case, for every task: a permitted validator and a fresh view.
            return
        # A stale view is read again; a key not permitted (or no view yet) makes it read again too, but
        # no more often than the miss period.
        if permitted or age >= self._miss_refresh_seconds:
            view = await self.refresh()
        if view is None:
            raise MetagraphUnavailableError(
                "validator_hotkey: cannot check the validator's permit, the metagraph is unavailable"
            )
        if not view.has_permit(hotkey):
            raise NoPermitError(hotkey, netuid=self._netuid)

    async def start(self) -> None:
        """Read the metagraph once and keep refreshing it in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="miner-permits")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()
