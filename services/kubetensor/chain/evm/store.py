"""``AnchorStore``: the evm backend's record of which settlements are anchored, in a small SQLite file.

Written and read by ``anchorer`` only (and by tests and operators who open the file to see progress).
It is a record of progress, not a source of truth: the ledger holds the settlements and the contract
holds the anchors. Losing the file costs nothing but time: the anchorer then walks the ledger from
block 0 again and finds each settlement already anchored (``SettlementsContract.anchor`` reads the
contract before it sends anything). So it uses WAL with ``synchronous=NORMAL`` (a power loss can undo
the last few updates, never corrupt the file).

Tables::

    meta     key/value: genesis_hash (the ledger this file follows), scanned_height (every settlement
             up to this ledger block has a row), chain_id and contract (where anchors go)
    anchors  one row per ledger settlement, keyed (netuid, epoch): its ledger block and position,
             settlement hash, credits root and leaf count, and its state:
               pending   not anchored yet (or last attempt failed: attempts, last_error say why)
               anchored  the contract holds it (transaction_hash, evm_block; transaction_hash is
                         NULL when the contract already held it and nothing had to be sent)
               conflict  the contract holds a different anchor for (netuid, epoch); not retried
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetensor.chain.errors import EvmSetupError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchors (
    netuid           INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    ledger_block     INTEGER NOT NULL,
    position         INTEGER NOT NULL,
    settlement_hash  TEXT NOT NULL,
    credits_root     TEXT NOT NULL,
    leaf_count       INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'anchored', 'conflict')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    transaction_hash TEXT,
    evm_block        INTEGER,
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (netuid, epoch)
);
CREATE INDEX IF NOT EXISTS anchors_pending ON anchors (state, ledger_block, position);
"""


class AnchorState(enum.StrEnum):
    PENDING = "pending"
    ANCHORED = "anchored"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class AnchorRecord:
    """One ledger settlement and how far its anchoring got."""

    netuid: int
    epoch: int
    ledger_block: int
    position: int
    settlement_hash: str
    credits_root: str
    """Hex of the 32-byte Merkle root."""
    leaf_count: int
    state: AnchorState
    attempts: int = 0
    """Failed attempts so far (the successful one is not counted)."""
    last_error: str | None = None
    transaction_hash: str | None = None
    evm_block: int | None = None


_COLUMNS = (
    "netuid, epoch, ledger_block, position, settlement_hash, credits_root, leaf_count, state, attempts,"
    " last_error, transaction_hash, evm_block"
)


def _record(row: tuple[object, ...]) -> AnchorRecord:
    netuid, epoch, block, position, settlement_hash, root, leaves, state, attempts, error, tx, evm = row
    return AnchorRecord(
        netuid=int(str(netuid)),
        epoch=int(str(epoch)),
        ledger_block=int(str(block)),
        position=int(str(position)),
        settlement_hash=str(settlement_hash),
        credits_root=str(root),
        leaf_count=int(str(leaves)),
        state=AnchorState(str(state)),
        attempts=int(str(attempts)),
        last_error=None if error is None else str(error),
        transaction_hash=None if tx is None else str(tx),
        evm_block=None if evm is None else int(str(evm)),
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AnchorStore:
    """The anchor-state file of one ledger. Thread-safe; every method is one short transaction."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, genesis_hash: str) -> AnchorStore:
        """Open (creating if needed) the store at ``path`` for the ledger whose genesis is ``genesis_hash``.

        EvmSetupError if the file follows another ledger (its anchors would not be this ledger's).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('genesis_hash', ?)", (genesis_hash,))
            elif row[0] != genesis_hash:
                raise EvmSetupError(
                    f"{path}: follows the ledger with genesis {str(row[0])[:16]}..., "
                    f"this ledger's genesis is {genesis_hash[:16]}... (use another evm_state_path)"
                )
        except BaseException:
            db.close()
            raise
        return cls(path, db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- following the ledger -----------------------------------------------------------------------------
    def scanned_height(self) -> int:
        """The ledger block up to which every settlement has a row (-1: none scanned)."""
        with self._lock:
            value = self._meta("scanned_height")
        return -1 if value is None else int(value)

    def record_block(self, height: int, records: Sequence[AnchorRecord]) -> None:
        """Add a pending row per settlement of ledger block ``height`` and move ``scanned_height`` to it.

        A row already present (a block scanned again after a crash) is kept as it is.
        """
        now = _now_ms()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    self._db.execute(
                        "INSERT INTO anchors (netuid, epoch, ledger_block, position, settlement_hash,"
                        " credits_root, leaf_count, state, updated_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)"
                        " ON CONFLICT (netuid, epoch) DO NOTHING",
                        (
                            r.netuid,
                            r.epoch,
                            r.ledger_block,
                            r.position,
                            r.settlement_hash,
                            r.credits_root,
                            r.leaf_count,
                            now,
                        ),
                    )
                self._set_meta("scanned_height", str(height))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- where anchors go ---------------------------------------------------------------------------------
    def contract(self, chain_id: int) -> str | None:
        """The contract address recorded for ``chain_id`` (None: none yet)."""
        with self._lock:
            if self._meta("chain_id") != str(chain_id):
                return None
            return self._meta("contract")

    def bind_contract(self, *, chain_id: int, address: str) -> bool:
        """Record that anchors go to ``address`` on ``chain_id``.

        If that is not where they went before, every anchored or conflicting row becomes pending again
        (the new contract holds none of them). Returns whether anything changed.
        """
        with self._lock:
            if self._meta("chain_id") == str(chain_id) and self._meta("contract") == address:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._set_meta("chain_id", str(chain_id))
                self._set_meta("contract", address)
                self._db.execute(
                    "UPDATE anchors SET state = 'pending', attempts = 0, last_error = NULL,"
                    " transaction_hash = NULL, evm_block = NULL, updated_ms = ? WHERE state != 'pending'",
                    (_now_ms(),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    # -- progress -----------------------------------------------------------------------------------------
    def pending(self, *, limit: int = 64) -> list[AnchorRecord]:
        """The oldest pending rows, in ledger order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM anchors WHERE state = 'pending'"
                " ORDER BY ledger_block, position LIMIT ?",
                (limit,),
            ).fetchall()
        return [_record(row) for row in rows]

    def get(self, netuid: int, epoch: int) -> AnchorRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM anchors WHERE netuid = ? AND epoch = ?", (netuid, epoch)
            ).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[AnchorRecord]:
        """Every row, in ledger order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM anchors ORDER BY ledger_block, position"
            ).fetchall()
        return [_record(row) for row in rows]

    def mark_anchored(self, *, netuid: int, epoch: int, transaction_hash: str | None, evm_block: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE anchors SET state = 'anchored', last_error = NULL, transaction_hash = ?,"
                " evm_block = ?, updated_ms = ? WHERE netuid = ? AND epoch = ?",
                (transaction_hash, evm_block, _now_ms(), netuid, epoch),
            )

    def mark_conflict(self, *, netuid: int, epoch: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE anchors SET state = 'conflict', last_error = ?, updated_ms = ?"
                " WHERE netuid = ? AND epoch = ?",
                (error, _now_ms(), netuid, epoch),
            )

    def mark_failed_attempt(self, *, netuid: int, epoch: int, error: str) -> None:
        """Count a failed attempt; the row stays pending."""
        with self._lock:
            self._db.execute(
                "UPDATE anchors SET attempts = attempts + 1, last_error = ?, updated_ms = ?"
                " WHERE netuid = ? AND epoch = ?",
                (error, _now_ms(), netuid, epoch),
            )
