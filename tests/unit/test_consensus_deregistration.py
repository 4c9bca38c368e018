"""Unit tests for ``DeregisterNeuron`` through ``ConsensusServicer`` (no network) on a manual clock: who
may deregister, nonces and replays, refusals that change nothing, the freed uid leaving the metagraph and
the settlements, its reuse, and the vacancy surviving a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetensor.consensus.client import deregister_request, register_request
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.errors import (
    BadSignatureError,
    MalformedRequestError,
    NotRegisteredError,
    ReplayedRequestError,
    StaleNonceError,
    UnknownSubnetError,
)
from kubetensor.consensus.metagraph import Neuron
from kubetensor.consensus.servicer import ConsensusServicer
from kubetensor.core.keys import Keypair
from kubetensor.v1 import consensus_pb2

from tests.consensus_support import COLDKEY, MINERS, NETUID, TEMPO, VALIDATORS, build, keypair
from tests.unit.test_consensus_service import populate, register, state_of


async def deregister(
    servicer: ConsensusServicer, key: Keypair, *, nonce: int = 1
) -> consensus_pb2.DeregisterNeuronResponse:
    request = deregister_request(key, netuid=NETUID, nonce=nonce)
    return await servicer.DeregisterNeuron(request, None)  # type: ignore[arg-type]


async def metagraph(servicer: ConsensusServicer) -> consensus_pb2.GetMetagraphResponse:
    request = consensus_pb2.GetMetagraphRequest(netuid=NETUID)
    return await servicer.GetMetagraph(request, None)  # type: ignore[arg-type]


async def test_deregistration_frees_the_uid_and_the_metagraph_no_longer_lists_the_hotkey(
    tmp_path: Path,
) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(3)
    miner = MINERS[0]

    freed = await deregister(servicer, miner)

    assert (freed.uid, freed.deregistered_at_block) == (2, TEMPO + 3)
    graph = await metagraph(servicer)
    assert miner.hotkey not in {n.hotkey for n in graph.neurons}
    assert [n.uid for n in graph.neurons] == [0, 1, 3, 4]
    # The validators' weights to it are zeros now; their other entries stand.
    assert [(w.uid, w.weight) for w in graph.neurons[0].weights] == [(2, 0), (3, 21845), (4, 0)]
    node.store.close()


async def test_a_settlement_after_the_deregistration_leaves_the_uid_out_and_it_earns_nothing(
    tmp_path: Path,
) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(TEMPO)
    before = await node.service.run_due_epoch()
    assert before is not None
    assert {e.uid: e.incentive for e in before.entries}[2] > 0

    await deregister(servicer, MINERS[0])
    node.clock.advance(TEMPO)
    after = await node.service.run_due_epoch()

    assert after is not None
    assert after.previous_hash == before.hash
    assert [e.uid for e in after.entries] == [0, 1, 3, 4]
    assert MINERS[0].hotkey not in {e.hotkey for e in after.entries}
    by_uid = {e.uid: e for e in after.entries}
    assert by_uid[3].incentive > {e.uid: e for e in before.entries}[3].incentive
    # Nothing is emitted to the vacancy: the others share the epoch's emission (to fixed-point rounding).
    total_after = sum(e.emission_rao for e in after.entries)
    assert total_after == pytest.approx(sum(e.emission_rao for e in before.entries), rel=1e-9)
    node.store.close()


async def test_the_next_registration_takes_the_freed_uid(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    await deregister(servicer, MINERS[1])
    newcomer = keypair(30)
    assert await register(servicer, newcomer) == 3
    # The deregistered hotkey may come back; with no vacancy left it appends.
    assert await register(servicer, MINERS[1], nonce=2) == 5
    node.store.close()


async def test_the_vacancy_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    node = build(state)
    servicer = await populate(node)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(5)
    await deregister(servicer, MINERS[0])
    kept = node.store.load_metagraph()
    assert kept.neurons[2] == Neuron.vacancy(2, block=TEMPO + 5)
    assert kept == node.service.snapshot(NETUID).metagraph
    node.store.close()

    again = build(state)
    restarted = ConsensusServicer(again.service)
    assert again.service.snapshot(NETUID).metagraph == kept
    # The clock never restarts below the block the uid was freed at.
    assert again.store.highest_block() == TEMPO + 5
    assert MINERS[0].hotkey not in {n.hotkey for n in (await metagraph(restarted)).neurons}
    # The nonce was persisted with it: the same request is a replay, not a second deregistration.
    with pytest.raises(ReplayedRequestError):
        await deregister(restarted, MINERS[0])
    assert await register(restarted, keypair(31)) == 2
    again.store.close()


async def test_deregistration_refusals_name_what_is_wrong_and_change_nothing(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    before = state_of(node)
    miner = MINERS[0]

    forged = deregister_request(miner, netuid=NETUID, nonce=1)
    forged.signature.signature = bytes(64)
    with pytest.raises(BadSignatureError, match="signature: not a valid DeregisterNeuron signature"):
        await servicer.DeregisterNeuron(forged, None)  # type: ignore[arg-type]

    # Someone else's key cannot deregister the miner, nor can a signature made for registering it.
    stolen = deregister_request(keypair(50), netuid=NETUID, nonce=1)
    stolen.hotkey = miner.hotkey
    with pytest.raises(BadSignatureError):
        await servicer.DeregisterNeuron(stolen, None)  # type: ignore[arg-type]
    registration = register_request(miner, netuid=NETUID, coldkey=COLDKEY, nonce=1)
    cross = consensus_pb2.DeregisterNeuronRequest(netuid=NETUID, hotkey=miner.hotkey, nonce=1)
    cross.signature.CopyFrom(registration.signature)
    with pytest.raises(BadSignatureError):
        await servicer.DeregisterNeuron(cross, None)  # type: ignore[arg-type]

    unsigned = deregister_request(miner, netuid=NETUID, nonce=1)
    unsigned.ClearField("signature")
    with pytest.raises(MalformedRequestError) as malformed:
        await servicer.DeregisterNeuron(unsigned, None)  # type: ignore[arg-type]
    assert malformed.value.field == "signature"

    with pytest.raises(NotRegisteredError):
        await deregister(servicer, keypair(60))
    with pytest.raises(UnknownSubnetError):
        await servicer.DeregisterNeuron(deregister_request(miner, netuid=NETUID + 1, nonce=1), None)  # type: ignore[arg-type]
    assert state_of(node) == before
    # None of the refusals consumed nonce 1.
    assert (await deregister(servicer, miner, nonce=1)).uid == 2
    node.store.close()


async def test_deregistering_twice_is_a_replay_or_not_found_never_a_second_change(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    miner = MINERS[2]
    request = deregister_request(miner, netuid=NETUID, nonce=5)
    await servicer.DeregisterNeuron(request, None)  # type: ignore[arg-type]
    after = state_of(node)

    with pytest.raises(ReplayedRequestError):
        await servicer.DeregisterNeuron(request, None)  # type: ignore[arg-type]
    with pytest.raises(StaleNonceError):
        await deregister(servicer, miner, nonce=4)
    with pytest.raises(NotRegisteredError, match="is not registered on subnet 1"):
        await deregister(servicer, miner, nonce=6)
    assert state_of(node) == after
    node.store.close()


async def test_a_deregistered_validator_stops_earning_dividends(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(TEMPO)
    before = await node.service.run_due_epoch()
    assert before is not None
    dividends_before = {e.uid: e.dividends for e in before.entries}
    assert dividends_before[1] > 0

    await deregister(servicer, VALIDATORS[1])
    node.clock.advance(TEMPO)
    after = await node.service.run_due_epoch()

    assert after is not None
    assert [e.uid for e in after.entries] == [0, 2, 3, 4]
    # The remaining validator's bonds now earn the whole dividend share.
    assert {e.uid: e.dividends for e in after.entries}[0] > dividends_before[0]
    graph = node.service.snapshot(NETUID).metagraph
    assert graph.neurons[1] == Neuron.vacancy(1, block=2 * TEMPO)
    node.store.close()
