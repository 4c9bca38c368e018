"""The consensus service's durable state: one SQLite file (WAL, ``synchronous=FULL``).

Opened by ``__main__`` (and by tests that inspect a state file); written only by ``ConsensusService``
and ``settlementlog.LocalSettlementLog``. Holds the subnet's genesis time, the metagraph (neurons with
their weights, bonds, permits and last epoch's outputs; a vacant uid is a row of ``vacancies``, the
block it was freed at, instead of a row of ``neurons``), the last accepted nonce per (hotkey, request
kind), every settlement with its delivery state, and the local settlement log.

Every change is one transaction (``commit``): a registration, deregistration or weight set commits the
new metagraph with the nonce it consumed; an epoch commits its new metagraph (bonds, permits, outputs,
epoch number, last epoch block) together with its settlement. So a process killed at any instant
restarts on a state that is exactly "before" or "after" each change: no epoch is settled twice
(``settlements.epoch`` is the primary key and must follow the last one), none is skipped, and bonds
carry over.

Integers are SQLite INTEGERs (signed 64-bit): stake and emission are kept below 2**63 by the settings
and the ``StakeSource`` contract; nonces (u64 on the wire) are stored as decimal text.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubetensor.consensus.errors import SettlementConflictError, StateMismatchError
from kubetensor.consensus.metagraph import Metagraph, Neuron, WeightRow
from kubetensor.consensus.settlement import Receipt
from kubetensor.core.settlement import Settlement

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS neurons (
    uid                 INTEGER PRIMARY KEY,
    hotkey              TEXT NOT NULL UNIQUE,
    coldkey             TEXT NOT NULL,
    registered_at_block INTEGER NOT NULL,
    last_update_block   INTEGER NOT NULL,
    stake_rao           INTEGER NOT NULL,
    validator_permit    INTEGER NOT NULL,
    weights             TEXT NOT NULL,
    bonds               TEXT NOT NULL,
    incentive           INTEGER NOT NULL,
    dividends           INTEGER NOT NULL,
    validator_trust     INTEGER NOT NULL,
    consensus           INTEGER NOT NULL,
    emission_rao        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vacancies (
    uid            INTEGER PRIMARY KEY,
    freed_at_block INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    hotkey         TEXT NOT NULL,
    domain         TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    PRIMARY KEY (hotkey, domain)
);
CREATE TABLE IF NOT EXISTS settlements (
    epoch         INTEGER PRIMARY KEY,
    hash          TEXT NOT NULL UNIQUE,
    body          BLOB NOT NULL,
    receipt_hash  TEXT,
    receipt_block INTEGER
);
CREATE TABLE IF NOT EXISTS local_settlement_log (
    netuid INTEGER NOT NULL,
    epoch  INTEGER NOT NULL,
    hash   TEXT NOT NULL,
    block  INTEGER NOT NULL,
    body   BLOB NOT NULL,
    PRIMARY KEY (netuid, epoch)
);
"""


@dataclass(frozen=True)
class NonceRecord:
    """The last request accepted from ``hotkey`` for request kind ``domain``."""

    hotkey: str
    domain: str
    nonce: int
    request_digest: str
    """Hex sha256 of the accepted request's signed bytes (tells a replay from a stale nonce)."""


@dataclass(frozen=True)
class SettlementRecord:
    """A committed settlement and, once the sink acknowledged it, its receipt."""

    settlement: Settlement
    receipt: Receipt | None


def _row_text(row: WeightRow) -> str:
    return json.dumps([list(pair) for pair in row], separators=(",", ":"))


def _row_value(text: str) -> WeightRow:
    return tuple((int(uid), int(value)) for uid, value in json.loads(text))


