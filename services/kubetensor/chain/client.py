"""``ChainClient``: calls to a chain sidecar, for the CLI, the consensus service's adapters and tests.

The request builders sign with a ``Keypair`` over ``wire.unsigned_payload`` (the definition the server
verifies with). ``ChainClient`` wraps the stub; the transaction methods fetch the account's next nonce
themselves unless given one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import grpc
from google.protobuf.message import Message

from kubetensor.chain import wire
from kubetensor.chain.block import SealedBlock
from kubetensor.chain.transactions import (
    ADD_STAKE,
    REGISTER_HOTKEY,
    REGISTER_HOTKEY_PROOF,
    REGISTER_SUBNET,
    REMOVE_STAKE,
    SET_DELEGATE_TAKE,
    SUBMIT_SETTLEMENT,
)
from kubetensor.core import grpctracing
from kubetensor.core.keys import Keypair
from kubetensor.v1 import chain_pb2, chain_pb2_grpc, common_pb2, consensus_pb2


def _sign(request: Message, keypair: Keypair, *, domain: str, field: str = "signature") -> None:
    signature = keypair.sign(domain, wire.unsigned_payload(request))
    getattr(request, field).CopyFrom(common_pb2.Signature(public_key=keypair.public_key, signature=signature))


def register_hotkey_request(
    coldkey: Keypair, hotkey: Keypair, *, nonce: int
) -> chain_pb2.RegisterHotkeyRequest:
    """A RegisterHotkeyRequest signed by the coldkey and proven by the hotkey."""
    request = chain_pb2.RegisterHotkeyRequest(coldkey=coldkey.hotkey, hotkey=hotkey.hotkey, nonce=nonce)
    _sign(request, coldkey, domain=REGISTER_HOTKEY)
    _sign(request, hotkey, domain=REGISTER_HOTKEY_PROOF, field="hotkey_signature")
    return request


def register_subnet_request(coldkey: Keypair, *, netuid: int, nonce: int) -> chain_pb2.RegisterSubnetRequest:
    request = chain_pb2.RegisterSubnetRequest(coldkey=coldkey.hotkey, netuid=netuid, nonce=nonce)
    _sign(request, coldkey, domain=REGISTER_SUBNET)
    return request


def add_stake_request(
    coldkey: Keypair, *, hotkey: str, amount_rao: int, nonce: int
) -> chain_pb2.AddStakeRequest:
    request = chain_pb2.AddStakeRequest(
        coldkey=coldkey.hotkey, hotkey=hotkey, amount_rao=amount_rao, nonce=nonce
    )
    _sign(request, coldkey, domain=ADD_STAKE)
    return request


def remove_stake_request(
    coldkey: Keypair, *, hotkey: str, amount_rao: int, nonce: int
) -> chain_pb2.RemoveStakeRequest:
    request = chain_pb2.RemoveStakeRequest(
        coldkey=coldkey.hotkey, hotkey=hotkey, amount_rao=amount_rao, nonce=nonce
    )
    _sign(request, coldkey, domain=REMOVE_STAKE)
    return request


def set_delegate_take_request(
    coldkey: Keypair, *, hotkey: str, take: int, nonce: int
) -> chain_pb2.SetDelegateTakeRequest:
    request = chain_pb2.SetDelegateTakeRequest(coldkey=coldkey.hotkey, hotkey=hotkey, take=take, nonce=nonce)
    _sign(request, coldkey, domain=SET_DELEGATE_TAKE)
    return request


def submit_settlement_request(
    settlement: consensus_pb2.Settlement, *, signer: Keypair | None = None
) -> chain_pb2.SubmitSettlementRequest:
    """A SubmitSettlementRequest, signed by ``signer`` if given."""
    request = chain_pb2.SubmitSettlementRequest(settlement=settlement)
    if signer is not None:
        _sign(request, signer, domain=SUBMIT_SETTLEMENT)
    return request


class ChainClient:
    """An async client of ``kubetensor.v1.ChainService``."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = 10.0) -> None:
        self._channel = channel
        self.stub = chain_pb2_grpc.ChainServiceStub(channel)
        self.timeout = timeout

    @classmethod
    def connect(cls, address: str, *, timeout: float | None = 10.0) -> ChainClient:
        """A client over an insecure channel to ``address`` (host:port)."""
        return cls(grpctracing.channel(address), timeout=timeout)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- reads ----------------------------------------------------------------------------------------
    async def info(self) -> chain_pb2.GetChainInfoResponse:
        response: chain_pb2.GetChainInfoResponse = await self.stub.GetChainInfo(
            chain_pb2.GetChainInfoRequest(), timeout=self.timeout
        )
        return response

    async def block(self, height: int) -> SealedBlock:
        response: chain_pb2.GetBlockResponse = await self.stub.GetBlock(
            chain_pb2.GetBlockRequest(height=height), timeout=self.timeout
        )
        return wire.sealed_from_proto(response.block)

    async def stream_blocks(self, start_height: int = 0) -> AsyncIterator[SealedBlock]:
        """Blocks from ``start_height`` on, then new ones as they come (until the caller stops)."""
        call = self.stub.StreamBlocks(chain_pb2.StreamBlocksRequest(start_height=start_height))
        try:
            async for response in call:
                yield wire.sealed_from_proto(response.block)
        finally:
            call.cancel()

    async def balance(self, account: str) -> chain_pb2.GetBalanceResponse:
        response: chain_pb2.GetBalanceResponse = await self.stub.GetBalance(
            chain_pb2.GetBalanceRequest(account=account), timeout=self.timeout
        )
        return response

    async def next_nonce(self, account: str) -> int:
        return (await self.balance(account)).nonce + 1

    async def hotkey_stakes(self, hotkeys: Sequence[str]) -> list[chain_pb2.HotkeyStake]:
        response: chain_pb2.GetHotkeyStakesResponse = await self.stub.GetHotkeyStakes(
            chain_pb2.GetHotkeyStakesRequest(hotkeys=list(hotkeys)), timeout=self.timeout
        )
        return list(response.stakes)

    async def stakes(self, hotkeys: Sequence[str]) -> dict[str, int]:
        """Total stake per hotkey in rao (the consensus service's ``StakeSource`` shape)."""
        return {stake.hotkey: stake.total_rao for stake in await self.hotkey_stakes(hotkeys)}

    async def coldkey_stakes(self, coldkey: str) -> chain_pb2.GetColdkeyStakesResponse:
        response: chain_pb2.GetColdkeyStakesResponse = await self.stub.GetColdkeyStakes(
            chain_pb2.GetColdkeyStakesRequest(coldkey=coldkey), timeout=self.timeout
        )
        return response

    async def settlement(self, netuid: int, epoch: int) -> chain_pb2.GetSettlementResponse:
        response: chain_pb2.GetSettlementResponse = await self.stub.GetSettlement(
            chain_pb2.GetSettlementRequest(netuid=netuid, epoch=epoch), timeout=self.timeout
        )
        return response

    async def settlements(self, netuid: int, *, start_epoch: int = 0) -> list[consensus_pb2.SettlementRecord]:
        """Every recorded settlement of the subnet from ``start_epoch`` on (all pages), in epoch order."""
        records: list[consensus_pb2.SettlementRecord] = []
        while True:
            page: consensus_pb2.ListSettlementsResponse = await self.stub.ListSettlements(
                consensus_pb2.ListSettlementsRequest(netuid=netuid, start_epoch=start_epoch),
                timeout=self.timeout,
            )
            records.extend(page.settlements)
            if not page.next_start_epoch:
                return records
            start_epoch = page.next_start_epoch

    # -- writes ---------------------------------------------------------------------------------------
    async def submit_settlement(
        self, settlement: consensus_pb2.Settlement, *, signer: Keypair | None = None
    ) -> consensus_pb2.SettlementReceipt:
        response: chain_pb2.SubmitSettlementResponse = await self.stub.SubmitSettlement(
            submit_settlement_request(settlement, signer=signer), timeout=self.timeout
        )
        return response.receipt

    async def _nonce(self, keypair: Keypair, nonce: int | None) -> int:
        return nonce if nonce is not None else await self.next_nonce(keypair.hotkey)

    async def register_hotkey(
        self, coldkey: Keypair, hotkey: Keypair, *, nonce: int | None = None
    ) -> chain_pb2.TransactionReceipt:
        request = register_hotkey_request(coldkey, hotkey, nonce=await self._nonce(coldkey, nonce))
        response: chain_pb2.RegisterHotkeyResponse = await self.stub.RegisterHotkey(
            request, timeout=self.timeout
        )
        return response.receipt

    async def register_subnet(
        self, coldkey: Keypair, *, netuid: int, nonce: int | None = None
    ) -> chain_pb2.TransactionReceipt:
        request = register_subnet_request(coldkey, netuid=netuid, nonce=await self._nonce(coldkey, nonce))
        response: chain_pb2.RegisterSubnetResponse = await self.stub.RegisterSubnet(
            request, timeout=self.timeout
        )
        return response.receipt

    async def add_stake(
        self, coldkey: Keypair, *, hotkey: str, amount_rao: int, nonce: int | None = None
    ) -> chain_pb2.TransactionReceipt:
        request = add_stake_request(
            coldkey, hotkey=hotkey, amount_rao=amount_rao, nonce=await self._nonce(coldkey, nonce)
        )
        response: chain_pb2.AddStakeResponse = await self.stub.AddStake(request, timeout=self.timeout)
        return response.receipt

    async def remove_stake(
        self, coldkey: Keypair, *, hotkey: str, amount_rao: int, nonce: int | None = None
    ) -> chain_pb2.TransactionReceipt:
        request = remove_stake_request(
            coldkey, hotkey=hotkey, amount_rao=amount_rao, nonce=await self._nonce(coldkey, nonce)
        )
        response: chain_pb2.RemoveStakeResponse = await self.stub.RemoveStake(request, timeout=self.timeout)
        return response.receipt

    async def set_delegate_take(
        self, coldkey: Keypair, *, hotkey: str, take: int, nonce: int | None = None
    ) -> chain_pb2.TransactionReceipt:
        request = set_delegate_take_request(
            coldkey, hotkey=hotkey, take=take, nonce=await self._nonce(coldkey, nonce)
        )
        response: chain_pb2.SetDelegateTakeResponse = await self.stub.SetDelegateTake(
            request, timeout=self.timeout
        )
        return response.receipt
