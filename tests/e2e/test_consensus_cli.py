"""`kubetensor consensus metagraph|settlements --verify` against a running consensus process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kubetensor.consensus.client import ConsensusClient

from tests.consensus_support import COLDKEY, MINERS, NETUID, VALIDATORS, eventually
from tests.integration.test_consensus_kill import EPOCH_WAIT_SECONDS, ConsensusProcess


def kt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetensor.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_lists_and_verifies_settlements(tmp_path: Path) -> None:
    process = ConsensusProcess(tmp_path, run=1)
    try:
        address = process.wait_ready()
        async with ConsensusClient.connect(address, netuid=NETUID) as client:
            for key in (*VALIDATORS, *MINERS):
                await client.register(key, coldkey=COLDKEY, nonce=1)

            async def two_settlements() -> bool:
                return len(await client.settlements()) >= 2

            await eventually(two_settlements, what="two settlements", seconds=EPOCH_WAIT_SECONDS)

        listed = kt("consensus", "settlements", "--address", address, "--netuid", str(NETUID), "--verify")
        assert listed.returncode == 0, listed.stderr
        assert "epoch     1" in listed.stdout
        assert "hashes match and links are unbroken" in listed.stdout

        graph = kt("consensus", "metagraph", "--address", address, "--netuid", str(NETUID))
        assert graph.returncode == 0, graph.stderr
        assert f"neurons {len(VALIDATORS) + len(MINERS)}" in graph.stdout
        assert VALIDATORS[0].hotkey[:16] in graph.stdout

        missing = kt("consensus", "metagraph", "--address", address, "--netuid", str(NETUID + 7))
        assert missing.returncode == 1
        assert "NOT_FOUND" in missing.stderr
    finally:
        assert process.terminate() == 0, process.log_tail()