class ConsensusStore:
    """The SQLite state file of one subnet's consensus service (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection, *, path: Path, netuid: int, genesis_ns: int) -> None:
        self._conn = conn
        self.path = path
        self.netuid = netuid
        self.genesis_ns = genesis_ns
        """Wall-clock time of block 0, nanoseconds since the Unix epoch (persisted on first open)."""

    @classmethod
    def open(cls, path: Path, *, netuid: int, block_ns: int, now_ns: int) -> ConsensusStore:
        """Open (or create, with genesis at ``now_ns``) the state file of subnet ``netuid``.

        An existing file must have been written for the same ``netuid`` and block length
        (``StateMismatchError`` otherwise): blocks already recorded would change meaning.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            with _transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    meta = {
                        "schema_version": str(SCHEMA_VERSION),
                        "netuid": str(netuid),
                        "block_ns": str(block_ns),
                        "genesis_ns": str(now_ns),
                        "epoch": "0",
                        "last_epoch_block": "0",
                    }
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            for key, configured in (
                ("schema_version", str(SCHEMA_VERSION)),
                ("netuid", str(netuid)),
                ("block_ns", str(block_ns)),
            ):
                if meta.get(key) != configured:
                    raise StateMismatchError(key, stored=str(meta.get(key)), configured=configured)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path=path, netuid=netuid, genesis_ns=int(meta["genesis_ns"]))

    def close(self) -> None:
        self._conn.close()

    # -- reading --------------------------------------------------------------------------------------

    def load_metagraph(self) -> Metagraph:
        """The metagraph as last committed."""
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        rows = self._conn.execute(
            "SELECT uid, hotkey, coldkey, registered_at_block, last_update_block, stake_rao,"
            " validator_permit, weights, bonds, incentive, dividends, validator_trust, consensus,"
            " emission_rao FROM neurons ORDER BY uid"
        ).fetchall()
        vacancies = self._conn.execute("SELECT uid, freed_at_block FROM vacancies ORDER BY uid").fetchall()
        registered = [
            Neuron(
                uid=row[0],
                hotkey=row[1],
                coldkey=row[2],
                registered_at_block=row[3],
                last_update_block=row[4],
                stake_rao=row[5],
                validator_permit=bool(row[6]),
                weights=_row_value(row[7]),
                bonds=_row_value(row[8]),
                incentive=row[9],
                dividends=row[10],
                validator_trust=row[11],
                consensus=row[12],
                emission_rao=row[13],
            )
            for row in rows
        ]
        freed = [Neuron.vacancy(uid, block=block) for uid, block in vacancies]
        neurons = tuple(sorted(registered + freed, key=lambda neuron: neuron.uid))
        return Metagraph(
            netuid=self.netuid,
            neurons=neurons,
            last_epoch_block=int(meta["last_epoch_block"]),
            epoch=int(meta["epoch"]),
        )

    def load_nonces(self) -> dict[tuple[str, str], NonceRecord]:
        """Every hotkey's last accepted nonce per request kind, keyed by (hotkey, domain)."""
        rows = self._conn.execute("SELECT hotkey, domain, nonce, request_digest FROM nonces").fetchall()
        return {
            (hotkey, domain): NonceRecord(
                hotkey=hotkey, domain=domain, nonce=int(nonce), request_digest=digest
            )
            for hotkey, domain, nonce, digest in rows
        }

    def highest_block(self) -> int:
        """The highest block the state mentions (the clock never goes below it)."""
        row = self._conn.execute(
            "SELECT max(coalesce(max(registered_at_block), 0), coalesce(max(last_update_block), 0))"
            " FROM neurons"
        ).fetchone()
        (freed,) = self._conn.execute("SELECT coalesce(max(freed_at_block), 0) FROM vacancies").fetchone()
        (last_epoch,) = self._conn.execute("SELECT value FROM meta WHERE key = 'last_epoch_block'").fetchone()
        return max(int(row[0] or 0), int(freed), int(last_epoch))

    def settlements(self, *, start_epoch: int = 1, limit: int | None = None) -> list[SettlementRecord]:
        """Committed settlements from ``start_epoch`` on, in epoch order, at most ``limit`` of them."""
        rows = self._conn.execute(
            "SELECT body, receipt_hash, receipt_block FROM settlements WHERE epoch >= ? ORDER BY epoch"
            " LIMIT ?",
            (start_epoch, -1 if limit is None else limit),
        ).fetchall()
        return [
            SettlementRecord(
                settlement=Settlement.decode(body),
                receipt=None
                if receipt_hash is None
                else Receipt(settlement_hash=receipt_hash, block=receipt_block),
            )
            for body, receipt_hash, receipt_block in rows
        ]

    def last_settlement(self) -> Settlement | None:
        """The settlement of the last epoch, if any."""
        row = self._conn.execute("SELECT body FROM settlements ORDER BY epoch DESC LIMIT 1").fetchone()
        return None if row is None else Settlement.decode(row[0])

    def undelivered(self) -> list[Settlement]:
        """Committed settlements no sink has acknowledged yet, in epoch order."""
        rows = self._conn.execute(
            "SELECT body FROM settlements WHERE receipt_hash IS NULL ORDER BY epoch"
        ).fetchall()
        return [Settlement.decode(body) for (body,) in rows]

    # -- writing --------------------------------------------------------------------------------------

    def commit(
        self,
        *,
        previous: Metagraph,
        metagraph: Metagraph,
        nonce: NonceRecord | None = None,
        settlement: Settlement | None = None,
    ) -> None:
        """Write ``metagraph`` (the neurons that differ from ``previous``), ``nonce`` and ``settlement``
        in one transaction. A settlement must be the next epoch after the last committed one and name
        its hash as ``previous_hash``, and ``metagraph.epoch`` must be its epoch."""
        with _transaction(self._conn):
            if settlement is not None:
                self._check_next(settlement, metagraph)
            for neuron in metagraph.neurons:
                if neuron.uid < previous.n and previous.neurons[neuron.uid] is neuron:
                    continue
                if neuron.vacant:
                    self._conn.execute("DELETE FROM neurons WHERE uid = ?", (neuron.uid,))
                    self._conn.execute(
                        "INSERT OR REPLACE INTO vacancies (uid, freed_at_block) VALUES (?, ?)",
                        (neuron.uid, neuron.registered_at_block),
                    )
                    continue
                self._conn.execute("DELETE FROM vacancies WHERE uid = ?", (neuron.uid,))
                self._conn.execute(
                    "INSERT OR REPLACE INTO neurons (uid, hotkey, coldkey, registered_at_block,"
                    " last_update_block, stake_rao, validator_permit, weights, bonds, incentive, dividends,"
                    " validator_trust, consensus, emission_rao)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        neuron.uid,
                        neuron.hotkey,
                        neuron.coldkey,
                        neuron.registered_at_block,
                        neuron.last_update_block,
                        neuron.stake_rao,
                        int(neuron.validator_permit),
                        _row_text(neuron.weights),
                        _row_text(neuron.bonds),
                        neuron.incentive,
                        neuron.dividends,
                        neuron.validator_trust,
                        neuron.consensus,
                        neuron.emission_rao,
                    ),
                )
            if (metagraph.epoch, metagraph.last_epoch_block) != (previous.epoch, previous.last_epoch_block):
                self._conn.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(str(metagraph.epoch), "epoch"), (str(metagraph.last_epoch_block), "last_epoch_block")],
                )
            if nonce is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO nonces (hotkey, domain, nonce, request_digest)"
                    " VALUES (?, ?, ?, ?)",
                    (nonce.hotkey, nonce.domain, str(nonce.nonce), nonce.request_digest),
                )
            if settlement is not None:
                self._conn.execute(
                    "INSERT INTO settlements (epoch, hash, body) VALUES (?, ?, ?)",
                    (settlement.epoch, settlement.hash, settlement.encode()),
                )

    def _check_next(self, settlement: Settlement, metagraph: Metagraph) -> None:
        row = self._conn.execute("SELECT epoch, hash FROM settlements ORDER BY epoch DESC LIMIT 1").fetchone()
        last_epoch, last_hash = (0, "") if row is None else (row[0], row[1])
        if (settlement.epoch, settlement.previous_hash) != (last_epoch + 1, last_hash):
            raise ValueError(
                f"settlement {settlement.epoch} (previous {settlement.previous_hash[:16]}) does not follow"
                f" epoch {last_epoch} ({last_hash[:16]})"
            )
        if metagraph.epoch != settlement.epoch or settlement.netuid != self.netuid:
            raise ValueError(f"metagraph epoch {metagraph.epoch} is not settlement epoch {settlement.epoch}")

    def mark_delivered(self, epoch: int, receipt: Receipt) -> None:
        """Record the sink's receipt for the settlement of ``epoch``."""
        with _transaction(self._conn):
            self._conn.execute(
                "UPDATE settlements SET receipt_hash = ?, receipt_block = ? WHERE epoch = ?",
                (receipt.settlement_hash, receipt.block, epoch),
            )

    def log_settlement(self, settlement: Settlement) -> Receipt:
        """Record ``settlement`` in the local settlement log, idempotently by (netuid, epoch)."""
        with _transaction(self._conn):
            self._conn.execute(
                "INSERT OR IGNORE INTO local_settlement_log (netuid, epoch, hash, block, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (settlement.netuid, settlement.epoch, settlement.hash, settlement.block, settlement.encode()),
            )
            stored_hash, block = self._conn.execute(
                "SELECT hash, block FROM local_settlement_log WHERE netuid = ? AND epoch = ?",
                (settlement.netuid, settlement.epoch),
            ).fetchone()
        if stored_hash != settlement.hash:
            raise SettlementConflictError(
                settlement.netuid, epoch=settlement.epoch, existing_hash=stored_hash, new_hash=settlement.hash
            )
        return Receipt(settlement_hash=stored_hash, block=block)

    def logged_settlements(self) -> list[Settlement]:
        """Everything the local settlement log recorded, in (netuid, epoch) order."""
        rows = self._conn.execute("SELECT body FROM local_settlement_log ORDER BY netuid, epoch").fetchall()
        return [Settlement.decode(body) for (body,) in rows]


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
