"""Helpers shared by the network tests: a real OpenAI-compatible HTTP server on loopback, keys, waits.

``FakeEngine`` is an HTTP/1.1 server (asyncio streams, in its own thread and event loop, so blocking
test code never stalls it) that speaks the two endpoints a miner uses: ``GET /v1/models`` and
``POST /v1/completions`` with ``"stream": true`` (server-sent events ending in ``data: [DONE]``).
Its ``mode`` decides the answers and can change while it runs:

    "answer"   the right answer to an addition prompt "a+b=" (reversed sum), echo otherwise
    "wrong"    always "0"
    "garbage"  a non-numeric string
    "hang"     accept the request, never answer
    "error"    HTTP 500 with an OpenAI error body

It records the ``traceparent`` header of every completion request (``traceparents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future

import nats.aio.client
from kubetensor.core import keys, natslite
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.jobs import Chunk
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.service import MinerService
from kubetensor.miner.subscriber import TaskSubscriber
from kubetensor.models import task
from kubetensor.validator.rounds import OutgoingTask

from tests import polling
from tests.bench.support import NETUID, metagraph

TAO = 10**9


def keypair(seed: int) -> Keypair:
    """A deterministic key pair (seed byte repeated)."""
    return Keypair(bytes([seed]) * 32)


def addition_round(
    miners: Iterable[Keypair], *, netuid: int, nonce: int, deadline_s: float = 5.0
) -> list[OutgoingTask]:
    """One task "47+85=" per miner, nonces ``nonce``, ``nonce + 1``, ..., due in ``deadline_s``."""
    deadline = time.time_ns() // 1_000_000 + round(deadline_s * 1000)
    return [
        OutgoingTask(
            task_id=f"task-{nonce}-{i}",
            netuid=netuid,
            task_type="addition",
            prompt="47+85=",
            max_tokens=6,
            miner_hotkey=miner.hotkey,
            nonce=nonce + i,
            deadline_unix_ms=deadline,
        )
        for i, miner in enumerate(miners)
    ]


def answer_for(prompt: str) -> str:
    left, _, right = prompt.removesuffix("=").partition("+")
    if left.isdigit() and right.isdigit():
        return task.Problem(int(left), int(right)).answer
    return prompt


class FakeEngine:
    """An OpenAI-compatible completions server on 127.0.0.1 (see the module doc)."""

    def __init__(self, *, mode: str = "answer", model: str = "fake-model", delay_s: float = 0.0) -> None:
        self.mode = mode
        self.model = model
        self.delay_s = delay_s
        self.traceparents: list[str] = []
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-engine", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeEngine:
        self._thread.start()
        started: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                # Hanging handlers would keep wait_closed() waiting: cancel every other task first.
                for pending in asyncio.all_tasks():
                    if pending is not asyncio.current_task():
                        pending.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == "/v1/models":
                    await self._json(writer, 200, {"object": "list", "data": [{"id": self.model}]})
                elif method == "POST" and path == "/v1/completions":
                    self.requests += 1
                    if "traceparent" in headers:
                        self.traceparents.append(headers["traceparent"])
                    await self._complete(writer, json.loads(body))
                else:
                    await self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _json(self, writer: asyncio.StreamWriter, status: int, payload: object) -> None:
        await self._send(writer, status, "application/json", json.dumps(payload).encode())

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, content_type: str, data: bytes) -> None:
        head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(data)}\r\n\r\n"
        writer.write(head.encode() + data)
        await writer.drain()

    async def _complete(self, writer: asyncio.StreamWriter, request: dict[str, object]) -> None:
        mode = self.mode
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "error":
            await self._json(writer, 500, {"error": {"message": "the fake engine is told to fail"}})
            return
        prompt = str(request.get("prompt", ""))
        text = {"answer": answer_for(prompt), "wrong": "0", "garbage": "zz!?"}.get(mode, prompt)
        if not request.get("stream"):
            await self._json(writer, 200, {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
            return
        events = [{"choices": [{"index": 0, "text": ch, "finish_reason": None}]} for ch in text]
        events.append({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        events.append({"choices": [], "usage": {"completion_tokens": len(text) + 1}})
        stream = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        await self._send(writer, 200, "text/event-stream", stream.encode())


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]], *, what: str, seconds: float = 30.0
) -> None:
    """``polling.eventually`` with the network tests' longer bound and slower poll (real processes)."""
    await polling.eventually(check, what=what, seconds=seconds, interval=0.05)


class EchoEngine:
    """A miner's engine in this process that answers an addition prompt right, at once."""

    async def stream(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncIterator[Chunk]:
        yield Chunk(text=answer_for(prompt))
        yield Chunk(text="", finish_reason="stop", completion_tokens=2)


async def running_miners(
    client: natslite.LiteClient | nats.aio.client.Client,
    miners: list[Keypair],
    *,
    validator: Keypair,
    registered: Iterable[Keypair],
) -> list[TaskSubscriber]:
    """``miners`` answering tasks on ``client`` with an ``EchoEngine``, in this process, on the bench's
    subnet (``tests.bench.support.NETUID``), where ``validator`` holds a permit and ``registered`` are
    the miners."""
    view = metagraph(validator=validator.hotkey, miners=(m.hotkey for m in registered))

    async def fetch() -> MetagraphView:
        return view

    subscribers = []
    signatures = keys.VerifiedSignatures()
    for miner in miners:
        permits = PermitCache(fetch, netuid=NETUID, refresh_seconds=3600)
        await permits.refresh()
        service = MinerService(
            keypair=miner, netuid=NETUID, engine=EchoEngine(), permits=permits, signatures=signatures
        )
        subscriber = TaskSubscriber(client, service)
        await subscriber.start()
        subscribers.append(subscriber)
    return subscribers
