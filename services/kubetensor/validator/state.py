"""``StateFile``: the validator's moving averages and counters on disk, so a restart resumes them.

Called by ``ValidatorService`` after every round (through ``StateWriter``, on a thread of its own) and by
``__main__`` at start (``load``).

**Two slots.** The state of ``<path>`` is kept in two files, ``<path>.0`` and ``<path>.1``, written in
turn: each save overwrites the slot that does not hold the newest state, in place, and ``fdatasync``s
it. A crash at any instant leaves the other slot whole, so ``load`` finds either the previous round's
state or this one's, never half of one. Each slot is JSON with the sha256 of the rest of its document,
padded with spaces to a multiple of 4 KiB (so its size, and so its metadata, rarely changes)::

    {"averages": [{"count": 40, "hotkey": "<hex>", "uid": 3, "value": 0.93}],
     "format": "kubetensor.validator-state/v1", "hotkey": "<hex>", "netuid": 1, "round": 42,
     "weights_nonce": 1767..., "weights_set": 3, "sha256": "<hex of the document before this key>"}

``load`` takes the slot with the highest round among those whose digest matches; a slot whose digest
does not (a save cut short by a crash) is skipped with a warning. One save costs a write and one
``fdatasync``; replacing a file atomically (write a sibling, fsync it, rename, fsync the folder) cost
about twice the CPU, most of it in the kernel, and the validator saves after every round. A ``<path>``
written that way by an earlier version is read when no slot is, and removed once a slot holds a state.

A state written by another hotkey or for another subnet is refused (``StateMismatchError``) rather
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
import hashlib
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetensor.validator.errors import StateMismatchError
from kubetensor.validator.scoring import Average, MovingAverages

_log = logging.getLogger(__name__)

FORMAT = "kubetensor.validator-state/v1"
_OPEN = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
_BLOCK = 4096
"""Slots are padded to a multiple of this many bytes."""
_DIGEST_KEY = "sha256"
_datasync = getattr(os, "fdatasync", os.fsync)
"""``fdatasync`` where the platform has it (Linux), else ``fsync`` (macOS)."""
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
    """One validator's state, in two slot files (see the module doc)."""

    def __init__(self, path: Path, *, netuid: int, hotkey: str) -> None:
        self.path = path
        self.slots = (path.with_name(path.name + ".0"), path.with_name(path.name + ".1"))
        self._netuid = netuid
        self._hotkey = hotkey
        self._next: int | None = None
        """The slot the next save writes: the one that does not hold the newest state (None: not
        known yet; the first save looks)."""
        self._sizes: dict[int, int] = {}
        """Each slot's size as this object last wrote it (its file is resized only when that changes)."""

    def load(self, *, alpha: float) -> ValidatorState:
        """The newest saved state, or a fresh one when there is none."""
        found = [
            (_number(self.slots[index], document, "round"), index, document)
            for index, document in self._whole_slots()
        ]
        if found:
            _, newest, document = max(found)
            self._next = 1 - newest
            return self._state(self.slots[newest], document, alpha=alpha)
        self._next = 0
        try:
            raw: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ValidatorState(averages=MovingAverages.empty(alpha))
        except ValueError as error:
            raise StateMismatchError(f"{self.path}: not a validator state file ({error})") from None
        return self._state(self.path, raw, alpha=alpha)

    def _whole_slots(self) -> list[tuple[int, dict[str, Any]]]:
        """(index, document) of each slot that exists and whose digest matches (``_verified``)."""
        whole = []
        for index, slot in enumerate(self.slots):
            try:
                text = slot.read_bytes()
            except FileNotFoundError:
                continue
            document = self._verified(slot, text)
            if document is not None:
                whole.append((index, document))
        return whole

    def _verified(self, slot: Path, text: bytes) -> dict[str, Any] | None:
        """The slot's document when its digest matches (without the digest), else None, with a warning."""
        try:
            raw: Any = json.loads(text)
            digest = raw.pop(_DIGEST_KEY)
        except (ValueError, AttributeError, KeyError, TypeError):
            raw, digest = None, None
        if isinstance(raw, dict) and digest == hashlib.sha256(json.dumps(raw).encode()).hexdigest():
            return raw
        _log.warning("%s: not a whole state (a save cut short?): using the other slot", slot)
        return None

    def _state(self, where: Path, raw: Any, *, alpha: float) -> ValidatorState:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise StateMismatchError(f"{where}: not a {FORMAT} file")
        if raw.get("netuid") != self._netuid or raw.get("hotkey") != self._hotkey:
            owner = f"hotkey {str(raw.get('hotkey'))[:16]}... on subnet {raw.get('netuid')}"
            raise StateMismatchError(
                f"{where} belongs to {owner}, not {self._hotkey[:16]}... on subnet {self._netuid}"
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
            raise StateMismatchError(f"{where}: malformed state ({error!r})") from None

    def save(self, state: ValidatorState) -> None:
        """Write ``state`` durably into the slot that does not hold the newest state (see the module doc)."""
        # Keys in sorted order, so the document reads as json.dumps(..., sort_keys=True) writes it,
        # without the encoder sorting every entry again (it holds the GIL meanwhile, and the save runs
        # on a thread beside the event loop).
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
        # json.dumps, not json.dump: dump streams through the pure-Python encoder, 4x slower. The digest
        # covers these bytes, which ``load`` gets back by dumping the document it parsed.
        body = json.dumps(document).encode()
        data = b'%s, "%s": "%s"}\n' % (
            body[:-1],
            _DIGEST_KEY.encode(),
            hashlib.sha256(body).hexdigest().encode(),
        )
        data += b" " * (-len(data) % _BLOCK)
        index = self._next if self._next is not None else self._older_slot()
        slot = self.slots[index]
        # os-level calls, not a file object: the save runs every round, and this is all it needs.
        created = False
        try:
            fd = os.open(slot, _OPEN)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(slot, _OPEN | os.O_CREAT, 0o666)
            created = True
            self._sizes.pop(index, None)
        try:
            view, offset = memoryview(data), 0
            while offset < len(data):
                offset += os.pwrite(fd, view[offset:], offset)
            if self._sizes.get(index) != len(data):
                os.ftruncate(fd, len(data))
                self._sizes[index] = len(data)
            _datasync(fd)
        finally:
            os.close(fd)
        if created:
            # A new slot's name is durable once its folder is.
            _fsync_folder(self.path.parent)
            if self.path.exists():
                # An earlier version's file: a slot holds a newer state now.
                self.path.unlink()
                _fsync_folder(self.path.parent)
        self._next = 1 - index

    def _older_slot(self) -> int:
        """The slot a save may overwrite: not the one whose state is whole and newest."""
        rounds = [
            (document["round"], index)
            for index, document in self._whole_slots()
            if isinstance(document.get("round"), int)
        ]
        return 1 - max(rounds)[1] if rounds else 0


def _fsync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _number(where: Path, document: dict[str, Any], key: str) -> int:
    value = document.get(key)
    if not isinstance(value, int):
        raise StateMismatchError(f"{where}: malformed state ({key}: {value!r})")
    return value


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
