"""The devnet's side of the chain sidecar: accounts and stake at start, verification at the end.

Called by ``network`` (``genesis_balances``, and ``prepare`` once the sidecar is up) and by
``commands`` and the e2e tests (``delivered``, ``verify``). The consensus service itself reads stake
from the sidecar and submits every settlement to it (``KT_CONSENSUS_CHAIN_ADDRESS``). ``prepare``
runs before the consensus service starts: it registers the subnet (owner: the plan's coldkey) and
every hotkey (owner: the coldkey), and stakes each validator's stake from the coldkey's genesis
balance, so the stake the consensus service reads is the ledger's, and the ledger's economics credit
the same people the epochs pay.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubetensor.chain.client import ChainClient
from kubetensor.chain.verify import VerifyReport, verify_remote
from kubetensor.consensus.client import ConsensusClient
from kubetensor.devnet.plan import TAO, DevnetPlan

COLDKEY_FLOAT_RAO = 1_000 * TAO
"""Free balance the coldkey keeps on top of the stake it delegates (pays nothing here; for realism)."""


def genesis_balances(plan: DevnetPlan) -> dict[str, int]:
    """The coldkey's genesis balance: every validator's stake plus a float."""
    return {plan.coldkey.hotkey: sum(v.stake_rao for v in plan.validators) + COLDKEY_FLOAT_RAO}


async def prepare(address: str, *, plan: DevnetPlan) -> None:
    """Register the subnet and every hotkey to the coldkey, and stake the validators (see the module doc)."""
    async with ChainClient.connect(address) as chain:
        await chain.register_subnet(plan.coldkey, netuid=plan.netuid)
        for key in [v.keypair for v in plan.validators] + [m.keypair for m in plan.miners]:
            await chain.register_hotkey(plan.coldkey, key)
        for validator in plan.validators:
            await chain.add_stake(
                plan.coldkey, hotkey=validator.keypair.hotkey, amount_rao=validator.stake_rao
            )


async def delivered(consensus: ConsensusClient, *, within_seconds: float) -> list[Any]:
    """The consensus service's settlement records once every one has its ledger receipt (or the wait
    is over: the caller checks for records without one)."""
    deadline = time.monotonic() + within_seconds
    while True:
        records = await consensus.settlements()
        if all(record.HasField("receipt") for record in records) or time.monotonic() >= deadline:
            return records
        await asyncio.sleep(0.2)


async def verify(address: str) -> VerifyReport:
    """Verify the running sidecar's whole ledger (``kubetensor chain verify --address``)."""
    return await verify_remote(address)
