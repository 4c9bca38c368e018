"""The consensus service on the chain sidecar: stake read from the ledger, settlements recorded there.

Both are real processes (``python -m kubetensor.chain`` and ``python -m kubetensor.consensus`` with
``KT_CONSENSUS_CHAIN_ADDRESS``), as they run side by side in a Subnet's pod.
"""

from __future__ import annotations

from pathlib import Path

from kubetensor.chain.client import ChainClient
from kubetensor.chain.verify import verify_remote
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.keys import Keypair

from tests.consensus_support import MINERS, NETUID, VALIDATORS, eventually
from tests.integration.test_chain_crash import ChainProcess
from tests.integration.test_consensus_kill import EPOCH_WAIT_SECONDS, ConsensusProcess

TAO = 10**9
COLDKEY = Keypair.from_seed_hex("77" * 32)
STAKES = {VALIDATORS[0].hotkey: 600 * TAO, VALIDATORS[1].hotkey: 300 * TAO}


async def test_consensus_reads_stake_from_and_settles_on_the_ledger(tmp_path: Path) -> None:
    (tmp_path / "chain").mkdir()
    (tmp_path / "consensus").mkdir()
    chain = ChainProcess(tmp_path / "chain", run=1, balances={COLDKEY.hotkey: 10_000 * TAO})
    consensus: ConsensusProcess | None = None
    try:
        chain_address = await chain.wait_ready_async()
        async with ChainClient.connect(chain_address) as ledger:
            for key in (*VALIDATORS, *MINERS):
                await ledger.register_hotkey(COLDKEY, key)
            for hotkey, amount in STAKES.items():
                await ledger.add_stake(COLDKEY, hotkey=hotkey, amount_rao=amount)
            balance_before = (await ledger.balance(COLDKEY.hotkey)).free_rao

        consensus = ConsensusProcess(
            tmp_path / "consensus", run=1, extra_env={"KT_CONSENSUS_CHAIN_ADDRESS": chain_address}
        )
        async with ConsensusClient.connect(consensus.wait_ready(), netuid=NETUID) as client:
            for key in (*VALIDATORS, *MINERS):
                await client.register(key, coldkey=COLDKEY.hotkey, nonce=1)
            graph = await client.metagraph()
            stakes = {n.hotkey: n.stake_rao for n in graph.neurons}
            # The stake the consensus service uses is the ledger's, not its genesis setting.
            assert stakes[VALIDATORS[0].hotkey] == 600 * TAO
            assert stakes[VALIDATORS[1].hotkey] == 300 * TAO
            assert stakes[MINERS[0].hotkey] == 0

            async def permitted() -> bool:
                return all(n.validator_permit for n in (await client.metagraph()).neurons[:2])

            await eventually(permitted, what="validator permits", seconds=EPOCH_WAIT_SECONDS)
            for validator in VALIDATORS:
                await client.set_weights(validator, weights=[(2, 300), (3, 100)], nonce=1)

            async def delivered_with_weights() -> bool:
                records = await client.settlements()
                with_emission = [r for r in records if any(e.emission_rao for e in r.settlement.entries)]
                return len(with_emission) >= 2 and all(r.HasField("receipt") for r in records)

            await eventually(
                delivered_with_weights, what="two settlements delivered", seconds=EPOCH_WAIT_SECONDS
            )
            local = await client.settlements()

        async with ChainClient.connect(chain_address) as ledger:
            recorded = await ledger.settlements(NETUID)
            balance_after = (await ledger.balance(COLDKEY.hotkey)).free_rao
        on_ledger = {r.settlement.epoch: r.settlement.hash for r in recorded}
        for record in local:
            assert on_ledger[record.settlement.epoch] == record.settlement.hash
            assert record.receipt.settlement_hash == record.settlement.hash
        # Emission was credited to the coldkey that owns the hotkeys.
        assert balance_after > balance_before
        report = await verify_remote(chain_address)
        assert report.ok, report.summary
    finally:
        if consensus is not None:
            consensus.kill()
        chain.terminate(seconds=20)
