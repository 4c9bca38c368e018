"""The operator's ``ConsensusGateway`` against a real consensus server on port 0: registration and
deregistration of a hotkey from its seed, NOT_FOUND read as "nothing to free", the metagraph cache
dropped by a deregistration, and the settlement of the epoch asked for, not a newer one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.servicer import create_server
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor_operator.consensus import ConsensusGateway

from tests.consensus_support import COLDKEY, NETUID, TEMPO, build, eventually, keypair

KEY = keypair(70)


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    node = build(tmp_path / "state.sqlite3")
    server, port = create_server(ConsensusSettings(listen="127.0.0.1:0"), node.service)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
        node.store.close()


async def test_gateway_deregisters_a_hotkey_and_reads_not_found_as_nothing_to_free(address: str) -> None:
    seed = KEY.seed.hex()
    # A long TTL: only the deregistration itself can make the next read fresh.
    async with ConsensusGateway(call_seconds=5.0, metagraph_ttl=3600.0) as gateway:
        uid = await gateway.register(address, NETUID, seed_hex=seed, coldkey=COLDKEY)
        assert KEY.hotkey in (await gateway.metagraph(address, NETUID)).neurons

        freed = await gateway.deregister(address, NETUID, seed_hex=seed)

        assert freed is not None
        assert freed.uid == uid
        assert KEY.hotkey not in (await gateway.metagraph(address, NETUID)).neurons
        assert await gateway.deregister(address, NETUID, seed_hex=seed) is None
        # The uid is free again: the next registration takes it.
        assert (
            await gateway.register(address, NETUID, seed_hex=keypair(71).seed.hex(), coldkey=COLDKEY) == uid
        )


async def test_gateway_reads_a_subnet_the_service_does_not_run_as_nothing_to_free(address: str) -> None:
    async with ConsensusGateway(call_seconds=5.0, metagraph_ttl=0) as gateway:
        assert await gateway.deregister(address, NETUID + 1, seed_hex=KEY.seed.hex()) is None


async def test_gateway_gives_the_settlement_of_the_epoch_asked_for_when_newer_ones_exist(
    tmp_path: Path,
) -> None:
    """A metagraph read a moment ago says epoch 1 while epochs 2 and 3 have settled since: the head for
    epoch 1 is epoch 1's settlement (a Subnet's status shows an epoch with its own settlement)."""
    clock = ManualClock()
    node = build(tmp_path / "state.sqlite3", clock=clock)
    server, port = create_server(ConsensusSettings(listen="127.0.0.1:0"), node.service)
    await node.service.start()
    await server.start()
    try:
        for epoch in (1, 2, 3):
            clock.advance(TEMPO)
            await eventually(
                lambda epoch=epoch: len(node.store.settlements()) == epoch, what=f"epoch {epoch}"
            )
        hashes = {record.settlement.epoch: record.settlement.hash for record in node.store.settlements()}
        async with ConsensusGateway(call_seconds=5.0, metagraph_ttl=0) as gateway:
            address = f"127.0.0.1:{port}"
            for epoch in (1, 2, 3):
                head = await gateway.settlement_head(address, NETUID, epoch=epoch)
                assert head is not None
                assert (head.epoch, head.hash) == (epoch, hashes[epoch])
            assert await gateway.settlement_head(address, NETUID, epoch=4) is None
            assert await gateway.settlement_head(address, NETUID, epoch=0) is None
    finally:
        await server.stop(None)
        await node.service.stop()
        node.store.close()
