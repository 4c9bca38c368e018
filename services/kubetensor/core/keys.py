"""ed25519 hotkeys and coldkeys: generation, signing and verification over canonical bytes.

Every message that moves stake, weights or money is signed. What is signed is never the raw wire
bytes of a message but ``signing_bytes(domain, payload)``: a fixed prefix, the message's domain
(``"SetWeights"``, ``"RoundEnvelope"``, ...) and its deterministic serialization with the signature field
cleared. The domain stops a signature made for one kind of message from being replayed as another;
nonces (checked by each service) stop it from being replayed as the same kind.

The ed25519 work runs in ``kubetensor_native`` (Rust, ed25519-dalek; built from ``services/native`` by
``make venv`` and the Dockerfile) when it is installed, else in PyNaCl (libsodium), with one warning at
import. Both give the same signatures (RFC 8032 is deterministic) and the same verdicts: the native
``verify`` refuses what libsodium refuses (small-order keys and R, non-canonical keys and S) and checks
the same cofactorless equation (tests/unit/test_native_ed25519.py compares them case by case). The one
difference is ``verify_many``'s batch check on signatures built with a small-order component by their
own signer (see ``kubetensor_native.verify_batch``); every other check here is ``verify``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from kubetensor.core.errors import InvalidArgumentError

try:
    import kubetensor_native
except ModuleNotFoundError as missing:
    if missing.name != "kubetensor_native":
        raise
    kubetensor_native = None  # type: ignore[assignment]
    logging.getLogger(__name__).warning(
        "the kubetensor_native module is not installed: ed25519 signing and verification fall back to "
        "PyNaCl (slower); `make venv` builds it from services/native (needs Rust's cargo)"
    )

BACKEND: Final = "pynacl" if kubetensor_native is None else "native"
"""Which implementation signs and verifies in this process: ``"native"`` or ``"pynacl"``."""

_PREFIX = b"kubetensor/v1\x00"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def signing_bytes(domain: str, payload: bytes) -> bytes:
    """The exact bytes a signature covers for a message of ``domain`` serialized as ``payload``."""
    return _PREFIX + domain.encode() + b"\x00" + payload


class _Signer(Protocol):
    """What a keypair signs with: ``kubetensor_native.SigningKey`` or ``_NaclSigner``."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class _NaclSigner:
    """PyNaCl's signing key behind the native ``SigningKey``'s interface (the fallback)."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


@dataclass(frozen=True)
class Keypair:
    """An ed25519 key pair. ``hotkey`` (the hex public key) is how the network names it.

    The signing key and the public key are derived from the seed once per instance and kept (a
    derivation costs about as much as a signature, and miners and validators sign every message).
    """

    seed: bytes

    @classmethod
    def generate(cls) -> Keypair:
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> Keypair:
        seed = bytes.fromhex(seed_hex)
        if len(seed) != 32:
            raise ValueError(f"an ed25519 seed is 32 bytes (64 hex characters), got {len(seed)} bytes")
        return cls(seed)

    @cached_property
    def _signing_key(self) -> _Signer:
        if kubetensor_native is not None:
            return kubetensor_native.SigningKey(self.seed)
        return _NaclSigner(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return self._signing_key.public_key

    @cached_property
    def hotkey(self) -> str:
        return self.public_key.hex()

    def sign(self, domain: str, payload: bytes) -> bytes:
        return self._signing_key.sign(signing_bytes(domain, payload))

    def derive_secret(self, purpose: str, *, size: int = 16) -> bytes:
        """``size`` bytes (16 to 64) that only a holder of this keypair's seed can compute, one value per
        ``purpose``: BLAKE2b keyed with the seed, over the purpose (a pseudorandom function of it: the
        hotkey and the values for other purposes tell nothing of this one). No signature is involved,
        so nothing derived here can pass for one. ValueError for an empty purpose or another size."""
        if not purpose:
            raise ValueError("purpose: a non-empty name of what the secret is for")
        if not 16 <= size <= 64:
            raise ValueError(f"size: 16 to 64 bytes, got {size}")
        return hashlib.blake2b(_PREFIX + purpose.encode(), key=self.seed, digest_size=size).digest()

    def __getstate__(self) -> dict[str, object]:
        # Only the seed: the derived keys (a native object, which does not pickle) are made again.
        return {"seed": self.seed}

    def __repr__(self) -> str:  # never print the seed
        return f"Keypair(hotkey={self.hotkey[:16]}...)"


def _nacl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True


def verify(public_key: bytes, domain: str, payload: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature over ``signing_bytes(domain, payload)``."""
    message = signing_bytes(domain, payload)
    if kubetensor_native is not None:
        return kubetensor_native.verify(public_key, message, signature)
    return _nacl_verify(public_key, message, signature)


