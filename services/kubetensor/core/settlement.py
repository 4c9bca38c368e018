"""Epoch settlements: what one epoch of a subnet decided, checked on construction and hashed.

The one definition both sides use: the consensus service builds a ``Settlement`` per epoch
(``kubetensor.consensus.settlement.settlement_of_epoch``), stores it and submits it; the chain sidecar
decodes submitted ones (``kubetensor.chain.wire``) and stores them in blocks (``chain.state``/``block``).
A settlement hash computed on either side must agree, so the type, its checks and its encoding live here.
The wire translation stays at each service's edge (its servicer and client).

The canonical encoding (``kubetensor.core.canonical``) of a settlement is the JSON object::

    {"format": "kubetensor.settlement/v1", "netuid": int, "epoch": int, "block": int,
     "metagraph_digest": hex, "weights_digest": hex, "previous_hash": hex or "",
     "entries": [{"uid": int, "hotkey": hex, "incentive": int, "dividends": int, "emission_rao": int}]}

with ``incentive`` and ``dividends`` the raw I32F32 integers (value = raw / 2**32, exact in a double)
and entries in uid order, one per registered uid (a vacant uid, freed by a deregistration, has none).
``hash`` is the hex sha256 of those bytes; ``previous_hash`` is the hash of the previous settlement of
the same subnet ("" for epoch 1), so the sequence is a hash chain. A settlement whose fields are out of
range or malformed is refused on construction with ``MalformedSettlementError`` naming the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kubetensor.core import canonical
from kubetensor.core.errors import InvalidArgumentError

FORMAT = "kubetensor.settlement/v1"
MAX_RAO = (1 << 63) - 1
"""Every rao amount on the ledger (and the total issuance) stays at or below this (SQLite INTEGER)."""
MAX_NETUID = 65_535
_HEX64 = re.compile(r"[0-9a-f]{64}")


class MalformedSettlementError(InvalidArgumentError, ValueError):
    """A settlement field is out of range or malformed (``field`` names it, as on the wire).

    A ``ValueError`` too, as decoding stored bytes that are not a settlement is.
    """


def _check_hex64(field: str, value: str, *, what: str) -> None:
    if not _HEX64.fullmatch(value):
        raise MalformedSettlementError(
            field, f"expected {what} as 64 lowercase hex characters, got {value[:80]!r}"
        )


def _check_range(field: str, value: int, *, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedSettlementError(field, f"expected an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class SettlementEntry:
    """One uid's outcome of an epoch."""

    uid: int
    hotkey: str
    incentive: int
    """Raw I32F32 incentive share (value = raw / 2**32)."""
    dividends: int
    """Raw I32F32 dividend share."""
    emission_rao: int
    """Rao emitted to the uid this epoch (incentive plus dividend parts)."""


@dataclass(frozen=True)
class Settlement:
    """One epoch's outcome for a subnet, linked to the previous one by ``previous_hash``."""

    netuid: int
    epoch: int
    """Sequential epoch number, from 1."""
    block: int
    """Block the epoch ran in."""
    metagraph_digest: str
    """``Metagraph.digest`` of the metagraph the epoch ran on (stake refreshed)."""
    weights_digest: str
    """``Metagraph.weights_digest`` of the weights the epoch used."""
    entries: tuple[SettlementEntry, ...]
    previous_hash: str
    """``hash`` of the previous settlement ("" for epoch 1)."""

    def __post_init__(self) -> None:
        _check_range("settlement.netuid", self.netuid, low=0, high=MAX_NETUID)
        _check_range("settlement.epoch", self.epoch, low=1, high=MAX_RAO)
        _check_range("settlement.block", self.block, low=0, high=MAX_RAO)
        _check_hex64("settlement.metagraph_digest", self.metagraph_digest, what="a sha256 digest")
        _check_hex64("settlement.weights_digest", self.weights_digest, what="a sha256 digest")
        if self.previous_hash:
            _check_hex64("settlement.previous_hash", self.previous_hash, what="a settlement hash or ''")
        previous_uid = -1
        hotkeys: set[str] = set()
        total = 0
        for index, entry in enumerate(self.entries):
            field = f"settlement.entries[{index}]"
            _check_range(f"{field}.uid", entry.uid, low=0, high=MAX_NETUID)
            if entry.uid <= previous_uid:
                raise MalformedSettlementError(
                    f"{field}.uid", "entries must be in strictly increasing uid order"
                )
            previous_uid = entry.uid
            _check_hex64(f"{field}.hotkey", entry.hotkey, what="a hex ed25519 public key")
            if entry.hotkey in hotkeys:
                raise MalformedSettlementError(f"{field}.hotkey", "the hotkey appears in two entries")
            hotkeys.add(entry.hotkey)
            _check_range(f"{field}.incentive", entry.incentive, low=0, high=MAX_RAO)
            _check_range(f"{field}.dividends", entry.dividends, low=0, high=MAX_RAO)
            _check_range(f"{field}.emission_rao", entry.emission_rao, low=0, high=MAX_RAO)
            total += entry.emission_rao
        if total > MAX_RAO:
            raise MalformedSettlementError(
                "settlement.entries", f"total emission {total} exceeds {MAX_RAO} rao"
            )

    @property
    def key(self) -> tuple[int, int]:
        """What settlements are idempotent by: ``(netuid, epoch)``."""
        return (self.netuid, self.epoch)

    @property
    def emission_rao(self) -> int:
        """The settlement's emission: the sum of its entries' ``emission_rao``."""
        return sum(entry.emission_rao for entry in self.entries)

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        """The canonical-encoding value of the settlement (see the module doc)."""
        return {
            "format": FORMAT,
            "netuid": self.netuid,
            "epoch": self.epoch,
            "block": self.block,
            "metagraph_digest": self.metagraph_digest,
            "weights_digest": self.weights_digest,
            "previous_hash": self.previous_hash,
            "entries": [
                {
                    "uid": e.uid,
                    "hotkey": e.hotkey,
                    "incentive": e.incentive,
                    "dividends": e.dividends,
                    "emission_rao": e.emission_rao,
                }
                for e in self.entries
            ],
        }

    def encode(self) -> bytes:
        """The canonical bytes the hash covers."""
        return canonical.encode(self.to_canonical())

    @cached_property
    def hash(self) -> str:
        """Hex sha256 of ``encode()``."""
        return canonical.digest(self.to_canonical())

    @classmethod
    def from_canonical(cls, raw: Any) -> Settlement:
        """The settlement a decoded canonical object describes (ValueError/KeyError if it is not one)."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} object")
        return cls(
            netuid=raw["netuid"],
            epoch=raw["epoch"],
            block=raw["block"],
            metagraph_digest=raw["metagraph_digest"],
            weights_digest=raw["weights_digest"],
            entries=tuple(
                SettlementEntry(
                    uid=e["uid"],
                    hotkey=e["hotkey"],
                    incentive=e["incentive"],
                    dividends=e["dividends"],
                    emission_rao=e["emission_rao"],
                )
                for e in raw["entries"]
            ),
            previous_hash=raw["previous_hash"],
        )

    @classmethod
    def decode(cls, data: bytes) -> Settlement:
        """The settlement whose canonical bytes are ``data`` (as the stores keep them)."""
        settlement = cls.from_canonical(json.loads(data))
        if settlement.encode() != data:
            raise ValueError("the bytes are not the canonical encoding of a settlement")
        return settlement
