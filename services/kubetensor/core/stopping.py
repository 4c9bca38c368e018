"""Stopping work reliably: ``cancel_until_done``, ``run_until_stopped``, ``wait_for_threads`` and
``wait_out``.

Called by the devnet: ``commands.run_async`` stops its start-and-watch task on a signal (and waits out
a model build it stopped), and ``network`` waits for its start threads before a failed or cancelled
start gives up.

One cancellation is not enough to stop a task on Python 3.11: ``asyncio.wait_for``, which nats.py
and others use throughout, returns the inner result instead of raising when the inner future
finishes in the same loop step as the cancellation (fixed in 3.12). A devnet whose one
cancellation was swallowed that way kept watching epochs after SIGTERM, forever. So a stop
cancels again every ``recancel_seconds`` until the task has ended. The price: cleanup that the
task awaits after a cancellation is itself cancelled if it takes longer than that, so this is for
work whose cleanup may be cut short (the services stop their tasks with one cancellation and let
their cleanup finish).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

_log = logging.getLogger(__name__)

T = TypeVar("T")

RECANCEL_SECONDS = 1.0


async def run_until_stopped(
    work: Awaitable[T], stop: asyncio.Future[str], *, recancel_seconds: float = RECANCEL_SECONDS
) -> tuple[T | None, str | None]:
    """Run ``work`` until it ends or ``stop`` resolves (to a reason, e.g. the signal's name).

    Returns ``(result, None)`` when the work ended by itself (its exception, if any, propagates) and
    ``(None, reason)`` when it was stopped: then the work was cancelled, as often as it took, and has
    ended. An error the work raised while it was being cancelled is logged, not raised: the caller
    asked it to stop. If this coroutine is itself cancelled, the work is cancelled the same way.
    """
    task = asyncio.ensure_future(work)
    either: set[asyncio.Future[Any]] = {task, stop}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            await cancel_until_done(task, recancel_seconds=recancel_seconds)
    if stop.done() and (task.cancelled() or not _ended_by_itself(task)):
        return None, stop.result()
    return task.result(), None


def _ended_by_itself(task: asyncio.Future[T]) -> bool:
    """False when ``task`` ended with an error during a stop (logged here), true when it returned."""
    error = task.exception()
    if error is None:
        return True
    _log.warning("while stopping: %s: %s", type(error).__name__, error)
    return False


async def cancel_until_done(task: asyncio.Future[T], *, recancel_seconds: float = RECANCEL_SECONDS) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``recancel_seconds``.

    Cancelling the caller does not cut this short: the task is still ended first, then the
    caller's cancellation is raised.
    """
    await wait_out([task], each=task.cancel, seconds=recancel_seconds)


async def wait_out(
    futures: Collection[asyncio.Future[Any]],
    *,
    each: Callable[[], object] | None = None,
    seconds: float | None = None,
) -> None:
    """Wait until every one of ``futures`` is done, calling ``each`` (when given) first and then every
    ``seconds``. Cancelling the caller does not cut the wait short: the cancellation is raised once
    they are all done."""
    interrupted = False
    while not all(future.done() for future in futures):
        if each is not None:
            each()
        try:
            await asyncio.wait(futures, timeout=seconds)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError


async def wait_for_threads(
    starts: Sequence[Callable[[], object]], *, kill: Callable[[], None], poll_seconds: float = 0.1
) -> None:
    """Run blocking ``starts`` in threads and wait for all of them.

    On the first failure, or when this coroutine is cancelled, ``kill`` is called every
    ``poll_seconds`` until every thread has returned (killing the processes they wait for makes
    them return), so nothing starts after the caller gave up; then the failure (or the
    cancellation) is raised. Unlike ``asyncio.gather``, a cancellation does not mark the threads'
    futures done while the threads still run.
    """
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(None, start) for start in starts]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        for future in futures:
            error = future.exception() if future.done() else None
            if error is not None:
                raise error
    except BaseException:
        try:
            await wait_out(futures, each=kill, seconds=poll_seconds)
        finally:
            for future in futures:
                if not future.cancelled():
                    future.exception()  # retrieved: the first error is the one raised
        raise
