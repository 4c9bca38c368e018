"""``ChainServicer``: the gRPC edge of the chain sidecar, and ``create_server``.

Composed by ``kubetensor.chain.__main__`` and by the integration tests. It only translates: requests
become domain values through ``wire`` (whose constructors raise INVALID_ARGUMENT naming the field), the
domain answers become responses. Signatures are verified by ``ChainService``; domain errors become
status codes in ``kubetensor.core.grpcserver.ErrorInterceptor``, never here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from kubetensor.chain import wire
from kubetensor.chain.service import MAX_PAGE, ChainService, HotkeyStake, StakePosition
from kubetensor.chain.settings import ChainSettings
from kubetensor.core import grpcserver
from kubetensor.v1 import chain_pb2, chain_pb2_grpc, consensus_pb2

SERVICE_NAME = "kubetensor.v1.ChainService"
"""Full gRPC name of the service (also its health-check name)."""


def _position(position: StakePosition) -> chain_pb2.StakePosition:
    return chain_pb2.StakePosition(
        hotkey=position.hotkey, coldkey=position.coldkey, stake_rao=position.stake_rao
    )


def _hotkey_stake(stake: HotkeyStake) -> chain_pb2.HotkeyStake:
    return chain_pb2.HotkeyStake(
        hotkey=stake.hotkey,
        owner=stake.owner or "",
        take=stake.take,
        total_rao=stake.total_rao,
        positions=[_position(p) for p in stake.positions],
    )


class ChainServicer(chain_pb2_grpc.ChainServiceServicer):
    """Translates ``kubetensor.v1.ChainService`` calls to ``ChainService``."""

    def __init__(self, service: ChainService) -> None:
        self._service = service

    async def SubmitSettlement(
        self, request: chain_pb2.SubmitSettlementRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.SubmitSettlementResponse:
        receipt = await self._service.submit_settlement(wire.submission_from_request(request))
        return chain_pb2.SubmitSettlementResponse(receipt=wire.receipt_to_proto(receipt))

    async def GetSettlement(
        self, request: chain_pb2.GetSettlementRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetSettlementResponse:
        recorded = self._service.settlement(request.netuid, request.epoch)
        return chain_pb2.GetSettlementResponse(
            settlement=wire.settlement_to_proto(recorded.settlement),
            receipt=wire.receipt_to_proto(recorded.receipt),
            credits=[wire.credit_to_proto(credit) for credit in recorded.credits],
        )

    async def ListSettlements(
        self, request: consensus_pb2.ListSettlementsRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.ListSettlementsResponse:
        limit = min(request.limit or MAX_PAGE, MAX_PAGE)
        # One more than asked tells whether another page follows.
        records = self._service.settlements(request.netuid, start_epoch=request.start_epoch, limit=limit + 1)
        page, rest = records[:limit], records[limit:]
        return consensus_pb2.ListSettlementsResponse(
            settlements=[
                consensus_pb2.SettlementRecord(
                    settlement=wire.settlement_to_proto(record.settlement),
                    receipt=wire.receipt_to_proto(record.receipt),
                )
                for record in page
            ],
            next_start_epoch=rest[0].settlement.epoch if rest else 0,
        )

    async def GetBlock(
        self, request: chain_pb2.GetBlockRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetBlockResponse:
        return chain_pb2.GetBlockResponse(block=wire.block_to_proto(self._service.block(request.height)))

    async def StreamBlocks(
        self, request: chain_pb2.StreamBlocksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chain_pb2.StreamBlocksResponse]:
        async for sealed in self._service.blocks(request.start_height):
            yield chain_pb2.StreamBlocksResponse(block=wire.block_to_proto(sealed))

    async def GetChainInfo(
        self, request: chain_pb2.GetChainInfoRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetChainInfoResponse:
        info = self._service.info()
        return chain_pb2.GetChainInfoResponse(
            height=info.height,
            head_hash=info.head_hash,
            genesis_hash=info.genesis_hash,
            authority=info.authority,
            issuance_rao=info.issuance_rao,
        )

    async def GetBalance(
        self, request: chain_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetBalanceResponse:
        balance = self._service.balance(request.account)
        return chain_pb2.GetBalanceResponse(
            account=balance.account,
            free_rao=balance.free_rao,
            staked_rao=balance.staked_rao,
            nonce=balance.nonce,
        )

    async def GetHotkeyStakes(
        self, request: chain_pb2.GetHotkeyStakesRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetHotkeyStakesResponse:
        stakes = self._service.hotkey_stakes(list(request.hotkeys))
        return chain_pb2.GetHotkeyStakesResponse(stakes=[_hotkey_stake(stake) for stake in stakes])

    async def GetColdkeyStakes(
        self, request: chain_pb2.GetColdkeyStakesRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.GetColdkeyStakesResponse:
        positions = self._service.coldkey_stakes(request.coldkey)
        return chain_pb2.GetColdkeyStakesResponse(
            positions=[_position(p) for p in positions], total_rao=sum(p.stake_rao for p in positions)
        )

    async def _transact(self, request: wire.TransactionRequest) -> chain_pb2.TransactionReceipt:
        receipt = await self._service.submit_transaction(wire.transaction_from_request(request))
        return wire.transaction_receipt_to_proto(receipt)

    async def RegisterHotkey(
        self, request: chain_pb2.RegisterHotkeyRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.RegisterHotkeyResponse:
        return chain_pb2.RegisterHotkeyResponse(receipt=await self._transact(request))

    async def RegisterSubnet(
        self, request: chain_pb2.RegisterSubnetRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.RegisterSubnetResponse:
        return chain_pb2.RegisterSubnetResponse(receipt=await self._transact(request))

    async def AddStake(
        self, request: chain_pb2.AddStakeRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.AddStakeResponse:
        return chain_pb2.AddStakeResponse(receipt=await self._transact(request))

    async def RemoveStake(
        self, request: chain_pb2.RemoveStakeRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.RemoveStakeResponse:
        return chain_pb2.RemoveStakeResponse(receipt=await self._transact(request))

    async def SetDelegateTake(
        self, request: chain_pb2.SetDelegateTakeRequest, context: grpc.aio.ServicerContext
    ) -> chain_pb2.SetDelegateTakeResponse:
        return chain_pb2.SetDelegateTakeResponse(receipt=await self._transact(request))


def create_server(
    settings: ChainSettings, service: ChainService, *, health: grpcserver.Health | None = None
) -> tuple[grpc.aio.Server, int]:
    """A server with the chain and health services on ``settings.listen``; returns it and its port."""
    server = grpcserver.new_server()
    chain_pb2_grpc.add_ChainServiceServicer_to_server(ChainServicer(service), server)
    (health or grpcserver.Health([SERVICE_NAME])).register(server)
    port: int = server.add_insecure_port(settings.listen)
    return server, port
