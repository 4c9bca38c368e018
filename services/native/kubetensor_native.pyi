"""ed25519 signing and (batch) verification on ed25519-dalek, with libsodium's (PyNaCl's) verdicts, and
the round's sha256 Merkle tree (``merkle_tree``, ``merkle_verify``: ``kubetensor.core.merkle``'s
``python_tree`` and ``python_verify``, which specify them).

Built from ``services/native`` (Rust, pyo3) by ``make venv`` and the Dockerfile; ``kubetensor.core.keys``
uses it and falls back to PyNaCl when it is not installed.

``verify`` refuses what libsodium's ``crypto_sign_verify_detached`` refuses: keys and signatures of the
wrong length, non-canonical or small-order public keys, small-order R, non-canonical S; it checks the
cofactorless equation on encodings, as libsodium does. ``verify_batch`` agrees with it on every item
except one its own signer built with a small-order (torsion) component in the key or R: ``verify``
refuses it, the batch's cofactorless random linear combination can accept it (it still proves that the
holder of the secret key signed). ``SigningKey.sign`` is RFC 8032's deterministic signature, byte for
byte libsodium's.
"""

from collections.abc import Sequence

class SigningKey:
    """An ed25519 signing key made from its 32-byte seed (ValueError naming the length otherwise)."""

    def __init__(self, seed: bytes) -> None: ...
    @property
    def public_key(self) -> bytes:
        """The 32-byte public key."""

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""

def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message``; False otherwise."""

def verify_batch(
    public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
) -> list[bool]:
    """``verify`` of each item, in order, as batch verifications of 16 (those of a failing batch alone).

    Bad items are False without failing the others; ValueError when the lengths of the lists differ.
    The GIL is released while it runs.
    """

def merkle_tree(items: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """The root over ``items`` and every item's proof, in order; ValueError for no items."""

def merkle_verify(root: bytes, item: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` leads from ``item``'s leaf hash to ``root`` (False for a proof longer than 32
    or a sibling that is not 32 bytes)."""
