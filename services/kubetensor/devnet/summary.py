"""The devnet's end: the ``--summary`` JSON and the verification of the settlements it produced.

Called by ``commands.run`` and the e2e tests. ``to_json`` writes exactly the issue's shape::

    {"epochs": [{"epoch", "miners": [{"name", "hotkey", "uid", "model", "score", "incentive", "emission"}],
                 "validators": [{"name", "hotkey", "uid", "stake", "validator_trust", "dividends"}],
                 "settlement": {"hash", "block"}}],
     "chain_verified": bool}

``emission`` and ``stake`` are rao; ``score`` is the mean of the validators' moving averages; the
settlement ``block`` is the block of the ledger's receipt (the settlement's own block until a receipt
exists). ``verify_settlements`` checks the consensus service's settlement sequence: epochs gap-free
from 1, every hash recomputed from the content, every ``previous_hash`` the hash before it, and every
receipt naming its settlement's hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetensor.core.settlementwire import settlement_from_proto
from kubetensor.devnet.monitor import EpochRecord


def to_json(records: Sequence[EpochRecord], *, chain_verified: bool) -> dict[str, Any]:
    """The summary document (see the module doc)."""
    return {
        "epochs": [
            {
                "epoch": r.epoch,
                "miners": [
                    {
                        "name": m.name,
                        "hotkey": m.hotkey,
                        "uid": m.uid,
                        "model": m.model,
                        "score": m.score,
                        "incentive": m.incentive,
                        "emission": m.emission,
                    }
                    for m in r.miners
                ],
                "validators": [
                    {
                        "name": v.name,
                        "hotkey": v.hotkey,
                        "uid": v.uid,
                        "stake": v.stake,
                        "validator_trust": v.validator_trust,
                        "dividends": v.dividends,
                    }
                    for v in r.validators
                ],
                "settlement": {"hash": r.settlement_hash, "block": r.settlement_block},
            }
            for r in records
        ],
        "chain_verified": chain_verified,
    }


def write(path: Path, records: Sequence[EpochRecord], *, chain_verified: bool) -> None:
    """Write the summary to ``path`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(to_json(records, chain_verified=chain_verified), indent=2) + "\n")
    partial.replace(path)


@dataclass(frozen=True)
class Verification:
    ok: bool
    settlements: int
    problem: str = ""

    @property
    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.settlements} settlements, hash-linked from epoch 1, every receipt matching"
        return f"FAILED after {self.settlements} good settlements: {self.problem}"


def verify_settlements(records: Sequence[Any]) -> Verification:
    """Check a settlement sequence as the consensus service lists it (``SettlementRecord`` messages)."""
    previous = ""
    for index, record in enumerate(records):
        wire = record.settlement
        expected_epoch = index + 1
        if wire.epoch != expected_epoch:
            return Verification(False, index, f"expected epoch {expected_epoch}, found epoch {wire.epoch}")
        if wire.previous_hash != previous:
            return Verification(False, index, f"epoch {wire.epoch} does not link to the settlement before it")
        recomputed = settlement_from_proto(wire).hash
        if recomputed != wire.hash:
            return Verification(False, index, f"epoch {wire.epoch}'s hash is not the hash of its content")
        if record.HasField("receipt") and record.receipt.settlement_hash != wire.hash:
            return Verification(False, index, f"epoch {wire.epoch}'s receipt names another settlement")
        previous = wire.hash
    return Verification(True, len(records))
