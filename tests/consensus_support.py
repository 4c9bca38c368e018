"""Helpers shared by the consensus tests: deterministic keys, an in-process service, sinks, bounded waits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubetensor.consensus.clock import BlockClock, ManualClock
from kubetensor.consensus.errors import SettlementConflictError
from kubetensor.consensus.metagraph import SubnetRules
from kubetensor.consensus.service import ConsensusConfig, ConsensusService
from kubetensor.consensus.settlement import Receipt, SettlementSink
from kubetensor.consensus.settlementlog import LocalSettlementLog
from kubetensor.consensus.stake import GenesisStake, StakeSource
from kubetensor.consensus.store import ConsensusStore
from kubetensor.consensus.yuma import EpochParams
from kubetensor.core.errors import UnavailableError
from kubetensor.core.keys import Keypair
from kubetensor.core.settlement import Settlement

from tests.polling import eventually as eventually  # re-exported: the consensus tests wait with it

TAO = 10**9
NETUID = 1
TEMPO = 10
BLOCK_NS = 100_000_000
RULES = SubnetRules(min_allowed_weights=1, weights_rate_limit=0, immunity_period=100)


def keypair(seed: int) -> Keypair:
    """A deterministic key pair (seed byte repeated)."""
    return Keypair(bytes([seed]) * 32)


VALIDATORS = (keypair(1), keypair(2))
MINERS = (keypair(11), keypair(12), keypair(13))
COLDKEY = keypair(99).hotkey
GENESIS = {VALIDATORS[0].hotkey: 600 * TAO, VALIDATORS[1].hotkey: 400 * TAO}


class AckSink:
    """A sink that fails ``failures`` times, then acknowledges; idempotent by (netuid, epoch)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[int] = []
        self.accepted: dict[tuple[int, int], Settlement] = {}

    async def submit(self, settlement: Settlement) -> Receipt:
        self.calls.append(settlement.epoch)
        if self.failures > 0:
            self.failures -= 1
            raise UnavailableError("the ledger is down")
        kept = self.accepted.setdefault((settlement.netuid, settlement.epoch), settlement)
        if kept.hash != settlement.hash:
            raise SettlementConflictError(
                settlement.netuid, epoch=settlement.epoch, existing_hash=kept.hash, new_hash=settlement.hash
            )
        return Receipt(settlement_hash=settlement.hash, block=1000 + settlement.epoch)


@dataclass
class Node:
    """An in-process consensus service on a state file, with what it was built from."""

    service: ConsensusService
    store: ConsensusStore
    clock: BlockClock
    sink: SettlementSink


def build(
    state: Path,
    *,
    clock: BlockClock | None = None,
    sink: SettlementSink | None = None,
    stake_source: StakeSource | None = None,
    rules: SubnetRules = RULES,
) -> Node:
    """A ``ConsensusService`` for subnet 1 (tempo 10) on ``state``; the local log is the default sink."""
    store = ConsensusStore.open(state, netuid=NETUID, block_ns=BLOCK_NS, now_ns=0)
    chosen_clock = clock if clock is not None else ManualClock()
    chosen_sink = sink if sink is not None else LocalSettlementLog(store)
    service = ConsensusService(
        config=ConsensusConfig(
            netuid=NETUID,
            params=EpochParams(tempo=TEMPO),
            rules=rules,
            retry_seconds=0.01,
            retry_max_seconds=0.05,
        ),
        store=store,
        clock=chosen_clock,
        stake_source=stake_source if stake_source is not None else GenesisStake(GENESIS),
        sink=chosen_sink,
    )
    return Node(service=service, store=store, clock=chosen_clock, sink=chosen_sink)
