"""``LocalSettlementLog``: the settlement sink that keeps settlements in the service's own store.

Composed by ``__main__`` until the chain sidecar issue provides a sink backed by the ledger. It honours
the ``SettlementSink`` contract: idempotent by (netuid, epoch), the same settlement again returns the
original receipt, a different one for a recorded (netuid, epoch) raises ``SettlementConflictError``.
"""

from __future__ import annotations

from kubetensor.consensus.settlement import Receipt
from kubetensor.consensus.store import ConsensusStore
from kubetensor.core.settlement import Settlement


class LocalSettlementLog:
    """A ``SettlementSink`` writing to the ``local_settlement_log`` table of a ``ConsensusStore``."""

    def __init__(self, store: ConsensusStore) -> None:
        self._store = store

    async def submit(self, settlement: Settlement) -> Receipt:
        return self._store.log_settlement(settlement)
