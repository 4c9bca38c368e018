"""Unit tests for the ledger file and its verification: tamper detection, state tables, key files, wallet.

Tampering is always done on a copy of a ledger the service wrote and closed.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from kubetensor.chain import client, keyfile, wallet, wire
from kubetensor.chain.block import Block, SealedBlock
from kubetensor.chain.errors import KeyFileError
from kubetensor.chain.ledger import Ledger
from kubetensor.chain.verify import verify_blocks, verify_ledger
from kubetensor.core.settlement import Settlement
from kubetensor.core.settlementwire import settlement_from_proto as consensus_from_proto
from kubetensor.core.settlementwire import settlement_to_proto as consensus_to_proto

from tests.chain_support import (
    AUTHORITY,
    ONE,
    TAO,
    keypair,
    make_settlement,
    settle,
    started_service,
    transact,
)

COLD = keypair(1)
HOT = keypair(2)
STAKER = keypair(3)


async def build_ledger(path: Path) -> None:
    """A closed ledger of 7 blocks: genesis, 5 transactions in their own blocks, 1 settlement."""
    async with started_service(path, balances={COLD.hotkey: 100 * TAO, STAKER.hotkey: 100 * TAO}) as service:
        await transact(service, client.register_hotkey_request(COLD, HOT, nonce=1))
        await transact(service, client.register_subnet_request(COLD, netuid=1, nonce=2))
        await transact(
            service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=10 * TAO, nonce=1)
        )
        await transact(
            service, client.add_stake_request(COLD, hotkey=HOT.hotkey, amount_rao=30 * TAO, nonce=3)
        )
        await transact(
            service, client.remove_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=2)
        )
        await settle(service, make_settlement(entries=[(HOT.hotkey, ONE // 2, ONE // 2, 7 * TAO + 3)]))


def stored_block(path: Path, height: int) -> SealedBlock:
    ledger = Ledger.open_read_only(path)
    try:
        sealed = ledger.block(height)
    finally:
        ledger.close()
    assert sealed is not None
    return sealed


def occurrences(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


async def test_fresh_ledger_verifies_with_a_one_line_summary(tmp_path: Path) -> None:
    await build_ledger(tmp_path / "ledger")
    report = verify_ledger(tmp_path / "ledger", expected_authority=AUTHORITY.hotkey)
    assert report.ok, report.summary
    assert (report.blocks, report.transactions, report.settlements) == (7, 5, 1)
    assert report.summary.startswith("ok: 7 blocks")
    assert "\n" not in report.summary


@pytest.mark.parametrize("height", [0, 3, 6])
@pytest.mark.parametrize("part", ["body", "signature"])
async def test_one_flipped_byte_in_a_stored_block_fails_verify_naming_it(
    tmp_path: Path, height: int, part: str
) -> None:
    await build_ledger(tmp_path / "ledger")
    original = stored_block(tmp_path / "ledger", height)
    if part == "body":
        # A stretch of the block's JSON that occurs once in it, from the middle on.
        body = original.body
        start = next(
            i for i in range(len(body) // 2, len(body) - 48) if len(occurrences(body, body[i : i + 48])) == 1
        )
        needle, offset = body[start : start + 48], 24
    else:
        needle, offset = original.signature, 17
    data = (tmp_path / "ledger").read_bytes()
    # SQLite may keep stale copies of a page in free space; flip each copy in its own COPY of the file
    # and check the one the ledger actually reads.
    live = 0
    for index, at in enumerate(occurrences(data, needle)):
        copy = tmp_path / f"tampered-{index}"
        tampered = bytearray(data)
        tampered[at + offset] ^= 0x01
        copy.write_bytes(bytes(tampered))
        if stored_block(copy, height) == original:
            continue  # a stale copy: the ledger does not read it
        live += 1
        report = verify_ledger(copy)
        assert not report.ok
        assert report.bad_block == height, report.summary
        assert f"block {height}" in report.summary
    assert live == 1
    assert verify_ledger(tmp_path / "ledger").ok  # the original is untouched


async def test_rewritten_block_with_a_matching_hash_fails_on_its_signature(tmp_path: Path) -> None:
    await build_ledger(tmp_path / "ledger")
    sealed = stored_block(tmp_path / "ledger", 2)
    block = sealed.block
    forged = Block(
        height=block.height,
        parent_hash=block.parent_hash,
        timestamp_ms=block.timestamp_ms + 1,
        authority=block.authority,
        transactions=block.transactions,
    )
    body = forged.encode()
    with sqlite3.connect(tmp_path / "ledger") as db:
        db.execute(
            "UPDATE blocks SET body = ?, hash = ? WHERE height = 2",
            (body, SealedBlock(body, sealed.signature).hash),
        )
    report = verify_ledger(tmp_path / "ledger")
    assert (report.ok, report.bad_block) == (False, 2)
    assert "signature" in (report.problem or "")


async def test_missing_block_fails_verify_naming_its_height(tmp_path: Path) -> None:
    await build_ledger(tmp_path / "ledger")
    with sqlite3.connect(tmp_path / "ledger") as db:
        db.execute("DELETE FROM blocks WHERE height = 4")
    report = verify_ledger(tmp_path / "ledger")
    assert (report.ok, report.bad_block) == (False, 4)
    assert "missing" in (report.problem or "")


async def test_tampered_balance_row_fails_verify_on_the_state_tables(tmp_path: Path) -> None:
    await build_ledger(tmp_path / "ledger")
    with sqlite3.connect(tmp_path / "ledger") as db:
        db.execute("UPDATE accounts SET free = free + 1 WHERE account = ?", (STAKER.hotkey,))
    report = verify_ledger(tmp_path / "ledger")
    assert not report.ok
    assert report.bad_block is None
    assert "state tables" in (report.problem or "")


async def test_truncated_ledger_still_verifies_but_reports_another_head(tmp_path: Path) -> None:
    # The documented limit: cutting the newest blocks off leaves a valid, shorter ledger. Only a head
    # hash recorded elsewhere shows it, so the report names the head.
    await build_ledger(tmp_path / "ledger")
    full = verify_ledger(tmp_path / "ledger")
    wire_blocks = [stored_block(tmp_path / "ledger", h) for h in range(5)]
    shorter = verify_blocks(wire_blocks)
    assert shorter.ok
    assert shorter.head_hash != full.head_hash


async def test_verify_refuses_an_unexpected_authority(tmp_path: Path) -> None:
    await build_ledger(tmp_path / "ledger")
    report = verify_ledger(tmp_path / "ledger", expected_authority=keypair(55).hotkey)
    assert (report.ok, report.bad_block) == (False, 0)


def test_verify_reports_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not sqlite at all" * 100)
    report = verify_ledger(tmp_path / "junk")
    assert not report.ok
    assert verify_ledger(tmp_path / "absent").ok is False


def test_settlement_crosses_both_services_wire_edges_with_its_hash() -> None:
    entries = [(f"{i + 1:064x}", (i * 7919) % ONE, (i * 104729) % ONE, i * 1_000_003) for i in range(6)]
    settlement = make_settlement(netuid=3, epoch=9, entries=entries, previous_hash="ab" * 32)
    # What the consensus servicer sends is what the chain decodes and hashes, and back.
    from_consensus = wire.settlement_from_proto(consensus_to_proto(settlement))
    assert (from_consensus, from_consensus.hash) == (settlement, settlement.hash)
    from_chain = consensus_from_proto(wire.settlement_to_proto(settlement))
    assert (from_chain, from_chain.hash) == (settlement, settlement.hash)
    assert Settlement.decode(settlement.encode()) == settlement


def test_authority_key_file_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "authority.key"
    first, created = keyfile.load_or_create(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = keyfile.load_or_create(path)
    assert (again, created_again) == (first, False)
    assert first.seed.hex() not in repr(first)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "authority.key"
    keyfile.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keyfile.read(path)
    path.chmod(0o600)
    path.write_text("not a seed\n")
    with pytest.raises(KeyFileError, match="64 hex"):
        keyfile.read(path)


def test_wallet_creates_lists_and_loads_owner_only_keys(tmp_path: Path) -> None:
    directory = tmp_path / "wallet"
    alice = wallet.create_key(directory, "alice")
    bob = wallet.create_key(directory, "bob.hot")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(key.path.stat().st_mode) == 0o600 for key in (alice, bob))
    assert [(k.name, k.public_key) for k in wallet.list_keys(directory)] == [
        ("alice", alice.public_key),
        ("bob.hot", bob.public_key),
    ]
    assert wallet.load_key(directory, "alice").hotkey == alice.public_key
    with pytest.raises(KeyFileError, match="exists"):
        wallet.create_key(directory, "alice")
    with pytest.raises(KeyFileError, match="key name"):
        wallet.create_key(directory, "../escape")
    with pytest.raises(KeyFileError, match="no key named"):
        wallet.load_key(directory, "carol")
    assert wallet.list_keys(tmp_path / "none") == []
