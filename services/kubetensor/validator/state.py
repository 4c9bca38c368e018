"""``StateFile``: the validator's moving averages and counters on disk, so a restart resumes them.

Called by ``ValidatorService`` after every round (through ``StateWriter``, on a thread of its own) and by
``__main__`` at start (``load``).
The file is JSON, replaced atomically (write a sibling, fsync, rename), so a crash at any instant
leaves either the previous round's state or this one's, never half of one::

    {"format": "kubetensor.validator-state/v1", "netuid": 1, "hotkey": "<hex>", "round": 42,
     "weights_nonce": 1767..., "averages": [{"uid": 3, "hotkey": "<hex>", "value": 0.93, "count": 40}]}

A file written by another hotkey or for another subnet is refused (``StateMismatchError``) rather
than silently mixed in.

``StateWriter`` saves a validator's states off the event loop: one long-lived thread per file (not a
thread pool task per round) takes them in order, and when several rounds' states are waiting it writes
only the newest (a group commit: what it settles is at least as new as each of them). Each ``save`` answers
a future that settles once a state at least that new is on disk. A failed save stops the writer: that
save's future and every later one fail with the same error, so no later round can be reported as if it
were durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetensor.validator.errors import StateMismatchError
from kubetensor.validator.scoring import Average, MovingAverages

FORMAT = "kubetensor.validator-state/v1"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_IDLE_S = 1.0
"""How long a ``StateWriter``'s thread waits for the next state before it ends (the next save starts
another)."""


@dataclass(frozen=True)
class ValidatorState:
    """What survives a restart."""

    averages: MovingAverages
    round: int = 0
    """Rounds completed so far."""
    weights_nonce: int = 0
    """The last nonce used to set weights (the next one must be larger)."""
    weights_set: int = field(default=0)
    """Weight sets accepted so far."""


class StateFile:
    """One validator's state file."""

    def __init__(self, path: Path, *, netuid: int, hotkey: str) -> None:
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._netuid = netuid
        self._hotkey = hotkey

    def load(self, *, alpha: float) -> ValidatorState:
        """The saved state, or a fresh one when the file does not exist."""
        try:
            raw: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ValidatorState(averages=MovingAverages.empty(alpha))
        except ValueError as error:
            raise StateMismatchError(f"{self.path}: not a validator state file ({error})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise StateMismatchError(f"{self.path}: not a {FORMAT} file")
        if raw.get("netuid") != self._netuid or raw.get("hotkey") != self._hotkey:
            owner = f"hotkey {str(raw.get('hotkey'))[:16]}... on subnet {raw.get('netuid')}"
            raise StateMismatchError(
                f"{self.path} belongs to {owner}, not {self._hotkey[:16]}... on subnet {self._netuid}"
            )
        try:
            entries = {
                int(item["uid"]): Average(
                    hotkey=str(item["hotkey"]), value=float(item["value"]), count=int(item["count"])
                )
                for item in raw["averages"]
            }
            return ValidatorState(
                averages=MovingAverages(alpha=alpha, entries=entries),
                round=int(raw["round"]),
                weights_nonce=int(raw["weights_nonce"]),
                weights_set=int(raw.get("weights_set", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StateMismatchError(f"{self.path}: malformed state ({error!r})") from None

    def save(self, state: ValidatorState) -> None:
        """Replace the file with ``state`` atomically and durably."""
        # Keys in sorted order, so the file reads as json.dumps(..., sort_keys=True) writes it, without
        # the encoder sorting every entry again (it holds the GIL meanwhile, and the save runs on a
        # thread beside the event loop).
        document = {
            "averages": [
                {"count": entry.count, "hotkey": entry.hotkey, "uid": uid, "value": entry.value}
                for uid, entry in sorted(state.averages.entries.items())
            ],
            "format": FORMAT,
            "hotkey": self._hotkey,
            "netuid": self._netuid,
            "round": state.round,
            "weights_nonce": state.weights_nonce,
            "weights_set": state.weights_set,
        }
        # json.dumps, not json.dump: dump streams through the pure-Python encoder, 4x slower.
        data = json.dumps(document).encode()
        # os-level calls, not a text file object: the save runs every round, and this is all it needs.
        try:
            fd = os.open(self._partial, _CREATE, 0o666)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._partial, _CREATE, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._partial, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class StateWriter:
    """Saves one validator's states in order on its own thread; see the module doc."""

    def __init__(self, file: StateFile) -> None:
        self.file = file
        self._queue: queue.SimpleQueue[tuple[ValidatorState, asyncio.Future[None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failure: Exception | None = None

    @property
    def failure(self) -> Exception | None:
        """What the failed save raised; None while every save succeeded."""
        return self._failure

    def save(self, state: ValidatorState) -> asyncio.Future[None]:
        """Queue ``state``; the future settles once it (or a newer state) is on disk, or with the error
        that stopped the writer."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._failure is not None:
            future.set_exception(self._failure)
            return future
        with self._lock:
            self._queue.put((state, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="validator-state-writer", daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [item]
            # Every state waiting now is settled by saving the newest of them.
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._failure is None:
                try:
                    self.file.save(batch[-1][0])
                except Exception as error:
                    self._failure = error
            futures = [future for _, future in batch]
            loops = {future.get_loop() for future in futures}
            for loop in loops:
                # RuntimeError: that event loop is closed, nobody is left to tell.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(
                        self._settle, [f for f in futures if f.get_loop() is loop], self._failure
                    )

    @staticmethod
    def _settle(futures: list[asyncio.Future[None]], failure: Exception | None) -> None:
        for future in futures:
            if future.done():
                continue
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)
