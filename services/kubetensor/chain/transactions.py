"""The signed transactions a coldkey sends to the chain, as domain values.

Built by ``wire`` from requests (the servicer, and the verifier when it re-reads a block), checked by
``state`` and stored in blocks. Every transaction names the coldkey that signs it and carries that
account's next nonce. What a signature covers is ``keys.signing_bytes(domain, payload)``, where
``payload`` is the request with its signature field(s) cleared, serialized deterministically
(``kubetensor.core.signing.payload``); the block keeps the payload and signatures, so anyone can check
them again, and the decoded fields, so the block can be read without the protos.

Field shapes are checked on construction (``MalformedRequestError`` names the wire field): keys are
32-byte ed25519 public keys in hex (stored lowercase), amounts and nonces are integers in
``[1, 2**63 - 1]`` and a take is a u16.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from kubetensor.chain.errors import BadSignatureError, MalformedRequestError
from kubetensor.core import canonical, keys
from kubetensor.core.settlement import MAX_NETUID, MAX_RAO

U16_MAX = 65_535

REGISTER_HOTKEY = "RegisterHotkey"
REGISTER_HOTKEY_PROOF = "RegisterHotkeyProof"
REGISTER_SUBNET = "RegisterSubnet"
ADD_STAKE = "AddStake"
REMOVE_STAKE = "RemoveStake"
SET_DELEGATE_TAKE = "SetDelegateTake"
SUBMIT_SETTLEMENT = "SubmitSettlement"
"""Signing domains (``keys.signing_bytes``): one per request kind, so no signature crosses kinds."""


def public_key_hex(field: str, value: object) -> str:
    """``value`` as a lowercase hex ed25519 public key, or MalformedRequestError naming ``field``."""
    return keys.public_key_hex(field, value, error=MalformedRequestError)


def check_range(field: str, value: int, *, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else MalformedRequestError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedRequestError(field, f"expected an integer in [{low}, {high}], got {value!r}")
    return value


def _amount(field: str, value: int) -> int:
    return check_range(field, value, low=1, high=MAX_RAO)


@dataclass(frozen=True)
class Signed:
    """An ed25519 public key and signature as sent (checked for length, not yet verified)."""

    public_key: bytes
    signature: bytes
    field: str = "signature"
    """The wire field the signature came in (named in errors)."""

    def __post_init__(self) -> None:
        if not self.public_key and not self.signature:
            raise MalformedRequestError(self.field, "required: sign the request")
        if len(self.public_key) != keys.PUBLIC_KEY_BYTES:
            raise MalformedRequestError(
                f"{self.field}.public_key", f"expected 32 bytes (ed25519), got {len(self.public_key)}"
            )
        if len(self.signature) != keys.SIGNATURE_BYTES:
            raise MalformedRequestError(
                f"{self.field}.signature", f"expected 64 bytes (ed25519), got {len(self.signature)}"
            )

    def check(self, *, key: str, domain: str, payload: bytes) -> None:
        """Raise BadSignatureError unless this is ``key``'s signature over ``payload`` for ``domain``."""
        if self.public_key.hex() != key or not keys.verify(self.public_key, domain, payload, self.signature):
            raise BadSignatureError(field=self.field, key=key, domain=domain)


@dataclass(frozen=True)
class _Transaction:
    DOMAIN: ClassVar[str]

    coldkey: str
    nonce: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "coldkey", public_key_hex("coldkey", self.coldkey))
        check_range("nonce", self.nonce, low=1, high=MAX_RAO)

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}


@dataclass(frozen=True)
class RegisterHotkey(_Transaction):
    """``coldkey`` becomes the owner of ``hotkey`` (signed by both)."""

    DOMAIN: ClassVar[str] = REGISTER_HOTKEY
    hotkey: str

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hotkey", public_key_hex("hotkey", self.hotkey))
        if self.hotkey == self.coldkey:
            raise MalformedRequestError("hotkey", "a hotkey must be a different key from its coldkey")


@dataclass(frozen=True)
class RegisterSubnet(_Transaction):
    """``coldkey`` becomes the owner of subnet ``netuid`` (first claim wins)."""

    DOMAIN: ClassVar[str] = REGISTER_SUBNET
    netuid: int

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("netuid", self.netuid, low=0, high=MAX_NETUID)


