"""Where epoch settlements come from and where they go: ``settlement_of_epoch``, ``Receipt``, the sinks.

``ConsensusService`` builds one ``Settlement`` (``kubetensor.core.settlement``, the type, its checks and
its canonical encoding, shared with the chain) per epoch with ``settlement_of_epoch``, commits it with
the epoch's new state, then hands it to a ``SettlementSink`` until the sink acknowledges it with a
``Receipt``. The chain sidecar provides the real sink (``chainclient``); ``settlementlog.LocalSettlementLog``
keeps them in the service's store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kubetensor.consensus.metagraph import Metagraph
from kubetensor.consensus.yuma import EpochResult
from kubetensor.core.settlement import Settlement, SettlementEntry


def settlement_of_epoch(
    *, metagraph: Metagraph, result: EpochResult, block: int, previous_hash: str
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
    return Settlement(
        netuid=metagraph.netuid,
        epoch=metagraph.epoch + 1,
        block=block,
        metagraph_digest=metagraph.digest,
        weights_digest=metagraph.weights_digest,
        entries=entries,
        previous_hash=previous_hash,
    )


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
