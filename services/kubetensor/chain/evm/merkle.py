"""The Merkle tree of a settlement's per-hotkey credits, as ``Settlements.sol`` checks it on-chain.

Pure (no I/O). Called by ``anchorer`` (the root it anchors), by ``contract`` (proofs it submits to the
contract's ``verifyCredit`` view) and by anyone holding a settlement who wants to prove one hotkey's
credit. The contract's header comment states the same definition; ``tests/unit/test_chain_merkle.py``
pins both.

**Leaves.** One per settlement entry, in uid order (the order the settlement keeps them). A hotkey's
credit is the rao the settlement credited because of that entry: owner cut, incentive, take and
dividends together, which ``economics`` makes exactly the entry's ``emission_rao`` (0 for an entry
that earned nothing; it still has a leaf)::

    leaf = keccak256(abi.encode(LEAF_DOMAIN, uint16 netuid, uint64 epoch, uint16 uid,
                                bytes32 hotkey, uint64 amount_rao))
    LEAF_DOMAIN = keccak256("kubetensor.credit/v1")

``abi.encode`` of these static values is six 32-byte big-endian words, so a leaf hashes 192 bytes and
an inner node 64: no leaf preimage is ever an inner node's. The netuid and epoch in every leaf tie a
proof to one settlement.

**Tree.** Sorted pairs (as OpenZeppelin's ``MerkleProof``): ``node = keccak256(min(a, b) || max(a, b))``,
so a proof is just the list of siblings, bottom up, with no left/right bits. Each level pairs
neighbours left to right; an odd last node moves up unchanged (it is never paired with itself) and
contributes no proof element at that level. One leaf: the root is the leaf. No leaves: the root is
32 zero bytes and no proof verifies against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_utils.crypto import keccak

from kubetensor.chain.economics import Credit
from kubetensor.core.settlement import Settlement

LEAF_DOMAIN = keccak(b"kubetensor.credit/v1")
EMPTY_ROOT = bytes(32)
_U16 = (1 << 16) - 1
_U64 = (1 << 64) - 1


def _word(value: int, *, bits: int) -> bytes:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{value} does not fit uint{bits}")
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class HotkeyCredit:
    """One hotkey's credit in one settlement: the contents of a leaf."""

    netuid: int
    epoch: int
    uid: int
    hotkey: str
    """Hex ed25519 public key (64 characters): the leaf's ``bytes32 hotkey``."""
    amount_rao: int

    def leaf(self) -> bytes:
        """The 32-byte leaf hash (see the module doc)."""
        hotkey = bytes.fromhex(self.hotkey)
        if len(hotkey) != 32:
            raise ValueError(f"hotkey {self.hotkey[:80]!r} is not 32 bytes of hex")
        return keccak(
            LEAF_DOMAIN
            + _word(self.netuid, bits=16)
            + _word(self.epoch, bits=64)
            + _word(self.uid, bits=16)
            + hotkey
            + _word(self.amount_rao, bits=64)
        )


def hash_pair(a: bytes, b: bytes) -> bytes:
    """An inner node: keccak256 of the two children, smaller first."""
    return keccak(a + b) if a < b else keccak(b + a)


def hotkey_credits(
    settlement: Settlement, credits: Iterable[Credit] | None = None
) -> tuple[HotkeyCredit, ...]:
    """The leaves' contents of ``settlement``, in uid order.

    With ``credits`` (the ledger's record of what the settlement paid), each hotkey's amount is checked
    against them: ValueError if the credits of an entry do not add up to its ``emission_rao`` or name a
    uid the settlement does not have.
    """
    leaves = tuple(
        HotkeyCredit(
            netuid=settlement.netuid,
            epoch=settlement.epoch,
            uid=entry.uid,
            hotkey=entry.hotkey,
            amount_rao=entry.emission_rao,
        )
        for entry in settlement.entries
    )
    if credits is not None:
        paid: dict[tuple[int, str], int] = {}
        for credit in credits:
            key = (credit.uid, credit.hotkey)
            paid[key] = paid.get(key, 0) + credit.amount_rao
        for leaf in leaves:
            got = paid.pop((leaf.uid, leaf.hotkey), 0)
            if got != leaf.amount_rao:
                raise ValueError(
                    f"uid {leaf.uid}: credits add up to {got} rao, the entry emits {leaf.amount_rao}"
                )
        if paid:
            raise ValueError(f"credits name entries the settlement does not have: {sorted(paid)[:3]}")
    return leaves


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [hash_pair(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (``EMPTY_ROOT`` for none)."""
    if not leaves:
        return EMPTY_ROOT
    return _levels(leaves)[-1][0]


def proof_of(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The siblings from leaf ``index`` up to the root (IndexError if there is no such leaf)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    proof: list[bytes] = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return tuple(proof)


def verify(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` leads from ``leaf`` to ``root`` (what the contract's ``verify`` computes)."""
    if root == EMPTY_ROOT:
        return False
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


@dataclass(frozen=True)
class CreditProof:
    """One hotkey's credit in a settlement and the proof that it is under the settlement's root."""

    credit: HotkeyCredit
    proof: tuple[bytes, ...]
    root: bytes

    def verify(self) -> bool:
        """Check the proof in Python (the contract's ``verifyCredit`` checks it against the anchor)."""
        return verify(self.root, self.credit.leaf(), self.proof)


@dataclass(frozen=True)
class CreditTree:
    """The tree over a settlement's per-hotkey credits."""

    credits: tuple[HotkeyCredit, ...]
    leaves: tuple[bytes, ...]
    root: bytes

    @classmethod
    def of(cls, settlement: Settlement, credits: Iterable[Credit] | None = None) -> CreditTree:
        """The tree of ``settlement`` (``credits``, if given, are checked as ``hotkey_credits`` does)."""
        contents = hotkey_credits(settlement, credits)
        leaves = tuple(credit.leaf() for credit in contents)
        return cls(credits=contents, leaves=leaves, root=root_of(leaves))

    @property
    def leaf_count(self) -> int:
        return len(self.leaves)

    def prove(self, hotkey: str) -> CreditProof:
        """The proof of ``hotkey``'s credit (KeyError if the settlement has no entry for it)."""
        for index, credit in enumerate(self.credits):
            if credit.hotkey == hotkey:
                return CreditProof(credit=credit, proof=proof_of(self.leaves, index), root=self.root)
        raise KeyError(f"hotkey {hotkey[:16]}... has no entry in this settlement")
