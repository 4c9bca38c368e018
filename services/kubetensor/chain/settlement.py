"""The settlements the chain records: the consensus service's epoch outcomes, checked and hashed.

Built by ``wire.settlement_from_proto`` (the servicer and the verifier) and stored in blocks by
``state``/``block``. The shape and the canonical encoding are those of ``kubetensor.consensus.settlement``
(the ``Settlement`` message in consensus.proto documents them)::

    {"format": "kubetensor.settlement/v1", "netuid": int, "epoch": int, "block": int,
     "metagraph_digest": hex, "weights_digest": hex, "previous_hash": hex or "",
     "entries": [{"uid": int, "hotkey": hex, "incentive": int, "dividends": int, "emission_rao": int}]}

with ``incentive`` and ``dividends`` the raw I32F32 integers and entries in uid order. The chain
recomputes ``hash`` itself; a submitted ``hash`` that disagrees is refused as malformed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kubetensor.chain.errors import MalformedRequestError
from kubetensor.core import canonical

FORMAT = "kubetensor.settlement/v1"
MAX_RAO = (1 << 63) - 1
"""Every rao amount on the ledger (and the total issuance) stays at or below this (SQLite INTEGER)."""
MAX_NETUID = 65_535
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_hex64(field: str, value: str, *, what: str) -> str:
    """``value`` if it is 64 lowercase hex characters, else MalformedRequestError naming ``field``."""
    if not _HEX64.fullmatch(value):
        raise MalformedRequestError(
            field, f"expected {what} as 64 lowercase hex characters, got {value[:80]!r}"
        )
    return value


def check_range(field: str, value: int, *, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else MalformedRequestError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedRequestError(field, f"expected an integer in [{low}, {high}], got {value!r}")
    return value


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
    """One epoch's outcome for a subnet, as the consensus service settled it."""

    netuid: int
    epoch: int
    block: int
    metagraph_digest: str
    weights_digest: str
    entries: tuple[SettlementEntry, ...]
    previous_hash: str

    def __post_init__(self) -> None:
        check_range("settlement.netuid", self.netuid, low=0, high=MAX_NETUID)
        check_range("settlement.epoch", self.epoch, low=1, high=MAX_RAO)
        check_range("settlement.block", self.block, low=0, high=MAX_RAO)
        check_hex64("settlement.metagraph_digest", self.metagraph_digest, what="a sha256 digest")
        check_hex64("settlement.weights_digest", self.weights_digest, what="a sha256 digest")
        if self.previous_hash:
            check_hex64("settlement.previous_hash", self.previous_hash, what="a settlement hash or ''")
        previous_uid = -1
        hotkeys: set[str] = set()
        total = 0
        for index, entry in enumerate(self.entries):
            field = f"settlement.entries[{index}]"
            check_range(f"{field}.uid", entry.uid, low=0, high=MAX_NETUID)
            if entry.uid <= previous_uid:
                raise MalformedRequestError(
                    f"{field}.uid", "entries must be in strictly increasing uid order"
                )
            previous_uid = entry.uid
            check_hex64(f"{field}.hotkey", entry.hotkey, what="a hex ed25519 public key")
            if entry.hotkey in hotkeys:
                raise MalformedRequestError(f"{field}.hotkey", "the hotkey appears in two entries")
            hotkeys.add(entry.hotkey)
            check_range(f"{field}.incentive", entry.incentive, low=0, high=MAX_RAO)
            check_range(f"{field}.dividends", entry.dividends, low=0, high=MAX_RAO)
            check_range(f"{field}.emission_rao", entry.emission_rao, low=0, high=MAX_RAO)
            total += entry.emission_rao
        if total > MAX_RAO:
            raise MalformedRequestError("settlement.entries", f"total emission {total} exceeds {MAX_RAO} rao")

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

    @cached_property
    def hash(self) -> str:
        """Hex sha256 of the canonical encoding."""
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
        """The settlement whose canonical bytes are ``data``."""
        settlement = cls.from_canonical(json.loads(data))
        if canonical.encode(settlement.to_canonical()) != data:
            raise ValueError("the bytes are not the canonical encoding of a settlement")
        return settlement
