"""Epoch settlements: what one epoch decided, hash-linked to the settlement before it, and their sinks.

``ConsensusService`` builds one ``Settlement`` per epoch (``Settlement.from_epoch``), commits it with
the epoch's new state, then hands it to a ``SettlementSink`` until the sink acknowledges it with a
``Receipt``. The chain sidecar (its own issue) provides the real sink; ``settlementlog.LocalSettlementLog``
keeps them in the service's store.

The canonical encoding (``kubetensor.core.canonical``) of a settlement is the JSON object::

    {"format": "kubetensor.settlement/v1", "netuid": int, "epoch": int, "block": int,
     "metagraph_digest": hex, "weights_digest": hex, "previous_hash": hex or "",
     "entries": [{"uid": int, "hotkey": hex, "incentive": int, "dividends": int, "emission_rao": int}]}

with ``incentive`` and ``dividends`` the raw I32F32 integers (value = raw / 2**32, exact in a double)
and entries in uid order, one per registered uid (a vacant uid, freed by a deregistration, has none).
``hash`` is the hex sha256 of those bytes; ``previous_hash`` is the hash of the previous settlement of
the same subnet ("" for epoch 1), so the sequence is a hash chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from kubetensor.consensus.metagraph import Metagraph
from kubetensor.consensus.yuma import EpochResult
from kubetensor.core import canonical

FORMAT = "kubetensor.settlement/v1"


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

    @classmethod
    def from_epoch(
        cls, *, metagraph: Metagraph, result: EpochResult, block: int, previous_hash: str
    ) -> Settlement:
        """The settlement of the epoch that ran on ``metagraph`` at ``block`` and produced ``result``."""
        incentive: list[int] = result.incentive.tolist()
        dividends: list[int] = result.dividends.tolist()
        entries = tuple(
            SettlementEntry(
                uid=neuron.uid,
                hotkey=neuron.hotkey,
                incentive=int(incentive[neuron.uid]),
                dividends=int(dividends[neuron.uid]),
                emission_rao=result.combined_emission[neuron.uid],
            )
            for neuron in metagraph.registered
        )
        return cls(
            netuid=metagraph.netuid,
            epoch=metagraph.epoch + 1,
            block=block,
            metagraph_digest=metagraph.digest,
            weights_digest=metagraph.weights_digest,
            entries=entries,
            previous_hash=previous_hash,
        )

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
    def decode(cls, data: bytes) -> Settlement:
        """The settlement whose canonical bytes are ``data`` (as stored by the store)."""
        raw: dict[str, Any] = json.loads(data)
        if raw.get("format") != FORMAT:
            raise ValueError(f"format: expected {FORMAT!r}, got {raw.get('format')!r}")
        settlement = cls(
            netuid=int(raw["netuid"]),
            epoch=int(raw["epoch"]),
            block=int(raw["block"]),
            metagraph_digest=str(raw["metagraph_digest"]),
            weights_digest=str(raw["weights_digest"]),
            entries=tuple(
                SettlementEntry(
                    uid=int(e["uid"]),
                    hotkey=str(e["hotkey"]),
                    incentive=int(e["incentive"]),
                    dividends=int(e["dividends"]),
                    emission_rao=int(e["emission_rao"]),
                )
                for e in raw["entries"]
            ),
            previous_hash=str(raw["previous_hash"]),
        )
        if settlement.encode() != data:
            raise ValueError("the bytes are not the canonical encoding of a settlement")
        return settlement


@dataclass(frozen=True)
class Receipt:
    """A sink's acknowledgement of a settlement (``SettlementReceipt`` on the wire)."""

    settlement_hash: str
    """The hash the sink recorded; must equal the settlement's."""
    block: int
    """Block of the ledger that recorded it (the local log records the settlement's own block)."""


class SettlementSink(Protocol):
    """Where settlements go once committed: the chain sidecar, or ``LocalSettlementLog``.

    ``submit`` is idempotent by (netuid, epoch): submitting the same settlement again returns the
    original receipt; a different settlement for a recorded (netuid, epoch) raises
    ``SettlementConflictError``. Any other exception means "not recorded, retry later".
    """

    async def submit(self, settlement: Settlement) -> Receipt: ...
