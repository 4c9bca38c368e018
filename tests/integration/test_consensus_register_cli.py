"""`kubetensor consensus register|deregister` (in process, typer's runner) against a real consensus gRPC
server on port 0: the wallet hotkey registers, shows in the metagraph with the printed uid, deregisters
and is gone; refusals, an unknown subnet and an unreachable address are one line and a non-zero exit."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from kubetensor.chain import keyfile
from kubetensor.cli import app
from kubetensor.consensus.client import ConsensusClient
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.servicer import create_server
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.sandbox.processes import free_port
from typer.testing import CliRunner

from tests.consensus_support import COLDKEY, NETUID, build, keypair

HOT = keypair(41)
COLD = keypair(42)


@dataclass
class Served:
    address: str
    clock: ManualClock
    client: ConsensusClient


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    clock = ManualClock()
    node = build(tmp_path / "state.sqlite3", clock=clock)
    server, port = create_server(ConsensusSettings(listen="127.0.0.1:0"), node.service)
    await node.service.start()
    await server.start()
    address = f"127.0.0.1:{port}"
    client = ConsensusClient.connect(address, netuid=NETUID)
    try:
        yield Served(address=address, clock=clock, client=client)
    finally:
        await client.close()
        await server.stop(None)
        await node.service.stop()
        node.store.close()


@pytest.fixture
def wallet_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "wallet"
    directory.mkdir(mode=0o700)
    keyfile.write_new(directory / "hot.key", HOT)
    keyfile.write_new(directory / "cold.key", COLD)
    return directory


async def kt(*args: str, exit_code: int) -> str:
    """Run the CLI in a worker thread (the commands call asyncio.run); its stdout and stderr together."""
    result: Result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == exit_code, result.output
    # An error is an exit code, never an exception escaping the command (which would be a traceback).
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return str(result.output)


def secrets(wallet_dir: Path) -> list[str]:
    return [path.read_text().strip() for path in wallet_dir.glob("*.key")]


async def test_register_then_deregister_round_trips_through_the_metagraph(
    served: Served, wallet_dir: Path
) -> None:
    common = ("--address", served.address, "--netuid", str(NETUID), "--wallet-dir", str(wallet_dir))
    # Another neuron first, so the CLI's uid is not trivially 0.
    await served.client.register(keypair(40), coldkey=COLDKEY, nonce=1)
    served.clock.advance(3)

    registered = await kt(
        "consensus", "register", "--hotkey", "hot", "--coldkey", "cold", *common, exit_code=0
    )
    match = re.search(
        rf"hotkey {HOT.hotkey} registered on subnet {NETUID} as uid (\d+) at block (\d+)", registered
    )
    assert match, registered
    uid, block = int(match[1]), int(match[2])
    assert (uid, block) == (1, 3)
    graph = await served.client.metagraph()
    neuron = next(n for n in graph.neurons if n.hotkey == HOT.hotkey)
    assert (neuron.uid, neuron.coldkey) == (uid, COLD.hotkey)
    table = await kt(
        "consensus", "metagraph", "--address", served.address, "--netuid", str(NETUID), exit_code=0
    )
    assert re.search(rf"^\s+{uid} {HOT.hotkey[:16]}\.\.", table, re.MULTILINE), table

    again = await kt(
        "consensus", "register", "--hotkey", "hot", "--coldkey", COLD.hotkey, *common, exit_code=1
    )
    assert f"ALREADY_EXISTS: hotkey {HOT.hotkey[:16]}... is already registered as uid {uid}" in again

    served.clock.advance(2)
    freed = await kt("consensus", "deregister", "--hotkey", "hot", *common, exit_code=0)
    assert f"hotkey {HOT.hotkey} deregistered from subnet {NETUID}: uid {uid} freed at block 5" in freed
    assert HOT.hotkey not in [n.hotkey for n in (await served.client.metagraph()).neurons]
    table = await kt(
        "consensus", "metagraph", "--address", served.address, "--netuid", str(NETUID), exit_code=0
    )
    assert "neurons 1" in table
    assert HOT.hotkey[:16] not in table

    for output in (registered, again, freed):
        assert not any(seed in output for seed in secrets(wallet_dir))


async def test_deregister_of_an_unregistered_hotkey_says_so_and_exits_zero(
    served: Served, wallet_dir: Path
) -> None:
    common = ("--address", served.address, "--netuid", str(NETUID), "--wallet-dir", str(wallet_dir))
    output = await kt("consensus", "deregister", "--hotkey", "hot", *common, exit_code=0)
    assert f"hotkey {HOT.hotkey} is not registered on subnet {NETUID}: nothing to deregister" in output
    assert "freed" not in output


async def test_deregister_fails_on_a_subnet_the_service_does_not_run(
    served: Served, wallet_dir: Path
) -> None:
    output = await kt(
        "consensus", "deregister", "--hotkey", "hot", "--address", served.address,
        "--netuid", str(NETUID + 7), "--wallet-dir", str(wallet_dir), exit_code=1,
    )  # fmt: skip
    assert f"NOT_FOUND: netuid: subnet {NETUID + 7} is not run by this service" in output
    assert "nothing to deregister" not in output


async def test_register_fails_with_one_line_when_the_key_is_missing(served: Served, wallet_dir: Path) -> None:
    common = ("--address", served.address, "--wallet-dir", str(wallet_dir))
    missing_hot = await kt(
        "consensus", "register", "--hotkey", "nobody", "--coldkey", "cold", *common, exit_code=1
    )
    assert "no key named 'nobody'" in missing_hot
    missing_cold = await kt(
        "consensus", "register", "--hotkey", "hot", "--coldkey", "ghost", *common, exit_code=1
    )
    assert "no key named 'ghost'" in missing_cold
    assert (await served.client.metagraph()).neurons == []


async def test_register_and_deregister_fail_clearly_when_consensus_is_unreachable(wallet_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    common = ("--address", address, "--wallet-dir", str(wallet_dir))
    for args in (("register", "--hotkey", "hot", "--coldkey", "cold"), ("deregister", "--hotkey", "hot")):
        output = await kt("consensus", *args, *common, exit_code=1)
        assert f"error: consensus service at {address} is unreachable (UNAVAILABLE:" in output
        assert len(output.strip().splitlines()) == 1, output
        assert not any(seed in output for seed in secrets(wallet_dir))
