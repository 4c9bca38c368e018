"""The consensus service behind a real grpc.aio server on port 0: status codes of refused requests (and
that they change nothing), the full register -> weights -> epochs -> settlements loop, error mapping of
unexpected failures, and health. Blocks come from a manual clock so the test controls every epoch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubetensor.consensus.client import (
    ConsensusClient,
    deregister_request,
    register_request,
    set_weights_request,
)
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.servicer import create_server
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.core.keys import Keypair
from kubetensor.core.settlementwire import settlement_from_proto
from kubetensor.v1 import consensus_pb2, consensus_pb2_grpc

from tests.consensus_support import (
    COLDKEY,
    MINERS,
    NETUID,
    TEMPO,
    VALIDATORS,
    Node,
    build,
    eventually,
    keypair,
)


@dataclass
class Served:
    node: Node
    clock: ManualClock
    client: ConsensusClient
    stub: consensus_pb2_grpc.ConsensusServiceStub
    channel: grpc.aio.Channel


async def serve(node: Node) -> tuple[grpc.aio.Server, int]:
    server, port = create_server(ConsensusSettings(listen="127.0.0.1:0"), node.service)
    await node.service.start()
    await server.start()
    return server, port


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    clock = ManualClock()
    node = build(tmp_path / "state.sqlite3", clock=clock)
    server, port = await serve(node)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = ConsensusClient(channel, netuid=NETUID)
    try:
        yield Served(node, clock, client, consensus_pb2_grpc.ConsensusServiceStub(channel), channel)
    finally:
        await channel.close()
        await server.stop(None)
        await node.service.stop()
        node.store.close()


async def populate(served: Served) -> None:
    """Validators and miners registered, epoch 1 run (permits), the validators' weights set."""
    for key in (*VALIDATORS, *MINERS):
        await served.client.register(key, coldkey=COLDKEY, nonce=1)
    served.clock.advance(TEMPO)
    await eventually(lambda: served.node.store.settlements() != [], what="epoch 1")
    for validator in VALIDATORS:
        await served.client.set_weights(validator, weights=[(2, 300), (3, 100), (4, 0)], nonce=1)


async def refused(call: grpc.aio.UnaryUnaryCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def test_forged_signature_is_unauthenticated_and_changes_nothing(served: Served) -> None:
    await populate(served)
    before = await served.client.metagraph()
    forged = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1)], nonce=2)
    forged.signature.signature = bytes(64)
    error = await refused(served.stub.SetWeights(forged))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature" in (error.details() or "")

    impostor = register_request(keypair(60), netuid=NETUID, coldkey=COLDKEY, nonce=1)
    impostor.hotkey = keypair(61).hotkey
    error = await refused(served.stub.RegisterNeuron(impostor))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await served.client.metagraph() == before


async def test_replayed_or_stale_requests_are_refused_and_change_nothing(served: Served) -> None:
    await populate(served)
    accepted = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1), (3, 2)], nonce=5)
    await served.stub.SetWeights(accepted)
    before = await served.client.metagraph()

    error = await refused(served.stub.SetWeights(accepted))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    stale = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 9), (3, 2)], nonce=5)
    error = await refused(served.stub.SetWeights(stale))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "nonce" in (error.details() or "")
    replayed_registration = register_request(MINERS[0], netuid=NETUID, coldkey=COLDKEY, nonce=1)
    error = await refused(served.stub.RegisterNeuron(replayed_registration))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert await served.client.metagraph() == before


async def test_malformed_requests_are_invalid_argument_naming_the_field(served: Served) -> None:
    await populate(served)
    before = await served.client.metagraph()
    bad_hotkey = register_request(keypair(70), netuid=NETUID, coldkey=COLDKEY, nonce=1)
    bad_hotkey.hotkey = "not-hex"
    unsigned = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1)], nonce=9)
    unsigned.ClearField("signature")
    heavy = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1), (3, 65_536)], nonce=9)
    duplicate = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1), (2, 1)], nonce=9)
    unknown = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1), (40, 1)], nonce=9)
    calls: list[tuple[grpc.aio.UnaryUnaryCall, str]] = [
        (served.stub.RegisterNeuron(bad_hotkey), "hotkey:"),
        (served.stub.SetWeights(unsigned), "signature:"),
        (served.stub.SetWeights(heavy), "weights[1].weight:"),
        (served.stub.SetWeights(duplicate), "weights[1].uid:"),
        (served.stub.SetWeights(unknown), "weights[1].uid:"),
    ]
    for call, field in calls:
        error = await refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(field), error.details()
    assert await served.client.metagraph() == before


