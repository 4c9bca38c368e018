"""The ``ledger`` backend: an append-only chain of signed blocks in one SQLite file, and its state.

Opened by ``ChainService.open`` (the one writer) and by ``verify.verify_ledger`` (read-only). What it
is, plainly: a tamper-evident, verifiable log kept by a single writer, the sidecar holding the
authority key. It is not a decentralized chain: there is no consensus among nodes, and whoever holds
the key file can rewrite history. Anyone can check that every block links to its parent, is signed by
the authority, and that replaying it gives the balances the ledger reports (``verify``).

Durability: the file is in WAL mode with ``synchronous=FULL``, so every commit fsyncs the WAL before
it returns; ``append`` writes a block, its transaction and settlement index rows and every state row
the block changed in one transaction. ``ChainService`` answers a write only after ``append`` returned,
so an acknowledged write survives a crash (SIGKILL, power loss on a disk that honours fsync), and a
block is either wholly there or not at all.

Tables: ``blocks`` (height, hash, body, signature: the record; never updated or deleted), the indexes
``transactions`` and ``settlements``, and the derived state ``accounts``, ``hotkeys``, ``stakes``,
``subnets`` and ``meta`` (issuance), which ``load_state`` reads on start and ``verify`` compares with a
replay of the blocks.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetensor.chain.block import SealedBlock
from kubetensor.chain.errors import LedgerStateError
from kubetensor.chain.state import ChainParams, ChainState, SettlementRef

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height    INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL UNIQUE,
    body      BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    hash     TEXT PRIMARY KEY,
    height   INTEGER NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settlements (
    netuid   INTEGER NOT NULL,
    epoch    INTEGER NOT NULL,
    hash     TEXT NOT NULL,
    height   INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (netuid, epoch)
);
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    free    INTEGER NOT NULL,
    nonce   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hotkeys (
    hotkey TEXT PRIMARY KEY,
    owner  TEXT,
    take   INTEGER
);
CREATE TABLE IF NOT EXISTS stakes (
    hotkey  TEXT NOT NULL,
    coldkey TEXT NOT NULL,
    rao     INTEGER NOT NULL,
    PRIMARY KEY (hotkey, coldkey)
);
CREATE TABLE IF NOT EXISTS subnets (
    netuid     INTEGER PRIMARY KEY,
    owner      TEXT,
    last_epoch INTEGER,
    last_hash  TEXT
);
"""


