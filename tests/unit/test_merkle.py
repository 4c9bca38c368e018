"""``kubetensor.core.merkle``: roots and proofs of every tree shape, and what a proof must not prove.

Every case runs on both implementations: ``kubetensor_native``'s (what a process with it uses) and the
Python one (the specification, and the fallback); tests/unit/test_native_merkle.py compares the two on
random trees and on random damage to their proofs."""

from __future__ import annotations

import hashlib

import pytest
from kubetensor.core import merkle


@pytest.fixture(autouse=True, params=["native", "python"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(merkle, "_native", None)
    elif merkle._native is None:
        pytest.skip("kubetensor_native is not installed (make venv builds it)")
    return str(request.param)


def items(count: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 64, 65])
def test_every_item_proves_against_the_root(count: int) -> None:
    root, proofs = merkle.tree(items(count))
    assert root == merkle.root(items(count))
    for item, proof in zip(items(count), proofs, strict=True):
        assert merkle.verify(root, item, proof)
        # A proof is at most the tree's height.
        assert len(proof) <= max(count - 1, 0).bit_length()


def test_one_item_is_its_own_root() -> None:
    root, proofs = merkle.tree([b"only"])
    assert root == hashlib.sha256(b"\x00only").digest()
    assert proofs == [()]


def test_no_items_have_no_tree() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merkle.tree([])


@pytest.mark.parametrize("count", [2, 5, 64])
def test_a_proof_proves_nothing_but_its_own_item(count: int) -> None:
    root, proofs = merkle.tree(items(count))
    assert not merkle.verify(root, b"leaf-x", proofs[0])
    assert not merkle.verify(root, items(count)[1], proofs[0])
    other_root = merkle.root(items(count + 1))
    assert not merkle.verify(other_root, items(count)[0], proofs[0])


def test_an_inner_node_cannot_pass_for_an_item() -> None:
    # Four items: the node over items 0 and 1 is the sibling of the node over items 2 and 3. Presenting
    # the concatenated children of the first as an "item", with the second as its proof, must fail: leaf
    # and node hashes are domain-separated.
    leaves = [merkle.leaf_hash(item) for item in items(4)]
    root = merkle.root(items(4))
    left, right = sorted(leaves[:2])
    upper = merkle.node_hash(leaves[2], leaves[3])
    assert merkle.node_hash(merkle.node_hash(left, right), upper) == root
    assert not merkle.verify(root, left + right, [upper])


def test_malformed_or_overlong_proofs_are_refused() -> None:
    root, proofs = merkle.tree(items(4))
    assert not merkle.verify(root, items(4)[0], [proofs[0][0][:31], proofs[0][1]])
    assert not merkle.verify(root, items(4)[0], list(proofs[0]) + [bytes(32)] * merkle.MAX_PROOF)


def test_a_proof_must_be_a_sequence_of_bytes() -> None:
    root, _ = merkle.tree(items(2))
    with pytest.raises(TypeError):
        merkle.verify(root, items(2)[0], [123])  # type: ignore[list-item]
