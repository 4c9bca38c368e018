"""The chain sidecar's evm backend against a real local node (anvil on loopback): settlements anchored and
read back, a credit's Merkle proof checked by the contract, tampering refused, anchoring that survives a
node that is down, a restart and a lost state file, conflicts, the sidecar process itself, and the
committed contract bytecode recompiled from its source with the pinned compiler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from kubetensor.chain import client as requests
from kubetensor.chain import wire
from kubetensor.chain.client import ChainClient
from kubetensor.chain.errors import AnchorConflictError, EvmSetupError, EvmUnavailableError
from kubetensor.chain.evm import artifact, compiler
from kubetensor.chain.evm import contract as evm
from kubetensor.chain.evm.anchorer import EvmAnchorer
from kubetensor.chain.evm.merkle import CreditTree
from kubetensor.chain.evm.store import AnchorState, AnchorStore
from kubetensor.chain.service import ChainService
from kubetensor.chain.verify import verify_ledger
from kubetensor.core.paths import repo_root
from kubetensor.core.settlement import Settlement
from kubetensor.sandbox.processes import free_port
from web3.exceptions import ContractCustomError

from tests.chain_support import ONE, TAO, keypair, make_settlement, settle, started_service, transact
from tests.evm_support import CHAIN_ID, AnvilNode

WAIT_SECONDS = 60.0
"""Bound of every wait for the anchorer (they normally end within a second)."""
COLD = keypair(11)
HOT = keypair(12)
STAKER = keypair(13)
MINER = keypair(14)
IDLE = keypair(15)
BALANCES = {COLD.hotkey: 1_000 * TAO, STAKER.hotkey: 1_000 * TAO}


def evm_dev_key(index: int) -> str:
    """anvil's deterministic dev keys (its default mnemonic), known before a node is started."""
    keys = (
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    )
    return keys[index]


def account_of(node: AnvilNode, index: int) -> LocalAccount:
    key: LocalAccount = Account.from_key(node.private_keys[index])
    return key


def settlements(netuid: int, epochs: range, *, scale: int = 1) -> list[Settlement]:
    """A linked run of settlements whose entries earn incentive, dividends, both, and nothing."""
    chain: list[Settlement] = []
    previous = ""
    for epoch in epochs:
        settlement = make_settlement(
            netuid=netuid,
            epoch=epoch,
            previous_hash=previous,
            entries=[
                (HOT.hotkey, ONE // 3, 2 * ONE // 3, 1_000_000_007 * epoch * scale),
                (MINER.hotkey, ONE, 0, 333_333 * epoch),
                (IDLE.hotkey, 0, 0, 0),
            ],
        )
        chain.append(settlement)
        previous = settlement.hash
    return chain


async def with_economics(service: ChainService) -> None:
    """A subnet owner, a registered validator hotkey and a staker, so credits split several ways."""
    await transact(service, requests.register_hotkey_request(COLD, HOT, nonce=1))
    await transact(service, requests.register_subnet_request(COLD, netuid=1, nonce=2))
    await transact(
        service, requests.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=100 * TAO, nonce=1)
    )


@contextlib.asynccontextmanager
async def running_anchorer(
    service: ChainService,
    *,
    store_path: Path,
    url: str,
    account: LocalAccount,
    contract_address: str | None = None,
) -> AsyncIterator[EvmAnchorer]:
    store = AnchorStore.open(store_path, genesis_hash=service.info().genesis_hash)
    anchorer = EvmAnchorer(
        service=service,
        store=store,
        rpc_url=url,
        chain_id=CHAIN_ID,
        account=account,
        contract_address=contract_address,
        retry_initial=0.05,
        retry_max=0.5,
        rpc_timeout=5.0,
        receipt_timeout=30.0,
    )
    await anchorer.start()
    try:
        yield anchorer
    finally:
        await anchorer.stop()
        store.close()


async def until(anchorer: EvmAnchorer, predicate: Callable[[], bool]) -> None:
    await asyncio.wait_for(anchorer.wait_for(predicate), timeout=WAIT_SECONDS)


