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

``ReplayJournal`` keeps the guard across a restart of the miner process (``KT_MINER_STATE_DIR``; the
operator mounts an emptyDir there, which outlives a container restart): every admitted pair is
appended to a file before ``admit`` returns, so before the task is worked on or answered, and a new
process loads the pairs whose deadline has not passed. Without it, a miner restarted within a task's
deadline window (``max_ahead``, 60 s by default) would answer a replayed task once more.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from kubetensor.miner.errors import MinerBusyError, ReplayedTaskError, StateDirError

_log = logging.getLogger(__name__)


class ReplayGuard:
    """The (validator hotkey, nonce) pairs whose deadline has not passed yet."""

    def __init__(self, *, capacity: int = 1_000_000, sweep_ms: int = 1_000) -> None:
        self._capacity = capacity
        self._journal: ReplayJournal | None = None
        """Set by ``restore``: from then on every admitted pair is appended to it."""
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
        if self._journal is not None:
            self._journal.append(validator_hotkey, nonce, deadline_unix_ms)
        self._remember(key, deadline_unix_ms)

    def restore(self, journal: ReplayJournal, *, now_unix_ms: int) -> int:
        """Remember the journal's unexpired pairs, compact it and append to it from now on; the count."""
        pairs = [(key, deadline) for key, deadline in journal.load() if deadline >= now_unix_ms]
        for key, deadline in pairs:
            if self._seen.get(key, -1) < deadline:
                self._remember(key, deadline)
        self._now = now_unix_ms
        journal.rewrite(self._unexpired(now_unix_ms))
        self._journal = journal
        return len(pairs)

    def _unexpired(self, now_unix_ms: int) -> list[tuple[tuple[str, int], int]]:
        return [(key, deadline) for key, deadline in self._seen.items() if deadline >= now_unix_ms]

    def _remember(self, key: tuple[str, int], deadline_unix_ms: int) -> None:
        self._seen[key] = deadline_unix_ms
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
        journal = self._journal
        if journal is not None and journal.size > journal.compact_bytes:
            journal.rewrite(self._unexpired(now_unix_ms))


class ReplayJournal:
    """The guard's pairs in a file, one ``<deadline ms> <nonce> <validator hotkey>`` line each.

    Appends go to the operating system at once (a write, no fsync): they survive the process, not the
    machine, which is what a restarted container needs. Rewritten (to a temporary file, then renamed)
    when loaded and whenever a sweep finds it over ``compact_bytes``, with only the unexpired pairs.
    """

    def __init__(self, path: Path, *, compact_bytes: int = 4 << 20) -> None:
        self.path = path
        self.compact_bytes = compact_bytes
        self.size = 0
        self._fd: int | None = None

    def load(self) -> list[tuple[tuple[str, int], int]]:
        """Every well-formed pair in the file (none if there is no file); a bad line is logged and skipped.

        A crash can cut the last line short; any line that does not parse is named in a warning.
        """
        try:
            text = self.path.read_bytes().decode("ascii", errors="replace")
        except FileNotFoundError:
            return []
        pairs: list[tuple[tuple[str, int], int]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            parts = line.split(" ")
            if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and parts[2]:
                pairs.append(((parts[2], int(parts[1])), int(parts[0])))
            elif line:
                _log.warning(
                    "%s:%d: skipped a malformed replay journal line %r", self.path, number, line[:80]
                )
        return pairs

    def rewrite(self, pairs: Iterable[tuple[tuple[str, int], int]]) -> None:
        """Replace the file with ``pairs`` (atomically) and append to the new file from now on."""
        body = "".join(f"{deadline} {nonce} {hotkey}\n" for (hotkey, nonce), deadline in pairs).encode()
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)
        self.size = len(body)

    def append(self, validator_hotkey: str, nonce: int, deadline_unix_ms: int) -> None:
        """Record one pair; ``MinerBusyError`` if it cannot be written (the task is then not taken)."""
        line = f"{deadline_unix_ms} {nonce} {validator_hotkey}\n".encode()
        if self._fd is None:
            raise MinerBusyError(f"the replay journal {self.path} is not open")
        try:
            os.write(self._fd, line)
        except OSError as error:
            raise MinerBusyError(f"the replay journal {self.path} cannot be written ({error})") from None
        self.size += len(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_guard(state_dir: Path | None, *, hotkey: str, now_unix_ms: int) -> ReplayGuard:
    """A guard journaled in ``state_dir`` (restored from it), or an in-memory one without a folder.

    ``StateDirError`` names the folder when it cannot be created, read or written.
    """
    guard = ReplayGuard()
    if state_dir is None:
        return guard
    journal = ReplayJournal(state_dir / f"replay-{hotkey[:16]}.log")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        restored = guard.restore(journal, now_unix_ms=now_unix_ms)
    except OSError as error:
        raise StateDirError(state_dir, error) from None
    _log.info("replay guard: %d unexpired tasks restored from %s", restored, journal.path)
    return guard