def verify_many(checks: Sequence[tuple[bytes, str, bytes, bytes]]) -> list[bool]:
    """``verify`` of each ``(public_key, domain, payload, signature)`` of ``checks``, in order.

    One call for a group of signatures (a round's responses): with ``kubetensor_native`` batch
    verifications of 16 (about half the cost per signature; those of a failing batch alone, so the list
    still says exactly which fail), else one PyNaCl check each.
    """
    if kubetensor_native is not None:
        return kubetensor_native.verify_batch(
            [public_key for public_key, _, _, _ in checks],
            [signing_bytes(domain, payload) for _, domain, payload, _ in checks],
            [signature for _, _, _, signature in checks],
        )
    return [
        _nacl_verify(public_key, signing_bytes(domain, payload), signature)
        for public_key, domain, payload, signature in checks
    ]


def parse_hotkey(hotkey: str) -> bytes:
    """The public key named by a hex hotkey; ValueError naming what is wrong otherwise."""
    try:
        raw = bytes.fromhex(hotkey)
    except ValueError as exc:
        raise ValueError(f"hotkey must be hex, got {hotkey[:80]!r}") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(
            f"hotkey must be a 32-byte ed25519 public key (64 hex characters), got {len(raw)} bytes"
        )
    return raw


def public_key_hex(
    field: str, value: object, *, error: type[InvalidArgumentError] = InvalidArgumentError
) -> str:
    """``value`` as a lowercase hex ed25519 public key; ``error`` naming ``field`` otherwise.

    The request checks of the services (the chain's transactions, the consensus service's requests)
    pass their own ``MalformedRequestError`` so the refusal stays in their error hierarchy.
    """
    if not isinstance(value, str):
        raise error(field, f"expected a hex ed25519 public key, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise error(
            field, f"expected a hex ed25519 public key (64 hex characters), got {value[:80]!r}"
        ) from None
    if len(raw) != PUBLIC_KEY_BYTES:
        problem = f"expected a 32-byte ed25519 public key (64 hex characters), got {len(raw)} bytes"
        raise error(field, problem)
    return raw.hex()


class VerifiedSignatures:
    """``verify`` with a bounded memory of the verifications that succeeded (least recently used out).

    A miner process that serves several hotkeys receives the same signed round envelope once per hotkey;
    verifying it once is enough. Verification is a pure function of (public key, domain, payload,
    signature), and the memory is keyed by all four, byte for byte, so a hit is exactly a repeat of a
    check that passed. Failures are never remembered: a bad signature is verified (and refused) again.
    One event loop's use; not thread-safe.
    """

    def __init__(self, *, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected at least 1, got {capacity}")
        self._capacity = capacity
        self._passed: dict[tuple[bytes, str, bytes, bytes], None] = {}

    def __len__(self) -> int:
        return len(self._passed)

    def verify(self, public_key: bytes, domain: str, payload: bytes, signature: bytes) -> bool:
        """What ``kubetensor.core.keys.verify`` says, from memory when this exact check passed before."""
        key = (public_key, domain, payload, signature)
        if key in self._passed:
            # Move to the end: the most recently used goes out last.
            del self._passed[key]
            self._passed[key] = None
            return True
        if not verify(public_key, domain, payload, signature):
            return False
        self._passed[key] = None
        if len(self._passed) > self._capacity:
            del self._passed[next(iter(self._passed))]
        return True
