"""``kubetensor_operator.runner.start_consensus``: the loopback consensus process the sandbox's operator
registers with, started and stopped through the runner's state files."""

from __future__ import annotations

from pathlib import Path

from kubetensor.consensus.client import ConsensusClient
from kubetensor_operator import runner


async def test_start_consensus_serves_the_netuid_and_stop_ends_it(tmp_path: Path) -> None:
    address = runner.start_consensus(tmp_path, netuid=3)
    try:
        async with ConsensusClient.connect(address, netuid=3) as client:
            assert (await client.metagraph()).netuid == 3
    finally:
        runner.stop(tmp_path)
    pid = runner._recorded_pid(tmp_path / runner.CONSENSUS_STATE_FILE)
    assert pid is not None
    assert not runner._is_process(pid, b"kubetensor.consensus")
    assert runner.stop(tmp_path) is False  # nothing left to stop
