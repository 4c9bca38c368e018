"""The kill test: ``python -m kubetensor.consensus`` as a real process, SIGKILLed between epochs and
restarted on the same state file. The settlement sequence must stay gap-free, duplicate-free and
hash-linked, and the first epoch after the restart must run on exactly the state (bonds included) the
last epoch before the kill committed. Blocks are 0.1 s and the tempo 10 blocks (an epoch a second)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubetensor.consensus.client import ConsensusClient
from kubetensor.consensus.store import ConsensusStore
from kubetensor.core.settlementwire import settlement_from_proto
from kubetensor.v1 import consensus_pb2

from tests.consensus_support import COLDKEY, GENESIS, MINERS, NETUID, VALIDATORS, eventually
from tests.process_support import ServiceProcess

BLOCK_SECONDS = 0.1
BLOCK_NS = 100_000_000
STARTUP_SECONDS = 60.0
EPOCH_WAIT_SECONDS = 60.0


class ConsensusProcess(ServiceProcess):
    """One run of the consensus process on a state file; its output goes to a log file."""

    def __init__(
        self, workdir: Path, *, run: int, netuid: int = NETUID, extra_env: dict[str, str] | None = None
    ) -> None:
        self.state = workdir / "state.sqlite3"
        super().__init__(
            "kubetensor.consensus",
            prefix="KT_CONSENSUS_",
            settings={
                "KT_CONSENSUS_STATE_PATH": str(self.state),
                "KT_CONSENSUS_NETUID": str(netuid),
                "KT_CONSENSUS_BLOCK_SECONDS": str(BLOCK_SECONDS),
                "KT_CONSENSUS_TEMPO": "10",
                "KT_CONSENSUS_MIN_ALLOWED_WEIGHTS": "1",
                "KT_CONSENSUS_WEIGHTS_RATE_LIMIT": "0",
                "KT_CONSENSUS_RETRY_SECONDS": "0.05",
                "KT_CONSENSUS_GRACE_SECONDS": "2",
                "KT_CONSENSUS_GENESIS_STAKE": json.dumps(GENESIS),
                **(extra_env or {}),
            },
            ready=workdir / "ready.json",
            log=workdir / f"consensus-{run}.log",
        )


@pytest.fixture
def processes() -> Iterator[list[ConsensusProcess]]:
    started: list[ConsensusProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


async def settlements(client: ConsensusClient) -> list[consensus_pb2.SettlementRecord]:
    return await client.settlements()


async def test_sigkill_between_epochs_then_restart_resumes_the_settlement_chain(
    tmp_path: Path, processes: list[ConsensusProcess]
) -> None:
    first = ConsensusProcess(tmp_path, run=1)
    processes.append(first)
    async with ConsensusClient.connect(first.wait_ready(), netuid=NETUID) as client:
        for key in (*VALIDATORS, *MINERS):
            await client.register(key, coldkey=COLDKEY, nonce=1)

        async def validators_permitted() -> bool:
            neurons = (await client.metagraph()).neurons
            return all(n.validator_permit for n in neurons[: len(VALIDATORS)])

        await eventually(
            validators_permitted, what="validator permits from an epoch", seconds=EPOCH_WAIT_SECONDS
        )
        for validator in VALIDATORS:
            await client.set_weights(validator, weights=[(2, 300), (3, 100), (4, 0)], nonce=1)
        settled_before_weights = len(await settlements(client))

        async def two_epochs_with_weights() -> bool:
            return len(await settlements(client)) >= settled_before_weights + 2

        await eventually(
            two_epochs_with_weights, what="two epochs after the weights", seconds=EPOCH_WAIT_SECONDS
        )
    first.kill()

    # What the killed process committed: the state the next epoch must start from.
    store = ConsensusStore.open(first.state, netuid=NETUID, block_ns=BLOCK_NS, now_ns=0)
    try:
        at_kill = store.load_metagraph()
        before_restart = [record.settlement for record in store.settlements()]
    finally:
        store.close()
    assert len(before_restart) >= 2
    assert at_kill.epoch == before_restart[-1].epoch
    assert at_kill.neurons[0].bonds, "the validators should hold bonds before the kill"

    second = ConsensusProcess(tmp_path, run=2)
    processes.append(second)
    async with ConsensusClient.connect(second.wait_ready(), netuid=NETUID) as client:

        async def two_more_epochs() -> bool:
            return len(await settlements(client)) >= len(before_restart) + 2

        await eventually(two_more_epochs, what="two epochs after the restart", seconds=EPOCH_WAIT_SECONDS)

        async def all_delivered() -> bool:
            return all(record.HasField("receipt") for record in await settlements(client))

        await eventually(all_delivered, what="delivery of every settlement", seconds=EPOCH_WAIT_SECONDS)
        records = await settlements(client)
    assert second.terminate() == 0, second.log_tail()

    chain = [record.settlement for record in records]
    epochs = [s.epoch for s in chain]
    assert epochs == list(range(1, len(chain) + 1)), f"settlement epochs are not gap-free: {epochs}"
    previous = ""
    for settlement in chain:
        assert settlement.previous_hash == previous, (
            f"epoch {settlement.epoch} is not linked to its predecessor"
        )
        assert settlement_from_proto(settlement).hash == settlement.hash
        previous = settlement.hash
    # Nothing settled before the kill was settled again or changed.
    assert [s.hash for s in chain[: len(before_restart)]] == [s.hash for s in before_restart]
    # The first epoch after the restart ran on the committed state, bonds included.
    first_after = chain[len(before_restart)]
    expected = at_kill.with_stakes(GENESIS)
    assert first_after.metagraph_digest == expected.digest
    assert first_after.block >= at_kill.last_epoch_block + 10


def test_start_refuses_a_state_file_of_another_subnet(
    tmp_path: Path, processes: list[ConsensusProcess]
) -> None:
    ConsensusStore.open(tmp_path / "state.sqlite3", netuid=NETUID, block_ns=BLOCK_NS, now_ns=0).close()
    other = ConsensusProcess(tmp_path, run=1, netuid=NETUID + 1)
    processes.append(other)
    assert other.process.wait(timeout=STARTUP_SECONDS) == 2, other.log_tail()
    assert "not starting: netuid: the state file was written with 1" in other.log_tail()
    assert not other.ready.exists()
