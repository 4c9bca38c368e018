"""Unit tests for kubetensor.chain.evm.merkle: leaf encoding, the sorted-pair tree, proofs and tampering."""

from __future__ import annotations

import random

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from kubetensor.chain.economics import Credit, CreditReason, HotkeyTerms, distribute
from kubetensor.chain.evm import merkle
from kubetensor.chain.evm.merkle import CreditTree, HotkeyCredit
from kubetensor.core.settlement import Settlement

from tests.chain_support import ONE, keypair, make_settlement


def leaves(count: int) -> list[bytes]:
    return [keccak(f"leaf {i}".encode()) for i in range(count)]


def test_leaf_is_keccak_of_the_abi_encoding_with_the_domain_first() -> None:
    credit = HotkeyCredit(netuid=7, epoch=123_456, uid=3, hotkey="ab" * 32, amount_rao=(1 << 63) - 1)
    expected = keccak(
        encode(
            ["bytes32", "uint16", "uint64", "uint16", "bytes32", "uint64"],
            [keccak(b"kubetensor.credit/v1"), 7, 123_456, 3, bytes.fromhex("ab" * 32), (1 << 63) - 1],
        )
    )
    assert credit.leaf() == expected


def test_leaf_binds_netuid_epoch_uid_and_amount() -> None:
    base = HotkeyCredit(netuid=1, epoch=1, uid=0, hotkey="cd" * 32, amount_rao=10)
    variants = [
        HotkeyCredit(netuid=2, epoch=1, uid=0, hotkey="cd" * 32, amount_rao=10),
        HotkeyCredit(netuid=1, epoch=2, uid=0, hotkey="cd" * 32, amount_rao=10),
        HotkeyCredit(netuid=1, epoch=1, uid=1, hotkey="cd" * 32, amount_rao=10),
        HotkeyCredit(netuid=1, epoch=1, uid=0, hotkey="ce" * 32, amount_rao=10),
        HotkeyCredit(netuid=1, epoch=1, uid=0, hotkey="cd" * 32, amount_rao=11),
    ]
    assert len({base.leaf(), *(v.leaf() for v in variants)}) == 6


def test_leaf_refuses_values_that_do_not_fit_their_solidity_types() -> None:
    with pytest.raises(ValueError, match="uint16"):
        HotkeyCredit(netuid=1 << 16, epoch=1, uid=0, hotkey="cd" * 32, amount_rao=1).leaf()
    with pytest.raises(ValueError, match="32 bytes"):
        HotkeyCredit(netuid=1, epoch=1, uid=0, hotkey="cd" * 31, amount_rao=1).leaf()


def test_inner_nodes_hash_the_sorted_pair() -> None:
    a, b = sorted(leaves(2))
    assert merkle.hash_pair(a, b) == merkle.hash_pair(b, a) == keccak(a + b)


def test_one_leaf_is_its_own_root_with_an_empty_proof() -> None:
    (leaf,) = leaves(1)
    assert merkle.root_of([leaf]) == leaf
    assert merkle.proof_of([leaf], 0) == ()
    assert merkle.verify(leaf, leaf, ())


def test_an_empty_tree_has_the_zero_root_and_nothing_verifies_against_it() -> None:
    assert merkle.root_of([]) == merkle.EMPTY_ROOT
    assert not merkle.verify(merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, ())


def test_an_odd_last_node_moves_up_unpaired() -> None:
    a, b, c = leaves(3)
    assert merkle.root_of([a, b, c]) == merkle.hash_pair(merkle.hash_pair(a, b), c)
    assert merkle.proof_of([a, b, c], 2) == (merkle.hash_pair(a, b),)


@pytest.mark.parametrize("count", [*range(1, 18), 33, 100])
def test_every_leaf_proves_membership_for_any_tree_size(count: int) -> None:
    items = leaves(count)
    root = merkle.root_of(items)
    for index, leaf in enumerate(items):
        proof = merkle.proof_of(items, index)
        assert len(proof) <= max(1, count - 1).bit_length()
        assert merkle.verify(root, leaf, proof)


def test_a_tampered_leaf_or_proof_does_not_verify() -> None:
    rng = random.Random(7)
    items = leaves(13)
    root = merkle.root_of(items)
    for index, leaf in enumerate(items):
        proof = list(merkle.proof_of(items, index))
        assert not merkle.verify(root, keccak(leaf), proof)
        assert not merkle.verify(root, items[(index + 1) % 13], proof)
        position = rng.randrange(len(proof))
        flipped = bytearray(proof[position])
        flipped[rng.randrange(32)] ^= 1 << rng.randrange(8)
        assert not merkle.verify(root, leaf, [*proof[:position], bytes(flipped), *proof[position + 1 :]])
        assert not merkle.verify(root, leaf, proof[:-1])


def test_proof_of_a_missing_leaf_is_an_index_error() -> None:
    with pytest.raises(IndexError):
        merkle.proof_of(leaves(3), 3)


def settlement_and_credits() -> tuple[Settlement, tuple[Credit, ...]]:
    hotkeys = [keypair(i).hotkey for i in range(5)]
    settlement = make_settlement(
        netuid=3,
        epoch=9,
        entries=[(hotkey, ONE // (i + 1), ONE // 3, 1_000_003 * (i + 1)) for i, hotkey in enumerate(hotkeys)]
        + [(keypair(9).hotkey, 0, 0, 0)],
    )
    credits = distribute(
        settlement,
        terms={hotkeys[0]: HotkeyTerms(owner=keypair(20).hotkey, stakers=((keypair(21).hotkey, 5),))},
        subnet_owner=keypair(30).hotkey,
    )
    return settlement, credits


def test_a_settlements_tree_has_one_leaf_per_entry_with_its_credited_rao() -> None:
    settlement, credits = settlement_and_credits()
    tree = CreditTree.of(settlement, credits)
    assert tree.leaf_count == 6
    assert [c.amount_rao for c in tree.credits] == [e.emission_rao for e in settlement.entries]
    assert tree.root == CreditTree.of(settlement).root
    for credit in tree.credits:
        proof = tree.prove(credit.hotkey)
        assert proof.verify()
        assert proof.credit == credit
    with pytest.raises(KeyError):
        tree.prove(keypair(99).hotkey)


def test_credits_that_disagree_with_the_entries_are_refused() -> None:
    settlement, credits = settlement_and_credits()
    first = credits[0]
    short = (
        Credit(
            account=first.account,
            amount_rao=first.amount_rao - 1,
            reason=first.reason,
            hotkey=first.hotkey,
            uid=first.uid,
        ),
        *credits[1:],
    )
    with pytest.raises(ValueError, match="uid 0"):
        CreditTree.of(settlement, short)
    stray = (
        *credits,
        Credit(account="ab" * 32, amount_rao=1, reason=CreditReason.TAKE, hotkey="ab" * 32, uid=40),
    )
    with pytest.raises(ValueError, match="does not have"):
        CreditTree.of(settlement, stray)


def test_a_proof_from_one_epoch_does_not_verify_against_another() -> None:
    hotkeys = [keypair(i).hotkey for i in range(4)]
    one = CreditTree.of(make_settlement(epoch=1, entries=[(h, ONE, 0, 100) for h in hotkeys]))
    two = CreditTree.of(make_settlement(epoch=2, entries=[(h, ONE, 0, 100) for h in hotkeys]))
    proof = one.prove(hotkeys[2])
    assert proof.verify()
    assert not merkle.verify(two.root, proof.credit.leaf(), proof.proof)
