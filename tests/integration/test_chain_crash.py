"""The crash test: ``python -m kubetensor.chain`` as a real process, SIGKILLed in the middle of a stream
of transactions and settlements, then restarted on the same ledger. Verification must pass, every
acknowledged transaction and settlement must be in the ledger, and none may be in it twice; re-sending
settlements after the restart returns their original receipts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

import grpc
from kubetensor.chain import wire
from kubetensor.chain.client import ChainClient
from kubetensor.chain.verify import verify_ledger, verify_remote
from kubetensor.v1 import consensus_pb2

from tests.chain_support import ONE, TAO, keypair, make_settlement
from tests.process_support import ServiceProcess

KILL_AFTER_ACKS = 60
WORKERS = [keypair(200 + i) for i in range(4)]
OWNER = keypair(300)
HOTKEY = keypair(301)
SETTLEMENT_NETUID = 7


class ChainProcess(ServiceProcess):
    """One run of the chain sidecar on a ledger; its output goes to a log file."""

    def __init__(self, workdir: Path, *, run: int, balances: dict[str, int] | None = None) -> None:
        self.ledger = workdir / "ledger.sqlite3"
        if balances is None:
            balances = {key.hotkey: 1_000 * TAO for key in (*WORKERS, OWNER)}
        super().__init__(
            "kubetensor.chain",
            prefix="KT_CHAIN_",
            settings={
                "KT_CHAIN_LEDGER_PATH": str(self.ledger),
                "KT_CHAIN_AUTHORITY_KEY_PATH": str(workdir / "authority.key"),
                "KT_CHAIN_GENESIS_BALANCES": json.dumps(balances),
                "KT_CHAIN_GRACE_SECONDS": "1",
            },
            ready=workdir / "ready.json",
            log=workdir / f"chain-{run}.log",
        )


class Stream:
    """Clients sending transactions and settlements until the sidecar stops answering."""

    def __init__(self, client: ChainClient, killed: asyncio.Event) -> None:
        self.client = client
        self.killed = killed
        self.acked_transactions: set[str] = set()
        self.acked_settlements: dict[tuple[int, int], str] = {}
        self.sent_settlements: list[consensus_pb2.Settlement] = []
        self.acks = 0
        self.enough = asyncio.Event()

    def ack(self) -> None:
        self.acks += 1
        if self.acks >= KILL_AFTER_ACKS:
            self.enough.set()

    async def stake_forever(self, key_index: int) -> None:
        key = WORKERS[key_index]
        nonce = 1
        while not self.killed.is_set():
            try:
                receipt = await self.client.add_stake(
                    key, hotkey=HOTKEY.hotkey, amount_rao=TAO + key_index, nonce=nonce
                )
            except grpc.aio.AioRpcError:
                return  # the sidecar is gone; the outcome of this last request is unknown
            self.acked_transactions.add(receipt.transaction_hash)
            nonce += 1
            self.ack()

    async def settle_forever(self) -> None:
        previous = ""
        epoch = 1
        while not self.killed.is_set():
            settlement = make_settlement(
                netuid=SETTLEMENT_NETUID,
                epoch=epoch,
                previous_hash=previous,
                entries=[
                    (HOTKEY.hotkey, ONE // 3, 2 * ONE // 3, 1_000_003 * epoch),
                    (OWNER.hotkey, ONE, 0, 77),
                ],
            )
            message = wire.settlement_to_proto(settlement)
            self.sent_settlements.append(message)
            try:
                receipt = await self.client.submit_settlement(message)
            except grpc.aio.AioRpcError:
                return
            assert receipt.settlement_hash == settlement.hash
            self.acked_settlements[(SETTLEMENT_NETUID, epoch)] = receipt.settlement_hash
            previous = settlement.hash
            epoch += 1
            self.ack()


async def ledger_contents(client: ChainClient) -> tuple[Counter[str], Counter[tuple[int, int]], int]:
    """Every transaction hash and settlement key in the served ledger, with counts; and the height."""
    info = await client.info()
    transactions: Counter[str] = Counter()
    settlements: Counter[tuple[int, int]] = Counter()
    async for sealed in client.stream_blocks(0):
        block = sealed.block
        transactions.update(tx.hash for tx in block.transactions)
        settlements.update(item.settlement.key for item in block.settlements)
        if block.height >= info.height:
            break
    return transactions, settlements, info.height


async def test_sigkill_mid_stream_loses_and_duplicates_no_acknowledged_write(tmp_path: Path) -> None:
    first = ChainProcess(tmp_path, run=1)
    second: ChainProcess | None = None
    try:
        address = await first.wait_ready_async()
        async with ChainClient.connect(address, timeout=10) as client:
            await client.register_hotkey(OWNER, HOTKEY, nonce=1)
            killed = asyncio.Event()
            stream = Stream(client, killed)
            tasks = [asyncio.create_task(stream.stake_forever(i)) for i in range(len(WORKERS))]
            tasks.append(asyncio.create_task(stream.settle_forever()))
            await asyncio.wait_for(stream.enough.wait(), timeout=120)
            # Requests are in flight right now: kill without warning.
            first.kill()
            killed.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        assert stream.acks >= KILL_AFTER_ACKS

        report = verify_ledger(first.ledger)
        assert report.ok, report.summary

        second = ChainProcess(tmp_path, run=2)
        address = await second.wait_ready_async()
        async with ChainClient.connect(address, timeout=10) as client:
            transactions, settlements, height = await ledger_contents(client)
            assert stream.acked_transactions <= set(transactions), "an acknowledged transaction is missing"
            assert set(stream.acked_settlements) <= set(settlements), "an acknowledged settlement is missing"
            assert max(transactions.values()) == 1, "a transaction is recorded twice"
            assert max(settlements.values()) == 1, "a settlement is recorded twice"

            # Re-sending every settlement (as the consensus service does after a lost answer) is
            # idempotent: the recorded ones return their original receipts, none is recorded twice.
            for message in stream.sent_settlements:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    receipt = await client.submit_settlement(message)
                    key = (message.netuid, message.epoch)
                    if key in stream.acked_settlements:
                        assert receipt.settlement_hash == stream.acked_settlements[key]
            _, settlements_after, _ = await ledger_contents(client)
            assert max(settlements_after.values()) == 1

            # The restarted sidecar keeps going from the committed nonces.
            key = WORKERS[0]
            await client.add_stake(key, hotkey=HOTKEY.hotkey, amount_rao=1)
            remote = await verify_remote(address)
            assert remote.ok, remote.summary
            assert remote.blocks > height
    finally:
        first.kill()
        if second is not None:
            second.terminate(seconds=20)
    assert second is not None
    assert second.process.returncode == 0, second.log_tail()
    final = verify_ledger(first.ledger)
    assert final.ok, final.summary
