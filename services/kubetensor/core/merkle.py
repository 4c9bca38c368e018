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

**Implementations.** ``tree`` and ``verify`` run in ``kubetensor_native`` (Rust, the sha2 crate) when it
is installed, as ``kubetensor.core.keys`` does for ed25519: every miner checks a proof per task and the
validator builds a tree per round. The Python functions here (``python_tree``, ``python_verify``) are the
specification and the fallback; tests/unit/test_merkle.py runs every case on both, and
tests/unit/test_native_merkle.py compares them on random trees.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Final

try:
    import kubetensor_native as _native
except ModuleNotFoundError as missing:  # kubetensor.core.keys says so once
    if missing.name != "kubetensor_native":
        raise
    _native = None  # type: ignore[assignment]
else:
    if not (hasattr(_native, "merkle_tree") and hasattr(_native, "merkle_verify")):
        # A module built from older sources (before the tree moved there): the Python code still works.
        logging.getLogger(__name__).warning(
            "the installed kubetensor_native has no Merkle tree (it was built from older sources): "
            "falling back to Python; `make venv` rebuilds it"
        )
        _native = None  # type: ignore[assignment]

_LEAF = b"\x00"
_NODE = b"\x01"
MAX_PROOF = 32
"""The longest proof accepted: a tree of up to 2**32 leaves."""
BACKEND: Final = "python" if _native is None else "native"
"""Which implementation ``tree`` and ``verify`` use in this process: ``"native"`` or ``"python"``."""


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
    if _native is not None:
        return _native.merkle_tree(items)
    return python_tree(items)


def python_tree(items: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """``tree`` in Python (the specification; the fallback without ``kubetensor_native``)."""
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
    if _native is not None:
        return _native.merkle_verify(root_hash, item, proof)
    return python_verify(root_hash, item, proof)


def python_verify(root_hash: bytes, item: bytes, proof: Sequence[bytes]) -> bool:
    """``verify`` in Python (the specification; the fallback without ``kubetensor_native``)."""
    if len(proof) > MAX_PROOF:
        return False
    node = leaf_hash(item)
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = node_hash(node, sibling)
    return node == root_hash
