"""kubetensor.core.stopping: a stop ends work even when a cancellation is swallowed, and a cancelled
or failed start waits for its threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kubetensor.core.stopping import cancel_until_done, run_until_stopped, wait_for_threads


async def test_cancel_until_done_ends_a_task_whose_first_cancellation_wait_for_swallowed() -> None:
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[None] = loop.create_future()
    went_on: list[bool] = []

    async def work() -> None:
        await asyncio.wait_for(inner, timeout=60)
        went_on.append(True)  # reached only when the cancellation was swallowed
        await asyncio.sleep(3600)

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    # The inner future finishes in the same loop step as the cancellation: Python 3.11's wait_for
    # then returns instead of raising (what nats.py's wait_for calls did to the devnet's one cancel).
    inner.set_result(None)
    stopping = asyncio.ensure_future(cancel_until_done(task, recancel_seconds=0.05))
    await asyncio.wait({stopping}, timeout=10)
    assert stopping.done(), "the task outlived its cancellations"
    assert went_on == [True]
    assert task.cancelled()


async def test_run_until_stopped_cancels_work_that_ignores_cancellations_until_it_ends() -> None:
    ignored: list[int] = []

    async def stubborn() -> str:
        while len(ignored) < 3:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                ignored.append(1)
        await asyncio.sleep(3600)
        return "never"

    stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, stop.set_result, "SIGTERM")
    stopping = asyncio.ensure_future(run_until_stopped(stubborn(), stop, recancel_seconds=0.02))
    await asyncio.wait({stopping}, timeout=10)
    assert stopping.done(), "the work outlived its cancellations"
    assert stopping.result() == (None, "SIGTERM")
    assert len(ignored) == 3


async def test_run_until_stopped_returns_the_result_or_raises_the_error_of_work_that_ends() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> int:
        raise ValueError("the chain sidecar exited")

    loop = asyncio.get_running_loop()
    assert await run_until_stopped(answer(), loop.create_future()) == (42, None)
    with pytest.raises(ValueError, match="sidecar exited"):
        await run_until_stopped(fail(), loop.create_future())


async def test_run_until_stopped_logs_an_error_raised_while_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("could not close the NATS connection") from None

    stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop.set_result("SIGINT")
    assert await run_until_stopped(fails_when_cancelled(), stop) == (None, "SIGINT")
    assert "could not close the NATS connection" in caplog.text


async def test_wait_for_threads_cancelled_kills_and_waits_until_every_thread_returned() -> None:
    killed = threading.Event()
    returned: list[str] = []

    def start(name: str) -> None:
        killed.wait(30)  # a thread waiting for its process to get ready
        time.sleep(0.05)
        returned.append(name)

    task = asyncio.create_task(
        wait_for_threads([lambda: start("a"), lambda: start("b")], kill=killed.set, poll_seconds=0.01)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(returned) == ["a", "b"]


async def test_wait_for_threads_a_failure_kills_the_others_and_raises_it_after_they_returned() -> None:
    killed = threading.Event()
    returned: list[str] = []

    def hangs() -> None:
        killed.wait(30)
        returned.append("hangs")

    def fails() -> None:
        raise OSError("could not exec nats-server")

    with pytest.raises(OSError, match="could not exec nats-server"):
        await wait_for_threads([hangs, fails], kill=killed.set, poll_seconds=0.01)
    assert returned == ["hangs"]


async def test_wait_for_threads_cancelled_again_while_killing_still_waits_for_the_threads() -> None:
    release = threading.Event()
    kills: list[int] = []
    returned: list[bool] = []

    def start() -> None:
        release.wait(30)
        returned.append(True)

    def kill() -> None:
        kills.append(1)
        if len(kills) >= 5:
            release.set()

    task = asyncio.create_task(wait_for_threads([start], kill=kill, poll_seconds=0.01))
    await asyncio.sleep(0.02)
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0.015)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert returned == [True]
