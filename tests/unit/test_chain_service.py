"""Unit tests for kubetensor.chain.service and its rules (in process, real SQLite ledger in tmp_path).

Transactions go through ``wire.transaction_from_request`` so the real signing payload is exercised; each
refusal is checked for its category (the gRPC code it maps to) and for changing nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubetensor.chain import client, wire
from kubetensor.chain.economics import CreditReason
from kubetensor.chain.errors import LedgerStateError
from kubetensor.chain.service import ChainService, Receipt, SettlementSubmission
from kubetensor.chain.state import ChainParams
from kubetensor.chain.transactions import AddStake, Signed, SignedTransaction
from kubetensor.chain.verify import verify_ledger
from kubetensor.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from kubetensor.v1 import common_pb2

from tests.chain_support import ONE, TAO, keypair, make_settlement, settle, started_service, transact

COLD = keypair(1)
HOT = keypair(2)
STAKER = keypair(3)
OWNER = keypair(4)
STRANGER = keypair(5)
BALANCES = {COLD.hotkey: 1_000 * TAO, STAKER.hotkey: 500 * TAO}


async def registered(service: ChainService) -> None:
    """COLD owns HOT; OWNER owns subnet 1."""
    await transact(service, client.register_hotkey_request(COLD, HOT, nonce=1))
    await transact(service, client.register_subnet_request(OWNER, netuid=1, nonce=1))


async def test_stake_moves_free_balance_to_the_hotkey_and_back(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        await transact(
            service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=200 * TAO, nonce=1)
        )
        assert service.balance(STAKER.hotkey).free_rao == 300 * TAO
        assert service.balance(STAKER.hotkey).staked_rao == 200 * TAO
        [stake] = service.hotkey_stakes([HOT.hotkey])
        assert (stake.owner, stake.total_rao) == (COLD.hotkey, 200 * TAO)
        await transact(
            service, client.remove_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=50 * TAO, nonce=2)
        )
        assert service.balance(STAKER.hotkey).free_rao == 350 * TAO
        assert [(p.hotkey, p.stake_rao) for p in service.coldkey_stakes(STAKER.hotkey)] == [
            (HOT.hotkey, 150 * TAO)
        ]
        assert service.balance(STAKER.hotkey).nonce == 2
    assert verify_ledger(tmp_path / "ledger").ok


async def test_forged_signature_is_refused_unauthenticated_and_changes_nothing(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        before = service.snapshot()
        forged = client.add_stake_request(STRANGER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)
        forged.coldkey = STAKER.hotkey
        forged.signature.public_key = STAKER.public_key
        with pytest.raises(UnauthenticatedError):
            await transact(service, forged)
        signed_by_other = client.add_stake_request(STRANGER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)
        signed_by_other.coldkey = STAKER.hotkey
        with pytest.raises(UnauthenticatedError, match="signature"):
            await transact(service, signed_by_other)
        tampered = client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)
        tampered.amount_rao = 2 * TAO
        with pytest.raises(UnauthenticatedError):
            await transact(service, tampered)
        assert service.snapshot() == before


async def test_register_hotkey_without_the_hotkey_proof_is_refused(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        request = client.register_hotkey_request(COLD, HOT, nonce=1)
        request.ClearField("hotkey_signature")
        with pytest.raises(InvalidArgumentError, match="hotkey_signature"):
            await transact(service, request)
        # A proof by another key than the hotkey does not count either.
        request = client.register_hotkey_request(COLD, HOT, nonce=1)
        request.hotkey_signature.CopyFrom(
            client.register_hotkey_request(COLD, STRANGER, nonce=1).hotkey_signature
        )
        with pytest.raises(UnauthenticatedError, match="hotkey_signature"):
            await transact(service, request)
        assert service.hotkey_stakes([HOT.hotkey])[0].owner is None


async def test_replayed_or_skipped_nonce_is_refused_failed_precondition(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        first = client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)
        await transact(service, first)
        before = service.snapshot()
        with pytest.raises(FailedPreconditionError, match="nonce"):
            await transact(service, first)
        with pytest.raises(FailedPreconditionError, match="expects nonce 2, got 3"):
            await transact(
                service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=3)
            )
        assert service.snapshot() == before


async def test_overdrawn_balance_or_stake_is_refused_and_keeps_the_nonce(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        before = service.snapshot()
        with pytest.raises(FailedPreconditionError, match="free balance"):
            await transact(
                service,
                client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=500 * TAO + 1, nonce=1),
            )
        with pytest.raises(FailedPreconditionError, match="stake"):
            await transact(
                service, client.remove_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1)
            )
        with pytest.raises(FailedPreconditionError, match="free balance"):
            await transact(
                service, client.add_stake_request(STRANGER, hotkey=HOT.hotkey, amount_rao=1, nonce=1)
            )
        assert service.snapshot() == before
        # The refused nonce 1 is still free to use.
        await transact(
            service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=500 * TAO, nonce=1)
        )


async def test_stake_on_an_unregistered_hotkey_is_refused_not_found(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        with pytest.raises(NotFoundError, match="hotkey"):
            await transact(
                service, client.add_stake_request(STAKER, hotkey=STRANGER.hotkey, amount_rao=1, nonce=1)
            )


@pytest.mark.parametrize(
    ("amount", "field"),
    [(0, "amount_rao"), (-1, "amount_rao"), (1 << 63, "amount_rao"), ((1 << 64) - 1, "amount_rao")],
)
async def test_out_of_range_amounts_are_refused_naming_the_field(
    tmp_path: Path, amount: int, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        AddStake(coldkey=STAKER.hotkey, nonce=1, hotkey=HOT.hotkey, amount_rao=amount)
    assert caught.value.field == field  # type: ignore[attr-defined]


async def test_malformed_wire_fields_are_refused_naming_the_field(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        cases = {
            "coldkey": client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1),
            "hotkey": client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1),
            "nonce": client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=0),
            "signature.signature": client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1),
            "signature": client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1),
        }
        cases["coldkey"].coldkey = "zz"
        cases["hotkey"].hotkey = "ab" * 31
        cases["signature.signature"].signature.signature = b"\x00" * 10
        cases["signature"].ClearField("signature")
        for field, request in cases.items():
            with pytest.raises(InvalidArgumentError) as caught:
                await transact(service, request)
            assert caught.value.field == field  # type: ignore[attr-defined]


async def test_register_hotkey_twice_is_refused_already_exists(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        with pytest.raises(AlreadyExistsError, match="already registered"):
            await transact(service, client.register_hotkey_request(STRANGER, HOT, nonce=1))
        with pytest.raises(AlreadyExistsError, match="already owned"):
            await transact(service, client.register_subnet_request(STRANGER, netuid=1, nonce=1))


async def test_set_delegate_take_by_another_coldkey_is_refused_permission_denied(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        with pytest.raises(PermissionDeniedError):
            await transact(
                service, client.set_delegate_take_request(STRANGER, hotkey=HOT.hotkey, take=0, nonce=1)
            )
        with pytest.raises(InvalidArgumentError, match="at most 11796"):
            await transact(
                service, client.set_delegate_take_request(COLD, hotkey=HOT.hotkey, take=11_797, nonce=2)
            )
        await transact(service, client.set_delegate_take_request(COLD, hotkey=HOT.hotkey, take=0, nonce=2))
        assert service.hotkey_stakes([HOT.hotkey])[0].take == 0


async def test_settlement_credits_follow_the_take_and_stake(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        await transact(
            service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=300 * TAO, nonce=1)
        )
        await transact(
            service, client.add_stake_request(COLD, hotkey=HOT.hotkey, amount_rao=100 * TAO, nonce=2)
        )
        await transact(
            service, client.set_delegate_take_request(COLD, hotkey=HOT.hotkey, take=6_553, nonce=3)
        )
        emission = 65_535 * 1_000
        before = {key.hotkey: service.balance(key.hotkey).free_rao for key in (COLD, STAKER, OWNER)}
        await settle(service, make_settlement(entries=[(HOT.hotkey, 0, ONE, emission)]))
        recorded = service.settlement(1, 1)
        cut = emission * 11_796 // 65_535
        take = (emission - cut) * 6_553 // 65_535
        rest = emission - cut - take
        gained = {
            key.hotkey: service.balance(key.hotkey).free_rao - before[key.hotkey]
            for key in (COLD, STAKER, OWNER)
        }
        assert gained == {
            OWNER.hotkey: cut,
            STAKER.hotkey: rest * 3 // 4,
            COLD.hotkey: take + rest - rest * 3 // 4,
        }
        assert sum(credit.amount_rao for credit in recorded.credits) == emission
        assert {credit.reason for credit in recorded.credits} == {
            CreditReason.OWNER_CUT,
            CreditReason.TAKE,
            CreditReason.DIVIDEND,
        }
        assert service.info().issuance_rao == 1_500 * TAO + emission
    assert verify_ledger(tmp_path / "ledger").ok


async def test_same_settlement_again_returns_the_original_receipt(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        settlement = make_settlement(entries=[(HOT.hotkey, ONE, 0, 1_000)])
        first = await service.submit_settlement(SettlementSubmission(settlement))
        await transact(service, client.register_hotkey_request(COLD, HOT, nonce=1))
        again = await service.submit_settlement(SettlementSubmission(settlement))
        assert again == first == Receipt(block=first.block, settlement_hash=settlement.hash)
        # Concurrent duplicates are recorded once too.
        second = make_settlement(epoch=2, previous_hash=settlement.hash, entries=[(HOT.hotkey, ONE, 0, 5)])
        receipts = await asyncio.gather(
            *(service.submit_settlement(SettlementSubmission(second)) for _ in range(5))
        )
        assert len(set(receipts)) == 1
        assert service.info().issuance_rao == 1_500 * TAO + 1_005
    report = verify_ledger(tmp_path / "ledger")
    assert (report.ok, report.settlements) == (True, 2)


async def test_different_settlement_for_a_recorded_epoch_is_refused_already_exists(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await settle(service, make_settlement(entries=[(HOT.hotkey, ONE, 0, 1_000)]))
        before = service.snapshot()
        with pytest.raises(AlreadyExistsError, match="epoch 1"):
            await settle(service, make_settlement(entries=[(HOT.hotkey, ONE, 0, 1_001)]))
        assert service.snapshot() == before


async def test_settlement_out_of_order_or_unlinked_is_refused_failed_precondition(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        first = make_settlement(epoch=4, entries=[(HOT.hotkey, ONE, 0, 10)])
        await settle(service, first)  # a subnet's first recorded epoch may be any
        with pytest.raises(FailedPreconditionError, match="next must be 5"):
            await settle(service, make_settlement(epoch=6, previous_hash=first.hash, entries=[]))
        with pytest.raises(FailedPreconditionError, match="previous_hash"):
            await settle(service, make_settlement(epoch=5, previous_hash="0" * 64, entries=[]))
        await settle(service, make_settlement(epoch=5, previous_hash=first.hash, entries=[]))
        # Other subnets are independent.
        await settle(service, make_settlement(netuid=2, epoch=1, entries=[(HOT.hotkey, ONE, 0, 10)]))
        assert [r.settlement.epoch for r in service.settlements(1, start_epoch=0, limit=10)] == [4, 5]
        assert [r.settlement.epoch for r in service.settlements(1, start_epoch=5, limit=10)] == [5]


async def test_settlement_signers_require_a_valid_signature(tmp_path: Path) -> None:
    signer = keypair(40)
    async with started_service(
        tmp_path / "ledger", balances=BALANCES, settlement_signers=[signer.hotkey]
    ) as service:
        settlement = make_settlement(entries=[(HOT.hotkey, ONE, 0, 10)])
        message = wire.settlement_to_proto(settlement)
        with pytest.raises(UnauthenticatedError):
            await service.submit_settlement(
                wire.submission_from_request(client.submit_settlement_request(message))
            )
        by_stranger = client.submit_settlement_request(message, signer=STRANGER)
        with pytest.raises(PermissionDeniedError):
            await service.submit_settlement(wire.submission_from_request(by_stranger))
        forged = client.submit_settlement_request(message, signer=STRANGER)
        forged.signature.public_key = signer.public_key
        with pytest.raises(UnauthenticatedError):
            await service.submit_settlement(wire.submission_from_request(forged))
        signed = client.submit_settlement_request(message, signer=signer)
        await service.submit_settlement(wire.submission_from_request(signed))
        assert service.info().issuance_rao == 1_500 * TAO + 10
    assert verify_ledger(tmp_path / "ledger").ok


async def test_concurrent_transactions_share_one_block(tmp_path: Path) -> None:
    keys = [keypair(100 + i) for i in range(20)]
    balances = {key.hotkey: TAO for key in keys}
    async with started_service(tmp_path / "ledger", balances=balances) as service:
        await transact(service, client.register_hotkey_request(COLD, HOT, nonce=1))
        receipts = await asyncio.gather(
            *(
                transact(service, client.add_stake_request(k, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1))
                for k in keys
            )
        )
        assert len({receipt.block for receipt in receipts}) < len(keys)
        assert service.hotkey_stakes([HOT.hotkey])[0].total_rao == 20 * TAO
    assert verify_ledger(tmp_path / "ledger").ok


async def test_settlement_and_stake_in_one_block_replay_in_the_recorded_order(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        # Queued before the stake, but in the block the stake comes first (transactions, then settlements).
        settlement = make_settlement(entries=[(HOT.hotkey, 0, ONE, 1_000_000)])
        receipts = await asyncio.gather(
            service.submit_settlement(SettlementSubmission(settlement)),
            transact(service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)),
        )
        assert receipts[0].block == receipts[1].block
        assert any(c.account == STAKER.hotkey for c in service.settlement(1, 1).credits)
    report = verify_ledger(tmp_path / "ledger")
    assert report.ok, report.summary


async def test_reopened_ledger_resumes_with_the_committed_state(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES) as service:
        await registered(service)
        await transact(service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1))
        await settle(service, make_settlement(entries=[(HOT.hotkey, ONE, ONE, 12_345)]))
        before = service.snapshot()
    async with started_service(tmp_path / "ledger", balances={STRANGER.hotkey: 1}) as service:
        assert service.snapshot() == before
        assert service.balance(STRANGER.hotkey).free_rao == 0  # genesis is fixed once
        await transact(service, client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=2))


async def test_ledger_signed_by_another_authority_is_refused(tmp_path: Path) -> None:
    async with started_service(tmp_path / "ledger", balances=BALANCES):
        pass
    with pytest.raises(LedgerStateError, match="authority"):
        ChainService.open(ledger_path=tmp_path / "ledger", authority=keypair(77))


async def test_genesis_parameters_fix_the_economics(tmp_path: Path) -> None:
    params = ChainParams(owner_cut=0, default_take=0, max_take=100)
    async with started_service(tmp_path / "ledger", balances=BALANCES, params=params) as service:
        await registered(service)
        await settle(service, make_settlement(entries=[(HOT.hotkey, 0, ONE, 1_000)]))
        assert [(c.account, c.amount_rao) for c in service.settlement(1, 1).credits] == [(COLD.hotkey, 1_000)]
    async with started_service(tmp_path / "ledger") as service:  # default params given: genesis wins
        await settle(
            service,
            make_settlement(
                epoch=2,
                previous_hash=service.settlement(1, 1).settlement.hash,
                entries=[(HOT.hotkey, 0, ONE, 10)],
            ),
        )
        assert [c.amount_rao for c in service.settlement(1, 2).credits] == [10]


def test_signed_transaction_hash_covers_the_signed_bytes() -> None:
    request = client.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=1, nonce=1)
    signed = wire.transaction_from_request(request)
    other = SignedTransaction(
        tx=signed.tx, payload=signed.payload + b"\x00", signature=Signed(STAKER.public_key, b"\x00" * 64)
    )
    assert signed.hash != other.hash
    assert isinstance(request.signature, common_pb2.Signature)