def states(anchorer: EvmAnchorer) -> dict[tuple[int, int], AnchorState]:
    return {(r.netuid, r.epoch): r.state for r in anchorer.store.all()}


def all_anchored(anchorer: EvmAnchorer, count: int) -> Callable[[], bool]:
    def check() -> bool:
        current = states(anchorer)
        return len(current) == count and set(current.values()) == {AnchorState.ANCHORED}

    return check


def flip(value: bytes, *, bit: int = 0) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


async def test_settlements_are_anchored_read_back_and_a_credit_proof_verifies_on_chain(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    account = account_of(anvil, 0)
    async with started_service(tmp_path / "ledger.sqlite3", balances=BALANCES) as service:
        await with_economics(service)
        async with running_anchorer(
            service, store_path=tmp_path / "anchors.sqlite3", url=anvil.url, account=account
        ) as anchorer:
            for settlement in settlements(1, range(1, 4)):
                await settle(service, settlement)
            await until(anchorer, all_anchored(anchorer, 3))
            contract = anchorer.contract
            assert contract is not None

            for epoch in (1, 2, 3):
                recorded = service.settlement(1, epoch)
                expected = evm.SettlementAnchor.of(recorded.settlement, recorded.credits)
                on_chain = await contract.get_anchor(1, epoch)
                assert on_chain is not None
                assert on_chain.anchor == expected
                assert on_chain.anchor.settlement_hash == recorded.receipt.settlement_hash
                assert on_chain.anchorer == account.address
                row = anchorer.store.get(1, epoch)
                assert row is not None
                assert (row.evm_block, row.transaction_hash is not None) == (on_chain.anchored_at, True)
            assert await contract.get_anchor(1, 4) is None

            recorded = service.settlement(1, 2)
            tree = CreditTree.of(recorded.settlement, recorded.credits)
            proof = tree.prove(HOT.hotkey)
            paid_for_hot = [c for c in recorded.credits if c.hotkey == HOT.hotkey]
            assert len({c.reason for c in paid_for_hot}) == 4  # owner cut, incentive, take, dividends
            assert proof.credit.amount_rao == sum(c.amount_rao for c in paid_for_hot)
            assert proof.verify()
            assert await contract.verify_credit(proof)
            assert await contract.verify(netuid=1, epoch=2, leaf=proof.credit.leaf(), proof=proof.proof)
            assert (
                await contract.credit_leaf(
                    netuid=1, epoch=2, uid=0, hotkey=HOT.hotkey, amount_rao=proof.credit.amount_rao
                )
                == proof.credit.leaf()
            )
            for other in (MINER.hotkey, IDLE.hotkey):
                assert await contract.verify_credit(tree.prove(other))

            # Tampering: a larger credit, another uid, another epoch, a flipped proof bit, a cut proof.
            tampered = [
                replace(proof, credit=replace(proof.credit, amount_rao=proof.credit.amount_rao + 1)),
                replace(proof, credit=replace(proof.credit, uid=1)),
                replace(proof, credit=replace(proof.credit, epoch=3)),
                replace(proof, proof=(flip(proof.proof[0], bit=255), *proof.proof[1:])),
                replace(proof, proof=proof.proof[:-1]),
            ]
            for bad in tampered:
                assert not bad.verify()
                assert not await contract.verify_credit(bad)
            assert not await contract.verify(
                netuid=1, epoch=2, leaf=flip(proof.credit.leaf()), proof=proof.proof
            )
            assert not await contract.verify(netuid=1, epoch=1, leaf=proof.credit.leaf(), proof=proof.proof)
            assert not await contract.verify(netuid=1, epoch=9, leaf=proof.credit.leaf(), proof=proof.proof)


async def test_the_contract_keeps_one_anchor_per_epoch_and_lets_only_anchorers_write(
    anvil: AnvilNode,
) -> None:
    owner, other = account_of(anvil, 0), account_of(anvil, 2)
    w3 = evm.connect(anvil.url)
    try:
        contract = await evm.SettlementsContract.deploy(w3, chain_id=CHAIN_ID, account=owner)
        raw = w3.eth.contract(address=contract.address, abi=artifact.load().abi)
        root = keccak(b"root")
        anchor = evm.SettlementAnchor(
            netuid=4, epoch=1, settlement_hash="ab" * 32, credits_root=root, leaf_count=2
        )
        receipt = await contract.anchor(anchor)
        assert receipt.recorded
        assert receipt.transaction_hash is not None
        events = raw.events.Anchored().process_receipt(
            await w3.eth.get_transaction_receipt(receipt.transaction_hash)  # type: ignore[arg-type]
        )
        assert [dict(e["args"]) for e in events] == [
            {
                "netuid": 4,
                "epoch": 1,
                "settlementHash": bytes.fromhex("ab" * 32),
                "creditsRoot": root,
                "leafCount": 2,
                "anchorer": owner.address,
            }
        ]

        # The same anchor again: a no-op, whether checked first (nothing sent) or sent straight.
        again = await contract.anchor(anchor)
        assert (again.recorded, again.transaction_hash, again.block_number) == (
            False,
            None,
            receipt.block_number,
        )
        same = raw.functions.anchor(4, 1, bytes.fromhex("ab" * 32), root, 2)
        assert await same.call({"from": owner.address}) is False

        # A different anchor for (4, 1) reverts with AnchorConflict naming the recorded one.
        different = raw.functions.anchor(4, 1, bytes.fromhex("cd" * 32), root, 2)
        with pytest.raises(ContractCustomError) as caught:
            await different.call({"from": owner.address})
        selector = "0x" + keccak(text="AnchorConflict(uint16,uint64,bytes32,bytes32)")[:4].hex()
        assert str(caught.value.data).startswith(selector)
        assert "ab" * 32 in str(caught.value.data)
        with pytest.raises(AnchorConflictError):
            await contract.anchor(replace(anchor, settlement_hash="cd" * 32))
        with pytest.raises(AnchorConflictError):
            await contract.anchor(replace(anchor, leaf_count=3))
        empty = raw.functions.anchor(4, 2, bytes(32), root, 2)
        with pytest.raises(ContractCustomError):
            await empty.call({"from": owner.address})

        # Only the owner and the anchorers it allows may anchor.
        stranger = await evm.SettlementsContract.attach(
            w3, address=contract.address, chain_id=CHAIN_ID, account=other
        )
        second = replace(anchor, epoch=2)
        with pytest.raises(EvmUnavailableError, match="NotAuthorized"):
            await stranger.anchor(second)
        with pytest.raises(EvmUnavailableError, match="NotAuthorized"):
            await stranger.set_anchorer(other.address, allowed=True)
        await contract.set_anchorer(other.address, allowed=True)
        assert (await stranger.anchor(second)).recorded
        await contract.set_anchorer(other.address, allowed=False)
        with pytest.raises(EvmUnavailableError, match="NotAuthorized"):
            await stranger.anchor(replace(anchor, epoch=3))
        on_chain = await contract.get_anchor(4, 2)
        assert on_chain is not None
        assert on_chain.anchorer == other.address

        # Attaching checks the chain id and that the code at the address is this build's.
        with pytest.raises(EvmSetupError, match="chain id"):
            await evm.SettlementsContract.attach(w3, address=contract.address, chain_id=1)
        with pytest.raises(EvmSetupError, match="no code"):
            await evm.SettlementsContract.attach(w3, address=other.address, chain_id=CHAIN_ID)
    finally:
        await evm.close(w3)


async def test_anchoring_retries_while_the_node_is_down_and_catches_up(tmp_path: Path) -> None:
    node = AnvilNode(tmp_path / "anvil", port=free_port())
    account: LocalAccount = Account.from_key(evm_dev_key(0))
    async with (
        started_service(tmp_path / "ledger.sqlite3", balances=BALANCES) as service,
        running_anchorer(
            service, store_path=tmp_path / "anchors.sqlite3", url=node.url, account=account
        ) as anchorer,
    ):
        chain = settlements(1, range(1, 3))
        for settlement in chain:
            await settle(service, settlement)  # the ledger acknowledges whatever the EVM node does
        assert service.settlement(1, 2).settlement == chain[1]

        def retried() -> bool:
            first = anchorer.store.get(1, 1)
            return first is not None and first.attempts >= 2

        await until(anchorer, retried)
        rows = anchorer.store.all()
        assert [(r.epoch, r.state) for r in rows] == [(1, AnchorState.PENDING), (2, AnchorState.PENDING)]
        assert rows[0].last_error

        node.start()
        try:
            assert node.private_keys[0].removeprefix("0x") == evm_dev_key(0)
            await until(anchorer, all_anchored(anchorer, 2))
            assert anchorer.contract is not None
            for settlement in chain:
                on_chain = await anchorer.contract.get_anchor(1, settlement.epoch)
                assert on_chain is not None
                assert on_chain.anchor.settlement_hash == settlement.hash
        finally:
            node.stop()


async def test_a_restarted_anchorer_resumes_and_a_lost_state_file_is_rebuilt(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    account = account_of(anvil, 1)
    chain = settlements(1, range(1, 4))
    state = tmp_path / "anchors.sqlite3"
    async with started_service(tmp_path / "ledger.sqlite3", balances=BALANCES) as service:
        async with running_anchorer(service, store_path=state, url=anvil.url, account=account) as first:
            await settle(service, chain[0])
            await until(first, all_anchored(first, 1))
            assert first.contract is not None
            address = first.contract.address
        # Recorded while no anchorer runs: the next one finds them in the ledger.
        await settle(service, chain[1])
        await settle(service, chain[2])
        async with running_anchorer(service, store_path=state, url=anvil.url, account=account) as second:
            await until(second, all_anchored(second, 3))
            assert second.contract is not None
            assert second.contract.address == address  # the deployed contract is reused

        # A lost state file: rebuilt from the ledger, and the contract already holds every anchor.
        w3 = evm.connect(anvil.url)
        try:
            nonce = await w3.eth.get_transaction_count(account.address)
            async with running_anchorer(
                service,
                store_path=tmp_path / "new.sqlite3",
                url=anvil.url,
                account=account,
                contract_address=address,
            ) as third:
                await until(third, all_anchored(third, 3))
                assert [r.transaction_hash for r in third.store.all()] == [None, None, None]
            assert await w3.eth.get_transaction_count(account.address) == nonce
        finally:
            await evm.close(w3)


async def test_a_different_anchor_in_the_contract_is_a_conflict_and_later_ones_still_anchor(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    account = account_of(anvil, 3)
    async with started_service(tmp_path / "a" / "ledger.sqlite3", balances=BALANCES) as first_ledger:
        await settle(first_ledger, settlements(1, range(1, 2))[0])
        async with running_anchorer(
            first_ledger, store_path=tmp_path / "a" / "anchors.sqlite3", url=anvil.url, account=account
        ) as first:
            await until(first, all_anchored(first, 1))
            assert first.contract is not None
            address = first.contract.address
    # Another ledger settles (1, 1) differently into the same contract.
    async with started_service(tmp_path / "b" / "ledger.sqlite3", balances=BALANCES) as other_ledger:
        await settle(other_ledger, settlements(1, range(1, 2), scale=2)[0])
        await settle(other_ledger, settlements(2, range(1, 2))[0])
        async with running_anchorer(
            other_ledger,
            store_path=tmp_path / "b" / "anchors.sqlite3",
            url=anvil.url,
            account=account,
            contract_address=address,
        ) as other:
            await until(other, lambda: states(other).get((2, 1)) == AnchorState.ANCHORED)
            assert states(other) == {(1, 1): AnchorState.CONFLICT, (2, 1): AnchorState.ANCHORED}
            conflict = other.store.get(1, 1)
            assert conflict is not None
            assert conflict.last_error is not None
            assert "anchored with settlement hash" in conflict.last_error


def start_sidecar(env: dict[str, str], *, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kubetensor.chain"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def test_the_sidecar_process_with_the_evm_backend_anchors_what_it_records(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    key_path = anvil.write_key(tmp_path / "anchor.key", index=2)
    state = tmp_path / "anchors.sqlite3"
    ready = tmp_path / "ready.json"
    log_path = tmp_path / "chain.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_CHAIN_")}
    env.update(
        {
            "KT_CHAIN_LISTEN": "127.0.0.1:0",
            "KT_CHAIN_READY_FILE": str(ready),
            "KT_CHAIN_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
            "KT_CHAIN_AUTHORITY_KEY_PATH": str(tmp_path / "authority.key"),
            "KT_CHAIN_GRACE_SECONDS": "1",
            "KT_CHAIN_LOG_LEVEL": "DEBUG",
            "KT_CHAIN_BACKEND": "evm",
            # Credentials in the URL, as hosted RPC endpoints have them: they must not reach the log.
            "KT_CHAIN_EVM_RPC_URL": anvil.url.replace("://", "://user:hidden-password@")
            + "/?apikey=hidden-key",
            "KT_CHAIN_EVM_CHAIN_ID": str(CHAIN_ID),
            "KT_CHAIN_EVM_ANCHOR_KEY_PATH": str(key_path),
            "KT_CHAIN_EVM_STATE_PATH": str(state),
            "KT_CHAIN_EVM_RETRY_INITIAL_SECONDS": "0.05",
            "KT_CHAIN_EVM_RETRY_MAX_SECONDS": "0.5",
        }
    )
    process = start_sidecar(env, log_path=log_path)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not ready.exists():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.05)
        chain = settlements(1, range(1, 3))
        async with ChainClient.connect(json.loads(ready.read_text())["address"], timeout=10) as client:
            for settlement in chain:
                await client.submit_settlement(wire.settlement_to_proto(settlement))

        def progress() -> tuple[str | None, list[str]]:
            with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
                contract = db.execute("SELECT value FROM meta WHERE key = 'contract'").fetchone()
                rows = db.execute("SELECT state FROM anchors ORDER BY epoch").fetchall()
            return (None if contract is None else contract[0]), [row[0] for row in rows]

        while progress()[1] != ["anchored", "anchored"]:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline + WAIT_SECONDS, log_path.read_text()
            await asyncio.sleep(0.05)
        address = progress()[0]
        assert address is not None
        w3 = evm.connect(anvil.url)
        try:
            contract = await evm.SettlementsContract.attach(w3, address=address, chain_id=CHAIN_ID)
            for settlement in chain:
                on_chain = await contract.get_anchor(1, settlement.epoch)
                assert on_chain is not None
                assert on_chain.anchor.settlement_hash == settlement.hash
        finally:
            await evm.close(w3)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    text = log_path.read_text()
    assert "anchored netuid 1 epoch 2" in text
    assert anvil.private_keys[2].removeprefix("0x") not in text
    assert "hidden" not in text
    assert verify_ledger(tmp_path / "ledger.sqlite3").ok


def test_the_committed_bytecode_is_what_the_pinned_compiler_makes_of_the_source() -> None:
    source = artifact.SOURCE_PATH.read_text(encoding="utf-8")
    committed = json.loads(artifact.ARTIFACT_PATH.read_text(encoding="utf-8"))
    root = repo_root()
    assert root is not None
    pinned = json.loads((root / "tools" / "npm" / "solc" / "package.json").read_text())["dependencies"][
        "solc"
    ]
    # One compiler version, written three times: the source's pragma, the npm pin and the artifact.
    assert compiler.pinned_version(source) == pinned == committed["compiler"]["packageVersion"]
    rebuilt = compiler.compile_artifact(source)
    assert rebuilt["sourceSha256"] == committed["sourceSha256"], "Settlements.sol changed: recompile it"
    assert rebuilt["bytecode"] == committed["bytecode"]
    assert rebuilt["deployedBytecode"] == committed["deployedBytecode"]
    assert compiler.render(rebuilt) == artifact.ARTIFACT_PATH.read_text(encoding="utf-8")
    assert artifact.load().deployed_bytecode.hex() == committed["deployedBytecode"].removeprefix("0x")
