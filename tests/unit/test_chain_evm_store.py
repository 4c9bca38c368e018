"""Unit tests for the evm backend's pieces that need no node: the anchor store, the anchor key file, the
settings of backend=evm, and the log redaction of RPC URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubetensor.chain.errors import EvmSetupError, KeyFileError
from kubetensor.chain.evm.contract import load_anchor_account, redact_url
from kubetensor.chain.evm.store import AnchorRecord, AnchorState, AnchorStore
from kubetensor.chain.settings import ChainSettings
from pydantic import ValidationError

GENESIS = "11" * 32
# A well-known development key (anvil's and hardhat's first account); never holds real funds.
DEV_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def record(netuid: int, epoch: int, *, block: int, position: int = 0) -> AnchorRecord:
    return AnchorRecord(
        netuid=netuid,
        epoch=epoch,
        ledger_block=block,
        position=position,
        settlement_hash=f"{epoch:064x}",
        credits_root=f"{epoch + 1:064x}",
        leaf_count=3,
        state=AnchorState.PENDING,
    )


def test_store_records_blocks_once_and_lists_pending_in_ledger_order(tmp_path: Path) -> None:
    store = AnchorStore.open(tmp_path / "anchors.sqlite3", genesis_hash=GENESIS)
    try:
        assert store.scanned_height() == -1
        store.record_block(1, [record(2, 1, block=1), record(1, 1, block=1, position=1)])
        store.record_block(2, [record(1, 2, block=2)])
        store.mark_failed_attempt(netuid=2, epoch=1, error="node down")
        # A block scanned again (after a crash) keeps the rows as they are.
        store.record_block(1, [record(2, 1, block=1), record(1, 1, block=1, position=1)])
        assert store.scanned_height() == 1
        pending = store.pending()
        assert [(r.netuid, r.epoch) for r in pending] == [(2, 1), (1, 1), (1, 2)]
        assert (pending[0].attempts, pending[0].last_error) == (1, "node down")
        store.mark_anchored(netuid=2, epoch=1, transaction_hash="0xab", evm_block=5)
        store.mark_conflict(netuid=1, epoch=1, error="different anchor")
        assert [(r.netuid, r.epoch) for r in store.pending()] == [(1, 2)]
        anchored = store.get(2, 1)
        assert anchored is not None
        assert (anchored.state, anchored.transaction_hash, anchored.evm_block, anchored.last_error) == (
            AnchorState.ANCHORED,
            "0xab",
            5,
            None,
        )
        assert store.get(9, 9) is None
    finally:
        store.close()


def test_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "anchors.sqlite3"
    store = AnchorStore.open(path, genesis_hash=GENESIS)
    store.record_block(4, [record(1, 1, block=4)])
    store.bind_contract(chain_id=5, address="0x" + "12" * 20)
    store.close()
    reopened = AnchorStore.open(path, genesis_hash=GENESIS)
    try:
        assert reopened.scanned_height() == 4
        assert reopened.contract(5) == "0x" + "12" * 20
        assert reopened.contract(6) is None
        assert [r.epoch for r in reopened.all()] == [1]
    finally:
        reopened.close()


def test_a_new_contract_makes_every_anchor_pending_again(tmp_path: Path) -> None:
    store = AnchorStore.open(tmp_path / "anchors.sqlite3", genesis_hash=GENESIS)
    try:
        store.record_block(1, [record(1, 1, block=1), record(1, 2, block=1, position=1)])
        assert store.bind_contract(chain_id=1, address="0x" + "aa" * 20)
        store.mark_anchored(netuid=1, epoch=1, transaction_hash="0x01", evm_block=1)
        store.mark_conflict(netuid=1, epoch=2, error="x")
        assert not store.bind_contract(chain_id=1, address="0x" + "aa" * 20)
        assert store.pending() == []
        assert store.bind_contract(chain_id=1, address="0x" + "bb" * 20)
        assert [(r.epoch, r.state, r.transaction_hash) for r in store.pending()] == [
            (1, AnchorState.PENDING, None),
            (2, AnchorState.PENDING, None),
        ]
    finally:
        store.close()


def test_store_of_another_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "anchors.sqlite3"
    AnchorStore.open(path, genesis_hash=GENESIS).close()
    with pytest.raises(EvmSetupError, match="genesis"):
        AnchorStore.open(path, genesis_hash="22" * 32)


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_anchor_key_file_gives_the_account(tmp_path: Path) -> None:
    assert load_anchor_account(write(tmp_path / "a.key", DEV_KEY + "\n", 0o600)).address == DEV_ADDRESS
    assert load_anchor_account(write(tmp_path / "b.key", "0x" + DEV_KEY, 0o400)).address == DEV_ADDRESS


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (DEV_KEY, 0o644, "chmod 600"),
        (DEV_KEY[:-2], 0o600, "not an anchor key file"),
        ("zz" * 32, 0o600, "not an anchor key file"),
    ],
)
def test_anchor_key_file_that_is_open_or_malformed_is_refused(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    path = write(tmp_path / "anchor.key", text, mode)
    with pytest.raises(KeyFileError, match=message) as caught:
        load_anchor_account(path)
    assert DEV_KEY not in str(caught.value)


def test_anchor_key_file_that_is_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_anchor_account(tmp_path / "absent.key")


def test_backend_defaults_to_ledger_and_evm_needs_its_settings(tmp_path: Path) -> None:
    assert ChainSettings().backend == "ledger"
    with pytest.raises(ValidationError, match="evm_rpc_url, evm_chain_id, evm_anchor_key_path"):
        ChainSettings(backend="evm")
    settings = ChainSettings(
        backend="evm",
        evm_rpc_url="https://rpc.example.org/v3/secret",
        evm_chain_id=11155111,
        evm_anchor_key_path=tmp_path / "anchor.key",
    )
    assert (settings.evm_contract_address, settings.evm_state_path.name) == ("", "chain-anchors.sqlite3")


@pytest.mark.parametrize(
    "overrides",
    [
        {"backend": "solana"},
        {"evm_rpc_url": "ws://127.0.0.1:8545"},
        {"evm_rpc_url": "not a url"},
        {"evm_contract_address": "0x1234"},
        {"evm_chain_id": -1},
        {"evm_retry_initial_seconds": 5.0, "evm_retry_max_seconds": 1.0},
        {"evm_receipt_timeout_seconds": 0},
    ],
)
def test_malformed_evm_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChainSettings(**overrides)  # type: ignore[arg-type]


def test_rpc_urls_are_logged_without_path_or_query() -> None:
    assert redact_url("https://user:pw@mainnet.example.io/v3/0123abcd?key=1") == "https://mainnet.example.io"
    assert redact_url("http://127.0.0.1:8545/") == "http://127.0.0.1:8545"
