"""Seeded property test: adversarial and malformed transactions and settlements never corrupt the ledger.

Each round mixes valid requests with forged signatures, wrong signers, wrong and replayed nonces,
out-of-range and overflowing amounts, unknown accounts and hotkeys, bit-flipped request bytes and bad
settlements. Properties: every refusal is a ``KubetensorError`` (a client error, never INTERNAL) and
changes nothing; after every batch ``verify_ledger`` passes and free balances plus stakes equal
issuance. A concurrent burst per batch mixes good and bad requests in the same blocks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError, Message
from kubetensor.chain import client, wire
from kubetensor.chain.service import ChainService
from kubetensor.chain.transactions import AddStake, RemoveStake, SetDelegateTake
from kubetensor.chain.verify import verify_ledger
from kubetensor.core.errors import KubetensorError
from kubetensor.core.keys import Keypair
from kubetensor.core.settlement import Settlement
from kubetensor.v1 import chain_pb2, consensus_pb2

from tests.chain_support import ONE, TAO, keypair, make_settlement, started_service

SEED = 20260613
BATCHES = 8
OPS_PER_BATCH = 40

COLDKEYS = [keypair(i) for i in range(6)]
HOTKEYS = [keypair(10 + i) for i in range(5)]
UNKNOWN = keypair(50)
FUNDED = {key.hotkey: (i + 1) * 100 * TAO for i, key in enumerate(COLDKEYS[:4])}


class Fuzzer:
    def __init__(self, service: ChainService, rng: random.Random) -> None:
        self.service = service
        self.rng = rng
        self.accepted: list[Message] = []
        self.epochs: dict[int, tuple[int, str]] = {}
        self.refused = 0

    def nonce(self, key: Keypair) -> int:
        return self.service.balance(key.hotkey).nonce + 1

    def amount(self) -> int:
        rng = self.rng
        return rng.choice([1, rng.randint(1, 10 * TAO), rng.randint(1, 500 * TAO), (1 << 63) - 1])

    # -- request generators ---------------------------------------------------------------------------
    def valid_transaction(self) -> Message:
        rng = self.rng
        cold = rng.choice(COLDKEYS)
        hot = rng.choice(HOTKEYS)
        kind = rng.choice(["register", "subnet", "add", "add", "remove", "take"])
        nonce = self.nonce(cold)
        if kind == "register":
            return client.register_hotkey_request(cold, hot, nonce=nonce)
        if kind == "subnet":
            return client.register_subnet_request(cold, netuid=rng.randint(1, 3), nonce=nonce)
        if kind == "add":
            return client.add_stake_request(cold, hotkey=hot.hotkey, amount_rao=self.amount(), nonce=nonce)
        if kind == "remove":
            return client.remove_stake_request(cold, hotkey=hot.hotkey, amount_rao=self.amount(), nonce=nonce)
        return client.set_delegate_take_request(
            cold, hotkey=hot.hotkey, take=rng.randint(0, 13_000), nonce=nonce
        )

    def adversarial_transaction(self) -> Message | None:
        rng = self.rng
        request = self.valid_transaction()
        attack = rng.choice(
            [
                "bad_signature",
                "wrong_signer",
                "wrong_nonce",
                "replay",
                "overflow",
                "unknown",
                "bitflip",
                "bad_key",
            ]
        )
        if attack == "bad_signature":
            signature = bytearray(request.signature.signature)  # type: ignore[attr-defined]
            signature[rng.randrange(len(signature))] ^= 1 << rng.randrange(8)
            request.signature.signature = bytes(signature)  # type: ignore[attr-defined]
        elif attack == "wrong_signer":
            request.coldkey = rng.choice([UNKNOWN, *COLDKEYS]).hotkey  # type: ignore[attr-defined]
        elif attack == "wrong_nonce":
            request.nonce = max(0, request.nonce + rng.choice([-2, -1, 1, 2, 1 << 40]))  # type: ignore[attr-defined]
            self.resign(request)
        elif attack == "replay" and self.accepted:
            return rng.choice(self.accepted)
        elif attack == "overflow" and hasattr(request, "amount_rao"):
            request.amount_rao = rng.choice([1 << 63, (1 << 64) - 1, 0])
            self.resign(request)
        elif attack == "unknown":
            if hasattr(request, "hotkey"):
                request.hotkey = UNKNOWN.hotkey
            self.resign(request)
        elif attack == "bitflip":
            data = bytearray(request.SerializeToString())
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            mutated = type(request)()
            try:
                mutated.ParseFromString(bytes(data))
            except DecodeError:
                return None  # gRPC would refuse to deserialize it; nothing reaches the service
            return mutated
        elif attack == "bad_key":
            request.coldkey = rng.choice(["", "zz" * 32, "ab" * 31, "AB" * 33])  # type: ignore[attr-defined]
        return request

    def resign(self, request: Message) -> None:
        """Sign again with the named coldkey if we hold it (so only the attacked field is wrong)."""
        for key in (*COLDKEYS, UNKNOWN):
            if key.hotkey == request.coldkey:  # type: ignore[attr-defined]
                signature = key.sign(wire.REQUEST_DOMAINS[type(request)], wire.unsigned_payload(request))
                request.signature.signature = signature  # type: ignore[attr-defined]
                request.signature.public_key = key.public_key  # type: ignore[attr-defined]

    def settlement(self) -> Message:
        rng = self.rng
        netuid = rng.randint(1, 3)
        last_epoch, last_hash = self.epochs.get(netuid, (0, ""))
        epoch = rng.choice([last_epoch + 1] * 4 + [max(1, last_epoch), last_epoch + 2])
        previous = last_hash if rng.random() < 0.9 else "f" * 64
        hotkeys = rng.sample([*HOTKEYS, UNKNOWN, *COLDKEYS[:2]], rng.randint(0, 5))
        entries = [
            (
                key.hotkey,
                rng.choice([0, ONE, rng.randint(0, ONE)]),
                rng.choice([0, ONE, rng.randint(0, ONE)]),
                rng.choice([0, 1, rng.randint(0, 10**12), 1 << 61]),
            )
            for key in hotkeys
        ]
        message = wire.settlement_to_proto(
            make_settlement(netuid=netuid, epoch=epoch, entries=entries, previous_hash=previous)
        )
        corruption = rng.random()
        if corruption < 0.1 and message.entries:
            message.entries[0].incentive = rng.choice([0.1, -1.0, float("nan"), float("inf")])
        elif corruption < 0.15:
            message.metagraph_digest = "nothex"
        elif corruption < 0.2 and len(message.entries) > 1:
            message.entries[1].uid = message.entries[0].uid
        elif corruption < 0.25:
            message.hash = "0" * 64
        return message

    # -- submission ---------------------------------------------------------------------------------------
    async def submit(self, request: Message, *, check_unchanged: bool) -> None:
        before = self.service.snapshot() if check_unchanged else None
        try:
            if isinstance(request, consensus_pb2.Settlement):
                submission = wire.submission_from_request(
                    chain_pb2.SubmitSettlementRequest(settlement=request)
                )
                await self.service.submit_settlement(submission)
                settlement: Settlement = submission.settlement
                self.epochs[settlement.netuid] = max(
                    self.epochs.get(settlement.netuid, (0, "")), (settlement.epoch, settlement.hash)
                )
            else:
                await self.service.submit_transaction(wire.transaction_from_request(request))  # type: ignore[arg-type]
                self.accepted.append(request)
        except KubetensorError:
            self.refused += 1
            if before is not None:
                assert self.service.snapshot() == before, (
                    f"a refused {type(request).__name__} changed the state"
                )

    def next_request(self) -> Message | None:
        roll = self.rng.random()
        if roll < 0.35:
            return self.valid_transaction()
        if roll < 0.8:
            return self.adversarial_transaction()
        return self.settlement()


def test_domain_constructors_refuse_negative_and_overflowing_values() -> None:
    rng = random.Random(SEED)
    cold, hot = COLDKEYS[0].hotkey, HOTKEYS[0].hotkey
    makers: list[Callable[[int], object]] = [
        lambda v: AddStake(coldkey=cold, nonce=1, hotkey=hot, amount_rao=v),
        lambda v: RemoveStake(coldkey=cold, nonce=1, hotkey=hot, amount_rao=v),
        lambda v: SetDelegateTake(coldkey=cold, nonce=1, hotkey=hot, take=v if v < 0 else v + 65_536),
        lambda v: AddStake(coldkey=cold, nonce=v, hotkey=hot, amount_rao=1),
    ]
    for _ in range(200):
        value = rng.choice([-1, -(1 << 70), 1 << 63, 1 << 64, 1 << 200, rng.randint(-(1 << 64), -1)])
        make = rng.choice(makers)
        with pytest.raises(KubetensorError) as caught:
            make(value)
        assert getattr(caught.value, "field", None) in {"amount_rao", "take", "nonce"}


async def test_adversarial_requests_never_corrupt_the_ledger(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "ledger"
    async with started_service(path, balances=FUNDED) as service:
        fuzzer = Fuzzer(service, rng)
        for batch in range(BATCHES):
            for _ in range(OPS_PER_BATCH):
                request = fuzzer.next_request()
                if request is not None:
                    await fuzzer.submit(request, check_unchanged=True)
            burst = [r for r in (fuzzer.next_request() for _ in range(15)) if r is not None]
            await asyncio.gather(*(fuzzer.submit(r, check_unchanged=False) for r in burst))
            assert service.snapshot()["issuance"] == service.info().issuance_rao
            report = verify_ledger(path)
            assert report.ok, f"batch {batch}: {report.summary}"
        accepted_tx = len(fuzzer.accepted)
    final = verify_ledger(path)
    assert final.ok, final.summary
    assert final.transactions == accepted_tx
    assert fuzzer.refused > BATCHES * OPS_PER_BATCH // 3  # the adversarial mix was really refused
    assert accepted_tx > BATCHES * 3  # and valid requests went through
    assert final.settlements > 0
