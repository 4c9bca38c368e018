"""ed25519 hotkeys and coldkeys: generation, signing and verification over canonical bytes.

Every message that moves stake, weights or money is signed. What is signed is never the raw wire
bytes of a message but ``signing_bytes(domain, payload)``: a fixed prefix, the message's domain
(``"SetWeights"``, ``"Task"``, ...) and its deterministic serialization with the signature field
cleared. The domain stops a signature made for one kind of message from being replayed as another;
nonces (checked by each service) stop it from being replayed as the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

_PREFIX = b"kubetensor/v1\x00"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def signing_bytes(domain: str, payload: bytes) -> bytes:
    """The exact bytes a signature covers for a message of ``domain`` serialized as ``payload``."""
    return _PREFIX + domain.encode() + b"\x00" + payload


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
    def _signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @cached_property
    def hotkey(self) -> str:
        return self.public_key.hex()

    def sign(self, domain: str, payload: bytes) -> bytes:
        signed = self._signing_key.sign(signing_bytes(domain, payload))
        return bytes(signed.signature)

    def __repr__(self) -> str:  # never print the seed
        return f"Keypair(hotkey={self.hotkey[:16]}...)"


def verify(public_key: bytes, domain: str, payload: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature over ``signing_bytes(domain, payload)``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(signing_bytes(domain, payload), signature)
    except BadSignatureError:
        return False
    return True


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
