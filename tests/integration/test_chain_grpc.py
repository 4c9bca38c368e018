"""The chain sidecar over real gRPC (server on 127.0.0.1 port 0, in this process): status codes, idempotent
settlements, paging, streamed blocks, remote verification, and the wallet, stake and chain CLI commands."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import typer
from kubetensor.chain import client as requests
from kubetensor.chain import keyfile, wire
from kubetensor.chain.client import ChainClient
from kubetensor.chain.commands import chain_app, stake_app, wallet_app
from kubetensor.chain.service import ChainService
from kubetensor.chain.servicer import SERVICE_NAME, create_server
from kubetensor.chain.settings import ChainSettings
from kubetensor.chain.verify import verify_remote
from kubetensor.core import grpcserver
from kubetensor.v1 import chain_pb2, consensus_pb2
from typer.testing import CliRunner

from tests.chain_support import AUTHORITY, ONE, TAO, keypair, make_settlement

COLD = keypair(1)
HOT = keypair(2)
STAKER = keypair(3)


@dataclass
class Sidecar:
    address: str
    ledger: Path
    client: ChainClient


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    settings = ChainSettings(
        listen="127.0.0.1:0",
        ledger_path=tmp_path / "ledger.sqlite3",
        genesis_balances={COLD.hotkey: 1_000 * TAO, STAKER.hotkey: 1_000 * TAO},
    )
    service = ChainService.open(
        ledger_path=settings.ledger_path,
        authority=AUTHORITY,
        genesis_balances=settings.genesis_balances,
        params=settings.params(),
    )
    health = grpcserver.Health([SERVICE_NAME])
    server, port = create_server(settings, service, health=health)
    await service.start()
    await server.start()
    await health.set_serving()
    address = f"127.0.0.1:{port}"
    client = ChainClient.connect(address, timeout=10)
    try:
        yield Sidecar(address=address, ledger=settings.ledger_path, client=client)
    finally:
        await client.close()
        await server.stop(0)
        await service.stop()


async def code_of(call: asyncio.Future[object] | object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    raise AssertionError("the call succeeded")


async def test_refusals_answer_with_the_documented_status_codes(sidecar: Sidecar) -> None:
    stub = sidecar.client.stub
    await sidecar.client.register_hotkey(COLD, HOT)
    forged = requests.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=1)
    forged.amount_rao = 2 * TAO
    assert (await code_of(stub.AddStake(forged)))[0] == grpc.StatusCode.UNAUTHENTICATED
    code, details = await code_of(
        stub.AddStake(requests.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=TAO, nonce=2))
    )
    assert (code, "nonce" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    code, details = await code_of(
        stub.AddStake(requests.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=10_000 * TAO, nonce=1))
    )
    assert (code, details.startswith("amount_rao")) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    code, details = await code_of(
        stub.AddStake(
            requests.add_stake_request(STAKER, hotkey=HOT.hotkey, amount_rao=(1 << 64) - 1, nonce=1)
        )
    )
    assert (code, details.startswith("amount_rao:")) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details = await code_of(
        stub.AddStake(requests.add_stake_request(STAKER, hotkey=STAKER.hotkey, amount_rao=1, nonce=1))
    )
    assert (code, details.startswith("hotkey:")) == (grpc.StatusCode.NOT_FOUND, True)
    code, _ = await code_of(
        stub.SetDelegateTake(requests.set_delegate_take_request(STAKER, hotkey=HOT.hotkey, take=0, nonce=1))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await code_of(stub.RegisterHotkey(requests.register_hotkey_request(STAKER, HOT, nonce=1)))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, details = await code_of(stub.GetBlock(chain_pb2.GetBlockRequest(height=99)))
    assert (code, details.startswith("height:")) == (grpc.StatusCode.NOT_FOUND, True)
    code, _ = await code_of(stub.GetSettlement(chain_pb2.GetSettlementRequest(netuid=1, epoch=1)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await code_of(stub.GetBalance(chain_pb2.GetBalanceRequest(account="nothex")))
    assert (code, details.startswith("account:")) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    assert (await sidecar.client.balance(STAKER.hotkey)).nonce == 0


async def test_settlements_are_idempotent_paged_and_credited(sidecar: Sidecar) -> None:
    client = sidecar.client
    await client.register_hotkey(COLD, HOT)
    await client.add_stake(STAKER, hotkey=HOT.hotkey, amount_rao=100 * TAO)
    previous = ""
    for epoch in range(1, 4):
        settlement = make_settlement(
            epoch=epoch, previous_hash=previous, entries=[(HOT.hotkey, ONE // 2, ONE // 2, 1_000_000 + epoch)]
        )
        message = wire.settlement_to_proto(settlement)
        first = await client.submit_settlement(message)
        assert await client.submit_settlement(message) == first
        assert first.settlement_hash == settlement.hash
        previous = settlement.hash
    conflicting = wire.settlement_to_proto(make_settlement(epoch=2, entries=[]))
    assert (await code_of(client.submit_settlement(conflicting)))[0] == grpc.StatusCode.ALREADY_EXISTS
    bad_share = wire.settlement_to_proto(
        make_settlement(epoch=4, previous_hash=previous, entries=[(HOT.hotkey, 0, 0, 1)])
    )
    bad_share.entries[0].incentive = 0.1
    code, details = await code_of(client.submit_settlement(bad_share))
    assert (code, details.startswith("settlement.entries[0].incentive")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        True,
    )

    page = await client.stub.ListSettlements(consensus_pb2.ListSettlementsRequest(netuid=1, limit=2))
    assert [r.settlement.epoch for r in page.settlements] == [1, 2]
    assert page.next_start_epoch == 3
    assert [r.settlement.epoch for r in await client.settlements(1)] == [1, 2, 3]
    got = await client.settlement(1, 2)
    assert got.settlement.hash == got.receipt.settlement_hash
    assert sum(c.amount_rao for c in got.credits) == 1_000_002
    [stake] = await client.hotkey_stakes([HOT.hotkey])
    assert (stake.owner, stake.take, stake.total_rao) == (COLD.hotkey, 11_796, 100 * TAO)
    assert await client.stakes([HOT.hotkey, STAKER.hotkey]) == {HOT.hotkey: 100 * TAO, STAKER.hotkey: 0}
    report = await verify_remote(sidecar.address, expected_authority=AUTHORITY.hotkey)
    assert report.ok, report.summary
    assert report.settlements == 3


async def test_stream_blocks_replays_then_follows_new_blocks(sidecar: Sidecar) -> None:
    client = sidecar.client
    blocks = client.stream_blocks(0)
    genesis = await asyncio.wait_for(anext(blocks), timeout=10)
    assert genesis.block.height == 0
    receipt = await client.register_hotkey(COLD, HOT)
    following = await asyncio.wait_for(anext(blocks), timeout=10)
    assert following.block.height == receipt.block == 1
    assert following.block.parent_hash == genesis.hash
    await blocks.aclose()


async def test_cli_wallet_stake_and_verify_commands(sidecar: Sidecar, tmp_path: Path) -> None:
    runner = CliRunner()
    wallet_dir = tmp_path / "wallet"
    common = ["--wallet-dir", str(wallet_dir), "--address", sidecar.address]

    async def run(app: typer.Typer, args: list[str], *, exit_code: int = 0) -> str:
        # The commands call asyncio.run themselves, so they run in a worker thread.
        result = await asyncio.to_thread(runner.invoke, app, args)
        assert result.exit_code == exit_code, result.output
        return str(result.output)

    alice = (await run(wallet_app, ["create", "alice", "--wallet-dir", str(wallet_dir)])).split()[1]
    alice_hot = (await run(wallet_app, ["create", "alice-hot", "--wallet-dir", str(wallet_dir)])).split()[1]
    assert stat.S_IMODE((wallet_dir / "alice.key").stat().st_mode) == 0o600
    listed = await run(wallet_app, ["list", "--wallet-dir", str(wallet_dir)])
    assert [line.split() for line in listed.splitlines()] == [["alice", alice], ["alice-hot", alice_hot]]
    keyfile.write_new(wallet_dir / "funded.key", COLD)  # a coldkey with a genesis balance

    await run(wallet_app, ["register-hotkey", "--coldkey", "alice", "--hotkey", "alice-hot", *common])
    assert (await sidecar.client.hotkey_stakes([alice_hot]))[0].owner == alice
    failed = await run(
        stake_app,
        ["add", "--coldkey", "alice", "--hotkey", "alice-hot", "--amount", "5", *common],
        exit_code=1,
    )
    assert "FAILED_PRECONDITION" in failed
    await run(stake_app, ["add", "--coldkey", "funded", "--hotkey", "alice-hot", "--amount", "500", *common])
    await run(stake_app, ["remove", "--coldkey", "funded", "--hotkey", alice_hot, "--amount", "200", *common])
    shown = await run(stake_app, ["show", "--coldkey", "funded", *common])
    assert "staked 300 rao, nonce 2" in shown
    assert f"{alice_hot} 300 rao" in shown
    denied = await run(
        stake_app,
        ["take", "--coldkey", "funded", "--hotkey", "alice-hot", "--take", "0", *common],
        exit_code=1,
    )
    assert "PERMISSION_DENIED" in denied
    await run(stake_app, ["take", "--coldkey", "alice", "--hotkey", "alice-hot", "--take", "0", *common])
    assert (await sidecar.client.hotkey_stakes([alice_hot]))[0].take == 0

    assert (await run(chain_app, ["verify", "--ledger", str(sidecar.ledger)])).startswith("ok:")
    assert (await run(chain_app, ["verify", "--address", sidecar.address])).startswith("ok:")
    assert "height 4 " in await run(chain_app, ["info", "--address", sidecar.address])
    missing = await run(chain_app, ["verify", "--ledger", str(tmp_path / "none")], exit_code=1)
    assert "FAILED" in missing