@dataclass(frozen=True)
class AddStake(_Transaction):
    """Move ``amount_rao`` from the coldkey's free balance to its stake on ``hotkey``."""

    DOMAIN: ClassVar[str] = ADD_STAKE
    hotkey: str
    amount_rao: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hotkey", public_key_hex("hotkey", self.hotkey))
        _amount("amount_rao", self.amount_rao)


@dataclass(frozen=True)
class RemoveStake(_Transaction):
    """Move ``amount_rao`` of the coldkey's stake on ``hotkey`` back to its free balance."""

    DOMAIN: ClassVar[str] = REMOVE_STAKE
    hotkey: str
    amount_rao: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hotkey", public_key_hex("hotkey", self.hotkey))
        _amount("amount_rao", self.amount_rao)


@dataclass(frozen=True)
class SetDelegateTake(_Transaction):
    """Set the take (u16, of the hotkey's dividends) of a hotkey the coldkey owns."""

    DOMAIN: ClassVar[str] = SET_DELEGATE_TAKE
    hotkey: str
    take: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hotkey", public_key_hex("hotkey", self.hotkey))
        check_range("take", self.take, low=0, high=U16_MAX)


Transaction = RegisterHotkey | RegisterSubnet | AddStake | RemoveStake | SetDelegateTake
KINDS: dict[str, type[Transaction]] = {
    kind.DOMAIN: kind for kind in (RegisterHotkey, RegisterSubnet, AddStake, RemoveStake, SetDelegateTake)
}


@dataclass(frozen=True)
class SignedTransaction:
    """A transaction with the exact bytes its signatures cover and the signatures themselves."""

    tx: Transaction
    payload: bytes
    """The request with its signature field(s) cleared, serialized deterministically."""
    signature: Signed
    """The coldkey's signature."""
    hotkey_signature: Signed | None = None
    """The hotkey's proof (RegisterHotkey only)."""

    def __post_init__(self) -> None:
        if isinstance(self.tx, RegisterHotkey) and self.hotkey_signature is None:
            raise MalformedRequestError("hotkey_signature", "required: the hotkey must sign its registration")

    @property
    def domain(self) -> str:
        return self.tx.DOMAIN

    @property
    def hash(self) -> str:
        """Hex sha256 of the bytes the coldkey signed (the transaction's identity)."""
        return hashlib.sha256(keys.signing_bytes(self.domain, self.payload)).hexdigest()

    def check_signatures(self) -> None:
        """Raise BadSignatureError unless the coldkey (and, to register, the hotkey) signed the payload."""
        self.signature.check(key=self.tx.coldkey, domain=self.domain, payload=self.payload)
        if isinstance(self.tx, RegisterHotkey):
            assert self.hotkey_signature is not None
            self.hotkey_signature.check(
                key=self.tx.hotkey, domain=REGISTER_HOTKEY_PROOF, payload=self.payload
            )

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        value: dict[str, canonical.Canonical] = {
            "kind": self.domain,
            "fields": self.tx.to_canonical(),
            "payload": self.payload.hex(),
            "signature": self.signature.signature.hex(),
        }
        if self.hotkey_signature is not None:
            value["hotkey_signature"] = self.hotkey_signature.signature.hex()
        return value

    @classmethod
    def from_canonical(cls, raw: Any) -> SignedTransaction:
        """The signed transaction a block stored (KeyError/ValueError/ChainError if malformed).

        The public keys are the named coldkey's and hotkey's: a block only holds transactions whose
        signatures verified as theirs.
        """
        kind = KINDS[raw["kind"]]
        fields = raw["fields"]
        if not isinstance(fields, dict):
            raise ValueError("fields must be an object")
        tx = kind(**fields)
        hotkey_signature = None
        if "hotkey_signature" in raw:
            hotkey = getattr(tx, "hotkey", "")
            hotkey_signature = Signed(
                public_key=bytes.fromhex(hotkey),
                signature=bytes.fromhex(raw["hotkey_signature"]),
                field="hotkey_signature",
            )
        return cls(
            tx=tx,
            payload=bytes.fromhex(raw["payload"]),
            signature=Signed(public_key=bytes.fromhex(tx.coldkey), signature=bytes.fromhex(raw["signature"])),
            hotkey_signature=hotkey_signature,
        )
