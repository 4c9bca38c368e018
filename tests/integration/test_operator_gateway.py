"""The operator's ``ConsensusGateway`` against a real consensus server on port 0: registration and
deregistration of a hotkey from its seed, NOT_FOUND read as "nothing to free", and the metagraph cache
dropped by a deregistration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubetensor.consensus.servicer import create_server
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor_operator.consensus import ConsensusGateway

from tests.consensus_support import COLDKEY, NETUID, build, keypair

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
