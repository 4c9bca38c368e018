"""Unit tests for kubetensor.consensus.store (a real SQLite file in a temporary folder) and the local log."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from kubetensor.consensus.errors import SettlementConflictError, StateMismatchError
from kubetensor.consensus.metagraph import Metagraph, SubnetRules
from kubetensor.consensus.settlement import Receipt, settlement_of_epoch
from kubetensor.consensus.settlementlog import LocalSettlementLog
from kubetensor.consensus.store import ConsensusStore, NonceRecord
from kubetensor.consensus.yuma import EpochParams, run_epoch
from kubetensor.core.settlement import Settlement, SettlementEntry

BLOCK_NS = 100_000_000
RULES = SubnetRules(min_allowed_weights=1, weights_rate_limit=0)


def open_store(path: Path, *, netuid: int = 1, block_ns: int = BLOCK_NS, now_ns: int = 123) -> ConsensusStore:
    return ConsensusStore.open(path, netuid=netuid, block_ns=block_ns, now_ns=now_ns)


def settle(store: ConsensusStore, metagraph: Metagraph, *, block: int, previous_hash: str) -> Metagraph:
    result = run_epoch(metagraph.epoch_inputs(block=block), EpochParams(tempo=10))
    settlement = settlement_of_epoch(
        metagraph=metagraph, result=result, block=block, previous_hash=previous_hash
    )
    after = metagraph.after_epoch(result, block=block)
    store.commit(previous=metagraph, metagraph=after, settlement=settlement)
    return after


def populated(store: ConsensusStore) -> Metagraph:
    metagraph = Metagraph(netuid=1)
    for i in range(3):
        new, _ = metagraph.register(
            hotkey=f"{i:064x}", coldkey=f"{i + 50:064x}", block=i, stake_rao=(3 - i) * 10**12, rules=RULES
        )
        store.commit(previous=metagraph, metagraph=new)
        metagraph = new
    return metagraph


def test_store_reopens_to_exactly_the_committed_state(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.sqlite3", now_ns=555)
    metagraph = populated(store)
    metagraph = settle(store, metagraph, block=10, previous_hash="")
    weighted = metagraph.set_weights(hotkey=f"{0:064x}", weights=[(1, 5), (2, 1)], block=11, rules=RULES)
    nonce = NonceRecord(hotkey=f"{0:064x}", domain="SetWeights", nonce=2**64 - 1, request_digest="aa" * 32)
    store.commit(previous=metagraph, metagraph=weighted, nonce=nonce)
    first = store.last_settlement()
    assert first is not None
    after = settle(store, weighted, block=20, previous_hash=first.hash)
    store.close()

    reopened = open_store(tmp_path / "state.sqlite3", now_ns=999)
    try:
        assert reopened.genesis_ns == 555
        assert reopened.load_metagraph() == after
        assert reopened.load_metagraph().digest == after.digest
        assert reopened.load_metagraph().neurons[0].bonds != ()
        assert reopened.load_nonces() == {(nonce.hotkey, nonce.domain): nonce}
        assert [r.settlement.epoch for r in reopened.settlements()] == [1, 2]
        assert reopened.settlements()[1].settlement.previous_hash == first.hash
        assert reopened.highest_block() == 20
    finally:
        reopened.close()


def test_store_uses_wal_and_full_synchronous_writes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.sqlite3")
    # synchronous is a per-connection setting: read it on the store's own connection (2 = FULL).
    assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)
    store.close()
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_store_refuses_a_settlement_that_does_not_follow_the_last(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.sqlite3")
    metagraph = populated(store)
    settled = settle(store, metagraph, block=10, previous_hash="")
    last = store.last_settlement()
    assert last is not None
    # The same epoch again, an epoch that skips one, and a broken hash link are all refused.
    with pytest.raises(ValueError, match="does not follow"):
        settle(store, metagraph, block=10, previous_hash="")
    skipped = replace(settled, epoch=settled.epoch + 1)
    with pytest.raises(ValueError, match="does not follow"):
        settle(store, skipped, block=30, previous_hash=last.hash)
    with pytest.raises(ValueError, match="does not follow"):
        settle(store, settled, block=20, previous_hash="00" * 32)
    assert [r.settlement.epoch for r in store.settlements()] == [1]
    # A refused epoch commit wrote nothing of its metagraph either.
    assert store.load_metagraph() == settled
    store.close()


def test_store_refuses_a_state_file_of_another_subnet_or_block_length(tmp_path: Path) -> None:
    open_store(tmp_path / "state.sqlite3", netuid=1).close()
    with pytest.raises(StateMismatchError, match="netuid"):
        open_store(tmp_path / "state.sqlite3", netuid=2)
    with pytest.raises(StateMismatchError, match="block_ns"):
        open_store(tmp_path / "state.sqlite3", block_ns=BLOCK_NS * 2)


def test_delivery_state_is_recorded_per_settlement(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.sqlite3")
    metagraph = settle(store, populated(store), block=10, previous_hash="")
    first = store.last_settlement()
    assert first is not None
    settle(store, metagraph, block=20, previous_hash=first.hash)
    assert [s.epoch for s in store.undelivered()] == [1, 2]
    store.mark_delivered(1, Receipt(settlement_hash=first.hash, block=10))
    assert [s.epoch for s in store.undelivered()] == [2]
    assert store.settlements()[0].receipt == Receipt(settlement_hash=first.hash, block=10)
    assert store.settlements()[1].receipt is None
    assert [r.settlement.epoch for r in store.settlements(start_epoch=2, limit=5)] == [2]
    store.close()


async def test_local_settlement_log_is_idempotent_by_netuid_and_epoch(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.sqlite3")
    log = LocalSettlementLog(store)
    settlement = Settlement(
        netuid=1,
        epoch=1,
        block=10,
        metagraph_digest="11" * 32,
        weights_digest="22" * 32,
        entries=(SettlementEntry(uid=0, hotkey="33" * 32, incentive=0, dividends=0, emission_rao=0),),
        previous_hash="",
    )
    receipt = await log.submit(settlement)
    assert receipt == Receipt(settlement_hash=settlement.hash, block=10)
    assert await log.submit(settlement) == receipt
    with pytest.raises(SettlementConflictError):
        await log.submit(replace(settlement, block=11))
    assert store.logged_settlements() == [settlement]
    store.close()
