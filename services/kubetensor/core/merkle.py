"""A sha256 Merkle tree over byte strings: one root for many items, a short proof for each.

Pure (no I/O). The validator signs one round envelope per round that commits, through this tree's root,
to every miner's task leaf (``validator.taskclient``); each miner checks its own leaf's proof against the
signed root (``miner.service``). The chain's settlement tree (``chain.evm.merkle``) is a different one:
keccak256 and the Solidity contract's encoding; services do not import each other, so this one lives in
core.

**Hashing** is domain-separated, so no leaf can pass for an inner node or the other way round::

    leaf hash = sha256(0x00 || item bytes)
    node hash = sha256(0x01 || min(a, b) || max(a, b))

**Tree.** Sorted pairs, so a proof is the list of sibling hashes, bottom up, with no left/right bits.
Each level pairs neighbours left to right; an odd last node moves up unchanged (never paired with
itself) and contributes no proof element at that level. One item: the root is its leaf hash. There is
no tree over no items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_LEAF = b"\x00"
_NODE = b"\x01"
MAX_PROOF = 32
"""The longest proof accepted: a tree of up to 2**32 leaves."""


def leaf_hash(item: bytes) -> bytes:
    """The 32-byte leaf hash of ``item``."""
    return hashlib.sha256(_LEAF + item).digest()


def node_hash(a: bytes, b: bytes) -> bytes:
    """An inner node over two children, the smaller first."""
    return hashlib.sha256(_NODE + a + b if a < b else _NODE + b + a).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def tree(items: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """The root over ``items`` and every item's proof, in order (ValueError for no items)."""
    levels = _levels([leaf_hash(item) for item in items])
    proofs: list[tuple[bytes, ...]] = []
    for index in range(len(items)):
        proof: list[bytes] = []
        position = index
        for level in levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            position //= 2
        proofs.append(tuple(proof))
    return levels[-1][0], proofs


def root(items: Sequence[bytes]) -> bytes:
    """The root over ``items`` (ValueError for no items)."""
    return _levels([leaf_hash(item) for item in items])[-1][0]


def verify(root_hash: bytes, item: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` leads from ``item``'s leaf hash to ``root_hash``."""
    if len(proof) > MAX_PROOF:
        return False
    node = leaf_hash(item)
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = node_hash(node, sibling)
    return node == root_hash
