"""``ConsensusClient``: signed calls to a consensus service, for validators, miners, tools and tests.

Builds requests, signs them with the hotkey's ``Keypair`` (``kubetensor.core.signing.sign``, the same
definition the server verifies with). Wire settlements it returns turn back into domain values, to
recompute and check their hashes, with ``kubetensor.core.settlementwire.settlement_from_proto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import grpc

from kubetensor.consensus.service import DEREGISTER_NEURON, REGISTER_NEURON, SET_WEIGHTS
from kubetensor.core import grpctracing, signing
from kubetensor.core.keys import Keypair
from kubetensor.v1 import common_pb2, consensus_pb2, consensus_pb2_grpc


def register_request(
    keypair: Keypair, *, netuid: int, coldkey: str, nonce: int
) -> consensus_pb2.RegisterNeuronRequest:
    """A ``RegisterNeuronRequest`` for ``keypair``'s hotkey, signed by it."""
    request = consensus_pb2.RegisterNeuronRequest(
        netuid=netuid, hotkey=keypair.hotkey, coldkey=coldkey, nonce=nonce
    )
    signing.sign(request, keypair, domain=REGISTER_NEURON)
    return request


def deregister_request(keypair: Keypair, *, netuid: int, nonce: int) -> consensus_pb2.DeregisterNeuronRequest:
    """A ``DeregisterNeuronRequest`` for ``keypair``'s hotkey, signed by it."""
    request = consensus_pb2.DeregisterNeuronRequest(netuid=netuid, hotkey=keypair.hotkey, nonce=nonce)
    signing.sign(request, keypair, domain=DEREGISTER_NEURON)
    return request


def set_weights_request(
    keypair: Keypair, *, netuid: int, weights: Sequence[tuple[int, int]], nonce: int
) -> consensus_pb2.SetWeightsRequest:
    """A ``SetWeightsRequest`` of ``(uid, u16)`` pairs for ``keypair``'s hotkey, signed by it."""
    request = consensus_pb2.SetWeightsRequest(
        netuid=netuid,
        hotkey=keypair.hotkey,
        weights=[common_pb2.WeightEntry(uid=uid, weight=weight) for uid, weight in weights],
        nonce=nonce,
    )
    signing.sign(request, keypair, domain=SET_WEIGHTS)
    return request


class ConsensusClient:
    """An async client of ``kubetensor.v1.ConsensusService`` for one subnet."""

    def __init__(self, channel: grpc.aio.Channel, *, netuid: int, call_seconds: float | None = 10.0) -> None:
        self._channel = channel
        self._stub = consensus_pb2_grpc.ConsensusServiceStub(channel)
        self.netuid = netuid
        self.call_seconds = call_seconds
        """Deadline of each call in seconds (None: no deadline)."""

    @classmethod
    def connect(cls, address: str, *, netuid: int, call_seconds: float | None = 10.0) -> ConsensusClient:
        """A client over an insecure channel to ``address`` (host:port)."""
        return cls(grpctracing.channel(address), netuid=netuid, call_seconds=call_seconds)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ConsensusClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def register(
        self, keypair: Keypair, *, coldkey: str, nonce: int
    ) -> consensus_pb2.RegisterNeuronResponse:
        """Register ``keypair``'s hotkey, owned by ``coldkey`` (hex)."""
        request = register_request(keypair, netuid=self.netuid, coldkey=coldkey, nonce=nonce)
        response: consensus_pb2.RegisterNeuronResponse = await self._stub.RegisterNeuron(
            request, timeout=self.call_seconds
        )
        return response

    async def deregister(self, keypair: Keypair, *, nonce: int) -> consensus_pb2.DeregisterNeuronResponse:
        """Free the uid ``keypair``'s hotkey holds (NOT_FOUND when it holds none)."""
        request = deregister_request(keypair, netuid=self.netuid, nonce=nonce)
        response: consensus_pb2.DeregisterNeuronResponse = await self._stub.DeregisterNeuron(
            request, timeout=self.call_seconds
        )
        return response

    async def set_weights(
        self,
        keypair: Keypair,
        *,
        weights: Sequence[tuple[int, int]],
        nonce: int,
    ) -> consensus_pb2.SetWeightsResponse:
        """Set ``keypair``'s weights (``(uid, u16)`` pairs)."""
        request = set_weights_request(keypair, netuid=self.netuid, weights=weights, nonce=nonce)
        response: consensus_pb2.SetWeightsResponse = await self._stub.SetWeights(
            request, timeout=self.call_seconds
        )
        return response

    async def metagraph(self) -> consensus_pb2.GetMetagraphResponse:
        """The subnet's current metagraph."""
        request = consensus_pb2.GetMetagraphRequest(netuid=self.netuid)
        response: consensus_pb2.GetMetagraphResponse = await self._stub.GetMetagraph(
            request, timeout=self.call_seconds
        )
        return response

    async def settlements(self, *, start_epoch: int = 0) -> list[consensus_pb2.SettlementRecord]:
        """Every committed settlement from ``start_epoch`` on (all pages), in epoch order."""
        records: list[consensus_pb2.SettlementRecord] = []
        while True:
            request = consensus_pb2.ListSettlementsRequest(netuid=self.netuid, start_epoch=start_epoch)
            page: consensus_pb2.ListSettlementsResponse = await self._stub.ListSettlements(
                request, timeout=self.call_seconds
            )
            records.extend(page.settlements)
            if not page.next_start_epoch:
                return records
            start_epoch = page.next_start_epoch
