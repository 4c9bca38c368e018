"""Blocks: what the ledger appends, their canonical bytes, hash and authority signature.

Built and sealed by ``ChainService`` (one block per group of writes), stored by ``Ledger``, re-read by
``verify`` and by clients of GetBlock. A block's ``body`` is the canonical JSON (``canonical``) of::

    {"format": "kubetensor.block/v1", "height": int, "parent_hash": hex ("" at height 0),
     "timestamp_ms": int, "authority": hex,
     "genesis": {"balances": [[account, rao], ...], "params": {...}} or null (height 0 only),
     "transactions": [{"kind", "fields", "payload", "signature", ["hotkey_signature"]}],
     "settlements": [{"settlement": <kubetensor.settlement/v1 object>, "hash": hex,
                      "credits": [{"account", "amount_rao", "reason", "hotkey", "uid"}],
                      "submitter": {"public_key", "signature", "payload"} or null}]}

The block's hash is the hex sha256 of ``body``; its signature is the authority's ed25519 signature over
``keys.signing_bytes("ChainBlock", body)``. Changing any byte of a stored block changes its hash (so the
next block's ``parent_hash`` no longer matches) and breaks its signature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kubetensor.chain.economics import Credit, CreditReason
from kubetensor.chain.state import ChainParams
from kubetensor.chain.transactions import SignedTransaction
from kubetensor.core import canonical, keys
from kubetensor.core.settlement import Settlement

FORMAT = "kubetensor.block/v1"
BLOCK_DOMAIN = "ChainBlock"
"""Signing domain of block signatures."""


@dataclass(frozen=True)
class Genesis:
    """What block 0 fixes: the initial balances and the economic parameters."""

    balances: tuple[tuple[str, int], ...]
    params: ChainParams

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {
            "balances": [[account, rao] for account, rao in self.balances],
            "params": self.params.to_canonical(),
        }

    @classmethod
    def from_canonical(cls, raw: Any) -> Genesis:
        return cls(
            balances=tuple((str(account), int(rao)) for account, rao in raw["balances"]),
            params=ChainParams.from_canonical(raw["params"]),
        )


@dataclass(frozen=True)
class Submitter:
    """The settlement signer's signature over the SubmitSettlement request (when one signed it)."""

    public_key: bytes
    signature: bytes
    payload: bytes
    """The request with its signature cleared, serialized deterministically."""

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
            "payload": self.payload.hex(),
        }

    @classmethod
    def from_canonical(cls, raw: Any) -> Submitter:
        return cls(
            public_key=bytes.fromhex(raw["public_key"]),
            signature=bytes.fromhex(raw["signature"]),
            payload=bytes.fromhex(raw["payload"]),
        )


def _credit_to_canonical(credit: Credit) -> dict[str, canonical.Canonical]:
    return {
        "account": credit.account,
        "amount_rao": credit.amount_rao,
        "reason": credit.reason.value,
        "hotkey": credit.hotkey,
        "uid": credit.uid,
    }


def _credit_from_canonical(raw: Any) -> Credit:
    return Credit(
        account=str(raw["account"]),
        amount_rao=int(raw["amount_rao"]),
        reason=CreditReason(raw["reason"]),
        hotkey=str(raw["hotkey"]),
        uid=int(raw["uid"]),
    )


@dataclass(frozen=True)
class BlockSettlement:
    """A settlement as a block records it: with the credits it made and who submitted it."""

    settlement: Settlement
    credits: tuple[Credit, ...]
    submitter: Submitter | None = None

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {
            "settlement": self.settlement.to_canonical(),
            "hash": self.settlement.hash,
            "credits": [_credit_to_canonical(credit) for credit in self.credits],
            "submitter": None if self.submitter is None else self.submitter.to_canonical(),
        }

    @classmethod
    def from_canonical(cls, raw: Any) -> BlockSettlement:
        settlement = Settlement.from_canonical(raw["settlement"])
        if raw["hash"] != settlement.hash:
            raise ValueError(f"settlement hash {raw['hash']!r} is not the hash of its content")
        return cls(
            settlement=settlement,
            credits=tuple(_credit_from_canonical(credit) for credit in raw["credits"]),
            submitter=None if raw["submitter"] is None else Submitter.from_canonical(raw["submitter"]),
        )


@dataclass(frozen=True)
class Block:
    """One block's content (what its body encodes)."""

    height: int
    parent_hash: str
    timestamp_ms: int
    authority: str
    transactions: tuple[SignedTransaction, ...] = ()
    settlements: tuple[BlockSettlement, ...] = ()
    genesis: Genesis | None = None

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {
            "format": FORMAT,
            "height": self.height,
            "parent_hash": self.parent_hash,
            "timestamp_ms": self.timestamp_ms,
            "authority": self.authority,
            "genesis": None if self.genesis is None else self.genesis.to_canonical(),
            "transactions": [tx.to_canonical() for tx in self.transactions],
            "settlements": [item.to_canonical() for item in self.settlements],
        }

    def encode(self) -> bytes:
        return canonical.encode(self.to_canonical())

    @classmethod
    def decode(cls, body: bytes) -> Block:
        """The block ``body`` encodes; ValueError (or KeyError, TypeError) if it is not a canonical block."""
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} object")
        block = cls(
            height=int(raw["height"]),
            parent_hash=str(raw["parent_hash"]),
            timestamp_ms=int(raw["timestamp_ms"]),
            authority=str(raw["authority"]),
            transactions=tuple(SignedTransaction.from_canonical(tx) for tx in raw["transactions"]),
            settlements=tuple(BlockSettlement.from_canonical(item) for item in raw["settlements"]),
            genesis=None if raw["genesis"] is None else Genesis.from_canonical(raw["genesis"]),
        )
        if block.encode() != body:
            raise ValueError("the body is not the canonical encoding of its content")
        return block


def block_hash(body: bytes) -> str:
    """Hex sha256 of a block body."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class SealedBlock:
    """A block's body with the authority's signature: exactly what the ledger stores."""

    body: bytes
    signature: bytes

    @classmethod
    def seal(cls, block: Block, authority: keys.Keypair) -> SealedBlock:
        body = block.encode()
        return cls(body=body, signature=authority.sign(BLOCK_DOMAIN, body))

    @cached_property
    def hash(self) -> str:
        return block_hash(self.body)

    @cached_property
    def block(self) -> Block:
        return Block.decode(self.body)

    def signature_valid(self, authority: str) -> bool:
        """True when ``signature`` is ``authority``'s (hex public key) over the body."""
        try:
            public_key = bytes.fromhex(authority)
        except ValueError:
            return False
        return keys.verify(public_key, BLOCK_DOMAIN, self.body, self.signature)