async def test_weights_without_a_validator_permit_are_permission_denied(served: Served) -> None:
    await populate(served)
    before = await served.client.metagraph()
    miner = MINERS[0]
    error = await refused(
        served.stub.SetWeights(set_weights_request(miner, netuid=NETUID, weights=[(3, 1)], nonce=1))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await served.client.metagraph() == before
    # A self-weight needs no permit (uid 2 is the first miner).
    await served.client.set_weights(miner, weights=[(2, 1)], nonce=1)


async def test_unknown_subnet_and_unregistered_hotkey_are_not_found(served: Served) -> None:
    await populate(served)
    error = await refused(served.stub.GetMetagraph(consensus_pb2.GetMetagraphRequest(netuid=NETUID + 1)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    stranger: Keypair = keypair(80)
    error = await refused(
        served.stub.SetWeights(set_weights_request(stranger, netuid=NETUID, weights=[(0, 1)], nonce=1))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_full_loop_settles_hash_linked_epochs_and_incentive_follows_weights(served: Served) -> None:
    await populate(served)
    for epoch in (2, 3, 4):
        served.clock.advance(TEMPO)
        await eventually(
            lambda epoch=epoch: len(served.node.store.settlements()) == epoch, what=f"epoch {epoch}"
        )
    await eventually(lambda: not served.node.store.undelivered(), what="delivery of every settlement")

    records = await served.client.settlements()
    assert [r.settlement.epoch for r in records] == [1, 2, 3, 4]
    previous = ""
    for record in records:
        settlement = record.settlement
        assert settlement.previous_hash == previous
        assert settlement_from_proto(settlement).hash == settlement.hash
        assert record.receipt.settlement_hash == settlement.hash
        previous = settlement.hash

    metagraph = await served.client.metagraph()
    assert metagraph.epoch == 4
    neurons = metagraph.neurons
    assert [n.validator_permit for n in neurons] == [True, True, False, False, False]
    assert neurons[2].incentive > neurons[3].incentive > neurons[4].incentive == 0
    assert neurons[2].emission_rao > neurons[3].emission_rao
    assert neurons[0].dividends > neurons[1].dividends > 0
    assert [(w.uid, w.weight) for w in neurons[0].weights] == [(2, 65535), (3, 21845), (4, 0)]
    assert neurons[0].bonds
    last = records[-1].settlement
    assert [e.incentive for e in last.entries] == [n.incentive for n in neurons]


async def test_settlements_are_paged(served: Served) -> None:
    for _ in range(3):
        served.clock.advance(TEMPO)
        await eventually(lambda: served.node.service.next_epoch_block > served.clock.block(), what="an epoch")
    page = await served.stub.ListSettlements(consensus_pb2.ListSettlementsRequest(netuid=NETUID, limit=2))
    assert [r.settlement.epoch for r in page.settlements] == [1, 2]
    assert page.next_start_epoch == 3
    rest = await served.stub.ListSettlements(
        consensus_pb2.ListSettlementsRequest(netuid=NETUID, start_epoch=page.next_start_epoch)
    )
    assert [r.settlement.epoch for r in rest.settlements] == [3]
    assert rest.next_start_epoch == 0


class BrokenStake:
    async def stakes(self, hotkeys: object) -> dict[str, int]:
        raise RuntimeError("a bug in the stake source")


async def test_unexpected_error_is_internal_and_logged_with_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = build(tmp_path / "state.sqlite3", stake_source=BrokenStake())
    server, port = await serve(node)
    try:
        async with ConsensusClient.connect(f"127.0.0.1:{port}", netuid=NETUID) as client:
            with (
                caplog.at_level(logging.ERROR, logger="kubetensor.core.grpcserver"),
                pytest.raises(grpc.aio.AioRpcError) as error,
            ):
                await client.register(MINERS[0], coldkey=COLDKEY, nonce=1)
            assert error.value.code() == grpc.StatusCode.INTERNAL
            assert "a bug" not in (error.value.details() or "")
            assert any(
                r.exc_info is not None and "a bug in the stake source" in str(r.exc_info[1])
                for r in caplog.records
            )
            assert (await client.metagraph()).neurons == []
    finally:
        await server.stop(None)
        await node.service.stop()
        node.store.close()


async def test_health_reports_serving_through_the_error_interceptor(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    # Watch is a server-streaming handler that writes with context.write; the interceptor must pass it on.
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    error = await refused(health.Check(health_pb2.HealthCheckRequest(service="no.such.Service")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_deregistration_over_grpc_frees_the_uid_and_maps_refusals_to_status_codes(
    served: Served,
) -> None:
    await populate(served)
    miner = MINERS[1]
    forged = deregister_request(miner, netuid=NETUID, nonce=1)
    forged.signature.signature = bytes(64)
    error = await refused(served.stub.DeregisterNeuron(forged))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature: not a valid DeregisterNeuron signature" in (error.details() or "")
    error = await refused(
        served.stub.DeregisterNeuron(deregister_request(keypair(90), netuid=NETUID, nonce=1))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "is not registered" in (error.details() or "")

    freed = await served.client.deregister(miner, nonce=1)
    assert freed.uid == 3
    graph = await served.client.metagraph()
    assert miner.hotkey not in {n.hotkey for n in graph.neurons}

    # A client retrying after a lost answer learns it went through; a fresh request finds nothing to free.
    error = await refused(served.stub.DeregisterNeuron(deregister_request(miner, netuid=NETUID, nonce=1)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = await refused(served.stub.DeregisterNeuron(deregister_request(miner, netuid=NETUID, nonce=2)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert await served.client.metagraph() == graph

    served.clock.advance(TEMPO)
    await eventually(lambda: len(served.node.store.settlements()) == 2, what="epoch 2")
    (last,) = await served.client.settlements(start_epoch=2)
    assert [e.uid for e in last.settlement.entries] == [0, 1, 2, 4]
    assert settlement_from_proto(last.settlement).hash == last.settlement.hash
