"""``ConsensusServicer``: the gRPC edge of the consensus service, and ``create_server``.

Composed by ``kubetensor.consensus.__main__`` and by the integration tests. It only translates: a wire
request becomes a ``service`` request type (whose construction checks field shapes and raises
INVALID_ARGUMENT naming the field), the domain answer becomes a wire response. Signatures are
checked by the domain over ``kubetensor.core.signing.payload(request)``. Domain errors become status
codes in ``kubetensor.core.grpcserver.ErrorInterceptor``, never here.
"""

from __future__ import annotations

from typing import Any

import grpc

from kubetensor.consensus.fixed import ONE
from kubetensor.consensus.metagraph import Neuron, WeightRow
from kubetensor.consensus.service import (
    MAX_PAGE,
    ConsensusService,
    NeuronDeregistration,
    NeuronRegistration,
    SignedBytes,
    WeightSubmission,
)
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.core import grpcserver, signing
from kubetensor.core.settlementwire import settlement_to_proto
from kubetensor.v1 import common_pb2, consensus_pb2, consensus_pb2_grpc

SERVICE_NAME = "kubetensor.v1.ConsensusService"
"""Full gRPC name of the service (also its health-check name)."""


def _signed(request: Any) -> SignedBytes:
    return SignedBytes(
        public_key=request.signature.public_key,
        signature=request.signature.signature,
        payload=signing.payload(request),
    )


def _row(row: WeightRow) -> list[common_pb2.WeightEntry]:
    return [common_pb2.WeightEntry(uid=uid, weight=value) for uid, value in row]


def neuron_to_proto(neuron: Neuron) -> common_pb2.Neuron:
    """The wire form of a neuron (I32F32 values as exact doubles)."""
    return common_pb2.Neuron(
        uid=neuron.uid,
        hotkey=neuron.hotkey,
        coldkey=neuron.coldkey,
        validator_permit=neuron.validator_permit,
        stake_rao=neuron.stake_rao,
        registered_at_block=neuron.registered_at_block,
        last_update_block=neuron.last_update_block,
        incentive=neuron.incentive / ONE,
        dividends=neuron.dividends / ONE,
        validator_trust=neuron.validator_trust / ONE,
        consensus=neuron.consensus / ONE,
        emission_rao=neuron.emission_rao,
        weights=_row(neuron.weights),
        bonds=_row(neuron.bonds),
    )


class ConsensusServicer(consensus_pb2_grpc.ConsensusServiceServicer):
    """Translates ``kubetensor.v1.ConsensusService`` calls to ``ConsensusService``."""

    def __init__(self, service: ConsensusService) -> None:
        self._service = service

    async def RegisterNeuron(
        self, request: consensus_pb2.RegisterNeuronRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.RegisterNeuronResponse:
        registration = NeuronRegistration(
            netuid=request.netuid,
            hotkey=request.hotkey,
            coldkey=request.coldkey,
            nonce=request.nonce,
            signed=_signed(request),
        )
        registered = await self._service.register(registration)
        return consensus_pb2.RegisterNeuronResponse(uid=registered.uid, registered_at_block=registered.block)

    async def DeregisterNeuron(
        self, request: consensus_pb2.DeregisterNeuronRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.DeregisterNeuronResponse:
        deregistration = NeuronDeregistration(
            netuid=request.netuid, hotkey=request.hotkey, nonce=request.nonce, signed=_signed(request)
        )
        freed = await self._service.deregister(deregistration)
        return consensus_pb2.DeregisterNeuronResponse(uid=freed.uid, deregistered_at_block=freed.block)

    async def SetWeights(
        self, request: consensus_pb2.SetWeightsRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.SetWeightsResponse:
        submission = WeightSubmission(
            netuid=request.netuid,
            hotkey=request.hotkey,
            weights=tuple((entry.uid, entry.weight) for entry in request.weights),
            nonce=request.nonce,
            signed=_signed(request),
        )
        block = await self._service.set_weights(submission)
        return consensus_pb2.SetWeightsResponse(block=block)

    async def GetMetagraph(
        self, request: consensus_pb2.GetMetagraphRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.GetMetagraphResponse:
        snapshot = self._service.snapshot(request.netuid)
        metagraph = snapshot.metagraph
        return consensus_pb2.GetMetagraphResponse(
            netuid=metagraph.netuid,
            block=snapshot.block,
            epoch=metagraph.epoch,
            neurons=[neuron_to_proto(neuron) for neuron in metagraph.registered],
            last_epoch_block=metagraph.last_epoch_block,
        )

    async def ListSettlements(
        self, request: consensus_pb2.ListSettlementsRequest, context: grpc.aio.ServicerContext
    ) -> consensus_pb2.ListSettlementsResponse:
        limit = request.limit or MAX_PAGE
        # One more than asked tells whether another page follows.
        records = self._service.settlements(
            request.netuid, start_epoch=request.start_epoch, limit=min(limit, MAX_PAGE) + 1
        )
        page, rest = records[: min(limit, MAX_PAGE)], records[min(limit, MAX_PAGE) :]
        return consensus_pb2.ListSettlementsResponse(
            settlements=[
                consensus_pb2.SettlementRecord(
                    settlement=settlement_to_proto(record.settlement),
                    receipt=None
                    if record.receipt is None
                    else consensus_pb2.SettlementReceipt(
                        block=record.receipt.block, settlement_hash=record.receipt.settlement_hash
                    ),
                )
                for record in page
            ],
            next_start_epoch=rest[0].settlement.epoch if rest else 0,
        )


def create_server(
    settings: ConsensusSettings, service: ConsensusService, *, health: grpcserver.Health | None = None
) -> tuple[grpc.aio.Server, int]:
    """A server with the consensus and health services on ``settings.listen``; returns it and its port."""
    server = grpcserver.new_server()
    consensus_pb2_grpc.add_ConsensusServiceServicer_to_server(ConsensusServicer(service), server)
    (health or grpcserver.Health([SERVICE_NAME])).register(server)
    port: int = server.add_insecure_port(settings.listen)
    return server, port
