"""The consensus service's client of the chain sidecar: its stake source and its settlement sink.

Composed by ``__main__`` when ``KT_CONSENSUS_CHAIN_ADDRESS`` is set (the chain sidecar runs next to the
consensus service in the same pod). ``ChainSidecar.stakes`` answers the ``StakeSource`` protocol from
the ledger's ``GetHotkeyStakes``; ``ChainSidecar.submit`` answers the ``SettlementSink`` protocol with
``SubmitSettlement``, which the ledger makes idempotent by (netuid, epoch). A client module: it is,
with the servicer, the only kind of consensus module that touches generated proto code.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from kubetensor.consensus.errors import SettlementConflictError
from kubetensor.consensus.settlement import Receipt
from kubetensor.core import grpctracing
from kubetensor.core.errors import UnavailableError
from kubetensor.core.settlement import Settlement
from kubetensor.core.settlementwire import settlement_to_proto
from kubetensor.v1 import chain_pb2, chain_pb2_grpc

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class ChainSidecar:
    """Stake source and settlement sink backed by a running chain sidecar."""

    def __init__(self, channel: grpc.aio.Channel, *, call_seconds: float = 10.0) -> None:
        self._channel = channel
        self._stub = chain_pb2_grpc.ChainServiceStub(channel)
        self._call_seconds = call_seconds

    @classmethod
    def connect(cls, address: str, *, call_seconds: float = 10.0) -> ChainSidecar:
        return cls(grpctracing.channel(address), call_seconds=call_seconds)

    async def close(self) -> None:
        await self._channel.close()

    async def stakes(self, hotkeys: Sequence[str]) -> dict[str, int]:
        """Total stake per hotkey in rao, as the ledger holds it now."""
        try:
            response = await self._stub.GetHotkeyStakes(
                chain_pb2.GetHotkeyStakesRequest(hotkeys=list(hotkeys)), timeout=self._call_seconds
            )
        except grpc.aio.AioRpcError as error:
            raise UnavailableError(
                f"chain sidecar GetHotkeyStakes: {error.code().name}: {error.details()}"
            ) from error
        if len(response.stakes) != len(hotkeys):
            raise UnavailableError(
                f"chain sidecar answered {len(response.stakes)} stakes for {len(hotkeys)} hotkeys"
            )
        # The ledger answers in request order; key by the hotkey we asked for.
        return {hotkey: int(stake.total_rao) for hotkey, stake in zip(hotkeys, response.stakes, strict=True)}

    async def submit(self, settlement: Settlement) -> Receipt:
        """Record ``settlement`` on the ledger; the original receipt when it was recorded before."""
        request = chain_pb2.SubmitSettlementRequest(settlement=settlement_to_proto(settlement))
        try:
            response = await self._stub.SubmitSettlement(request, timeout=self._call_seconds)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise SettlementConflictError(
                    settlement.netuid,
                    epoch=settlement.epoch,
                    existing_hash="(on the ledger)",
                    new_hash=settlement.hash,
                ) from error
            if error.code() in _RETRYABLE:
                raise UnavailableError(f"chain sidecar unavailable: {error.details()}") from error
            raise
        receipt = response.receipt
        if receipt.settlement_hash != settlement.hash:
            raise SettlementConflictError(
                settlement.netuid,
                epoch=settlement.epoch,
                existing_hash=receipt.settlement_hash,
                new_hash=settlement.hash,
            )
        return Receipt(settlement_hash=receipt.settlement_hash, block=int(receipt.block))