@dataclass(frozen=True)
class Head:
    """The newest block: its height and hash."""

    height: int
    hash: str


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        connection = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit fsyncs the WAL, so a commit that returned is on disk.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class Ledger:
    """One ledger file. Writes go through one connection (used by one writer at a time), reads another."""

    def __init__(self, path: Path, *, writer: sqlite3.Connection | None, reader: sqlite3.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) the ledger at ``path`` for writing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(path, read_only=False)
        try:
            writer.executescript(_SCHEMA)
            version = writer.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                writer.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise LedgerStateError(
                    f"{path}: schema version {version[0]}, this build reads {SCHEMA_VERSION}"
                )
        except Exception:
            writer.close()
            raise
        return cls(path, writer=writer, reader=_connect(path, read_only=False))

    @classmethod
    def open_read_only(cls, path: Path) -> Ledger:
        """Open an existing ledger for reading only (``verify``)."""
        if not path.is_file():
            raise LedgerStateError(f"{path}: no such ledger file")
        return cls(path, writer=None, reader=_connect(path, read_only=True))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state of the file, whatever the writer commits meanwhile."""
        self._reader.execute("BEGIN")
        try:
            yield
        finally:
            self._reader.execute("COMMIT")

    def close(self) -> None:
        self._reader.close()
        if self._writer is not None:
            self._writer.close()

    # -- reads ----------------------------------------------------------------------------------------
    def head(self) -> Head | None:
        """The newest block, or None for an empty ledger."""
        row = self._reader.execute("SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        return None if row is None else Head(height=int(row[0]), hash=str(row[1]))

    def block(self, height: int) -> SealedBlock | None:
        row = self._reader.execute(
            "SELECT body, signature FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else SealedBlock(body=bytes(row[0]), signature=bytes(row[1]))

    def stored_blocks(self) -> Iterator[tuple[int, str, SealedBlock]]:
        """Every stored row ``(height, hash column, block)`` in height order."""
        cursor = self._reader.execute("SELECT height, hash, body, signature FROM blocks ORDER BY height")
        for height, stored_hash, body, signature in cursor:
            yield int(height), str(stored_hash), SealedBlock(body=bytes(body), signature=bytes(signature))

    def transaction_index(self) -> dict[str, tuple[int, int]]:
        """Every indexed transaction: hash -> (block, position)."""
        rows = self._reader.execute("SELECT hash, height, position FROM transactions")
        return {str(h): (int(b), int(p)) for h, b, p in rows}

    def settlement_refs(
        self, netuid: int, *, start_epoch: int, limit: int
    ) -> list[tuple[int, SettlementRef]]:
        """``(epoch, ref)`` of the subnet's settlements from ``start_epoch`` on, at most ``limit``."""
        rows = self._reader.execute(
            "SELECT epoch, hash, height, position FROM settlements WHERE netuid = ? AND epoch >= ? "
            "ORDER BY epoch LIMIT ?",
            (netuid, start_epoch, limit),
        ).fetchall()
        return [(int(e), SettlementRef(hash=str(h), block=int(b), position=int(p))) for e, h, b, p in rows]

    def load_state(self, params: ChainParams) -> ChainState:
        """The state the derived tables hold (what the blocks so far produced)."""
        state = ChainState(params=params)
        read = self._reader.execute
        row = read("SELECT value FROM meta WHERE key = 'issuance'").fetchone()
        state.issuance = int(row[0]) if row is not None else 0
        for account, free, nonce in read("SELECT account, free, nonce FROM accounts"):
            if free:
                state.free[account] = int(free)
            if nonce:
                state.nonce[account] = int(nonce)
        for hotkey, owner, take in read("SELECT hotkey, owner, take FROM hotkeys"):
            if owner is not None:
                state.owner[hotkey] = owner
            if take is not None:
                state.take[hotkey] = int(take)
        for hotkey, coldkey, rao in read("SELECT hotkey, coldkey, rao FROM stakes"):
            state.stake[(hotkey, coldkey)] = int(rao)
            state.stakers[hotkey] = state.stakers.get(hotkey, frozenset()) | {coldkey}
            state.staked[coldkey] = state.staked.get(coldkey, frozenset()) | {hotkey}
        for netuid, owner, last_epoch, last_hash in read(
            "SELECT netuid, owner, last_epoch, last_hash FROM subnets"
        ):
            if owner is not None:
                state.subnet_owner[int(netuid)] = owner
            if last_epoch is not None:
                state.last[int(netuid)] = (int(last_epoch), str(last_hash))
        for netuid, epoch, hash_, height, position in read(
            "SELECT netuid, epoch, hash, height, position FROM settlements"
        ):
            state.settlements[(int(netuid), int(epoch))] = SettlementRef(
                hash=str(hash_), block=int(height), position=int(position)
            )
        return state

    # -- the one write ----------------------------------------------------------------------------------
    def append(
        self,
        *,
        height: int,
        sealed: SealedBlock,
        layer: ChainState,
        transactions: Sequence[str],
        settlements: Sequence[tuple[int, int]],
    ) -> None:
        """Commit block ``height`` and the state ``layer`` wrote, durably, in one transaction.

        ``transactions`` are the block's transaction hashes and ``settlements`` its (netuid, epoch)
        keys, in block order. Raises (and records nothing) if anything fails.
        """
        if self._writer is None:
            raise LedgerStateError(f"{self.path}: opened read-only")
        db = self._writer
        changes = layer.changes()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO blocks (height, hash, body, signature) VALUES (?, ?, ?, ?)",
                (height, sealed.hash, sealed.body, sealed.signature),
            )
            db.executemany(
                "INSERT INTO transactions (hash, height, position) VALUES (?, ?, ?)",
                [(tx_hash, height, position) for position, tx_hash in enumerate(transactions)],
            )
            rows = []
            for netuid, epoch in settlements:
                ref = layer.settlements[(netuid, epoch)]
                rows.append((netuid, epoch, ref.hash, ref.block, ref.position))
            db.executemany(
                "INSERT INTO settlements (netuid, epoch, hash, height, position) VALUES (?, ?, ?, ?, ?)", rows
            )
            accounts = set(changes["free"]) | set(changes["nonce"])
            db.executemany(
                "INSERT INTO accounts (account, free, nonce) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET free = excluded.free, nonce = excluded.nonce",
                [(a, layer.free_of(a), layer.nonce.get(a, 0)) for a in sorted(accounts)],
            )
            hotkeys = set(changes["owner"]) | set(changes["take"])
            db.executemany(
                "INSERT INTO hotkeys (hotkey, owner, take) VALUES (?, ?, ?) "
                "ON CONFLICT (hotkey) DO UPDATE SET owner = excluded.owner, take = excluded.take",
                [(h, layer.owner.get(h), layer.take.get(h)) for h in sorted(hotkeys)],
            )
            db.executemany(
                "INSERT INTO stakes (hotkey, coldkey, rao) VALUES (?, ?, ?) "
                "ON CONFLICT (hotkey, coldkey) DO UPDATE SET rao = excluded.rao",
                [(h, c, rao) for (h, c), rao in sorted(changes["stake"].items())],
            )
            netuids = set(changes["subnet_owner"]) | set(changes["last"])
            subnet_rows = []
            for netuid in sorted(netuids):
                last = layer.last.get(netuid)
                subnet_rows.append(
                    (
                        netuid,
                        layer.subnet_owner.get(netuid),
                        None if last is None else last[0],
                        None if last is None else last[1],
                    )
                )
            db.executemany(
                "INSERT INTO subnets (netuid, owner, last_epoch, last_hash) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (netuid) DO UPDATE SET owner = excluded.owner, "
                "last_epoch = excluded.last_epoch, last_hash = excluded.last_hash",
                subnet_rows,
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('issuance', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(layer.issuance),),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
