"""Unit tests for kubetensor.consensus.service on a manual clock: epoch scheduling, settlements,
delivery retries and redelivery, nonces, and refusals that change nothing. Requests go through
``ConsensusServicer`` (no network), so the real signing payload is exercised."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from kubetensor.consensus.client import register_request, set_weights_request
from kubetensor.consensus.clock import ManualClock
from kubetensor.consensus.errors import (
    AlreadyRegisteredError,
    BadSignatureError,
    MalformedRequestError,
    NoValidatorPermitError,
    ReplayedRequestError,
    StaleNonceError,
    UnknownSubnetError,
)
from kubetensor.consensus.servicer import ConsensusServicer
from kubetensor.core.errors import UnavailableError
from kubetensor.core.keys import Keypair
from kubetensor.v1 import consensus_pb2

from tests.consensus_support import (
    COLDKEY,
    GENESIS,
    MINERS,
    NETUID,
    TEMPO,
    VALIDATORS,
    AckSink,
    Node,
    build,
    eventually,
    keypair,
)

WEIGHTS = [(2, 300), (3, 100), (4, 0)]


async def register(servicer: ConsensusServicer, key: Keypair, *, nonce: int = 1) -> int:
    request = register_request(key, netuid=NETUID, coldkey=COLDKEY, nonce=nonce)
    response = await servicer.RegisterNeuron(request, None)  # type: ignore[arg-type]
    return response.uid


async def set_weights(
    servicer: ConsensusServicer, key: Keypair, *, nonce: int, weights: list[tuple[int, int]]
) -> int:
    request = set_weights_request(key, netuid=NETUID, weights=weights, nonce=nonce)
    response = await servicer.SetWeights(request, None)  # type: ignore[arg-type]
    return response.block


async def populate(node: Node) -> ConsensusServicer:
    """Register the validators and miners, run epoch 1 (permits), and set the validators' weights."""
    servicer = ConsensusServicer(node.service)
    for key in (*VALIDATORS, *MINERS):
        await register(servicer, key)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(TEMPO)
    assert await node.service.run_due_epoch() is not None
    for validator in VALIDATORS:
        await set_weights(servicer, validator, nonce=1, weights=WEIGHTS)
    return servicer


def state_of(node: Node) -> tuple[object, ...]:
    """Everything the store holds, for before/after comparisons."""
    return (node.store.load_metagraph(), node.store.load_nonces(), node.store.settlements())


async def test_epochs_run_every_tempo_blocks_with_gap_free_hash_linked_settlements(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    clock = node.clock
    assert isinstance(clock, ManualClock)
    await node.service.start()
    try:
        servicer = ConsensusServicer(node.service)
        for key in (*VALIDATORS, *MINERS):
            await register(servicer, key)
        clock.advance(TEMPO)
        await eventually(lambda: len(node.store.settlements()) == 1, what="epoch 1")
        for validator in VALIDATORS:
            await set_weights(servicer, validator, nonce=1, weights=WEIGHTS)
        for epoch in (2, 3, 4):
            clock.advance(TEMPO)
            await eventually(
                lambda epoch=epoch: len(node.store.settlements()) == epoch, what=f"epoch {epoch}"
            )
        await eventually(lambda: not node.store.undelivered(), what="every settlement delivered")
    finally:
        await node.service.stop()

    records = node.store.settlements()
    settlements = [r.settlement for r in records]
    assert [s.epoch for s in settlements] == [1, 2, 3, 4]
    assert [s.block for s in settlements] == [10, 20, 30, 40]
    assert settlements[0].previous_hash == ""
    for before, after in itertools.pairwise(settlements):
        assert after.previous_hash == before.hash
    assert all(r.receipt is not None and r.receipt.settlement_hash == r.settlement.hash for r in records)
    assert node.store.logged_settlements() == settlements
    # Incentive follows the weights: miner 2 (300) > miner 3 (100) > miner 4 (0).
    last = settlements[-1].entries
    assert last[2].incentive > last[3].incentive > last[4].incentive == 0
    assert last[0].dividends > last[1].dividends > 0
    node.store.close()


async def test_no_epoch_runs_before_tempo_blocks_pass(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(TEMPO - 1)
    assert await node.service.run_due_epoch() is None
    assert node.store.settlements() == []
    node.clock.advance(1)
    settlement = await node.service.run_due_epoch()
    assert settlement is not None
    assert (settlement.epoch, settlement.block) == (1, TEMPO)
    node.store.close()


async def test_after_downtime_one_epoch_runs_at_the_current_block(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(35)
    settlement = await node.service.run_due_epoch()
    assert settlement is not None
    assert (settlement.epoch, settlement.block) == (1, 35)
    assert await node.service.run_due_epoch() is None
    assert node.service.next_epoch_block == 45
    node.store.close()


async def test_delivery_retries_until_the_sink_acknowledges(tmp_path: Path) -> None:
    sink = AckSink(failures=3)
    node = build(tmp_path / "state.sqlite3", sink=sink)
    assert isinstance(node.clock, ManualClock)
    await node.service.start()
    try:
        node.clock.advance(TEMPO)
        await eventually(
            lambda: not node.store.undelivered() and node.store.settlements() != [], what="delivery"
        )
    finally:
        await node.service.stop()
    assert sink.calls == [1, 1, 1, 1]
    record = node.store.settlements()[0]
    assert record.receipt is not None
    assert record.receipt.block == 1001
    node.store.close()


async def test_restart_redelivers_undelivered_settlements_and_continues_the_chain(tmp_path: Path) -> None:
    down = AckSink(failures=10**9)
    first = build(tmp_path / "state.sqlite3", sink=down)
    await populate(first)
    assert isinstance(first.clock, ManualClock)
    first.clock.advance(TEMPO)
    assert await first.service.run_due_epoch() is not None
    await first.service.start()
    await eventually(lambda: len(down.calls) >= 2, what="delivery attempts to the failing sink")
    await first.service.stop()
    assert [s.epoch for s in first.store.undelivered()] == [1, 2]
    bonds_before = first.store.load_metagraph().neurons[0].bonds
    assert bonds_before != ()
    first.store.close()

    up = AckSink()
    clock = ManualClock(20)
    second = build(tmp_path / "state.sqlite3", sink=up, clock=clock)
    await second.service.start()
    try:
        await eventually(lambda: not second.store.undelivered(), what="redelivery after restart")
        clock.advance(TEMPO)
        await eventually(lambda: len(second.store.settlements()) == 3, what="epoch 3 after restart")
    finally:
        await second.service.stop()
    settlements = [r.settlement for r in second.store.settlements()]
    assert [s.epoch for s in settlements] == [1, 2, 3]
    assert settlements[2].previous_hash == settlements[1].hash
    assert sorted(up.accepted) == [(NETUID, 1), (NETUID, 2), (NETUID, 3)]
    second.store.close()


async def test_refused_requests_change_nothing_not_even_the_nonce(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    before = state_of(node)
    validator = VALIDATORS[0]

    forged = set_weights_request(validator, netuid=NETUID, weights=[(2, 1)], nonce=2)
    forged.signature.signature = bytes(64)
    with pytest.raises(BadSignatureError):
        await servicer.SetWeights(forged, None)  # type: ignore[arg-type]

    stolen = set_weights_request(keypair(50), netuid=NETUID, weights=[(2, 1)], nonce=2)
    stolen.hotkey = validator.hotkey
    with pytest.raises(BadSignatureError):
        await servicer.SetWeights(stolen, None)  # type: ignore[arg-type]

    with pytest.raises(NoValidatorPermitError):
        await set_weights(servicer, MINERS[0], nonce=1, weights=[(3, 1)])

    with pytest.raises(StaleNonceError):
        await set_weights(servicer, validator, nonce=1, weights=[(2, 1)])

    with pytest.raises(UnknownSubnetError):
        await servicer.SetWeights(set_weights_request(validator, netuid=9, weights=[(2, 1)], nonce=2), None)  # type: ignore[arg-type]

    with pytest.raises(AlreadyRegisteredError):
        await register(servicer, validator, nonce=2)

    assert state_of(node) == before
    # Nonce 2 was never consumed by the refusals above.
    await set_weights(servicer, validator, nonce=2, weights=[(2, 1)])
    node.store.close()


async def test_replay_is_already_exists_and_a_different_request_with_that_nonce_is_stale(
    tmp_path: Path,
) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    request = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 5), (3, 5)], nonce=7)
    await servicer.SetWeights(request, None)  # type: ignore[arg-type]
    before = state_of(node)
    with pytest.raises(ReplayedRequestError):
        await servicer.SetWeights(request, None)  # type: ignore[arg-type]
    with pytest.raises(StaleNonceError):
        await set_weights(servicer, VALIDATORS[0], nonce=7, weights=[(2, 6), (3, 5)])
    with pytest.raises(StaleNonceError):
        await set_weights(servicer, VALIDATORS[0], nonce=6, weights=[(2, 6), (3, 5)])
    assert state_of(node) == before
    node.store.close()


async def test_malformed_requests_name_the_field(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = await populate(node)
    cases: list[tuple[consensus_pb2.SetWeightsRequest | consensus_pb2.RegisterNeuronRequest, str]] = []
    bad_hotkey = register_request(keypair(40), netuid=NETUID, coldkey=COLDKEY, nonce=1)
    bad_hotkey.hotkey = "zz"
    cases.append((bad_hotkey, "hotkey"))
    bad_coldkey = register_request(keypair(40), netuid=NETUID, coldkey="ab" * 31, nonce=1)
    cases.append((bad_coldkey, "coldkey"))
    unsigned = register_request(keypair(40), netuid=NETUID, coldkey=COLDKEY, nonce=1)
    unsigned.ClearField("signature")
    cases.append((unsigned, "signature"))
    short = register_request(keypair(40), netuid=NETUID, coldkey=COLDKEY, nonce=1)
    short.signature.signature = b"\x01" * 10
    cases.append((short, "signature.signature"))
    too_heavy = set_weights_request(VALIDATORS[0], netuid=NETUID, weights=[(2, 1), (3, 70_000)], nonce=9)
    cases.append((too_heavy, "weights[1].weight"))
    before = state_of(node)
    for request, field in cases:
        call = (
            servicer.SetWeights(request, None)  # type: ignore[arg-type]
            if isinstance(request, consensus_pb2.SetWeightsRequest)
            else servicer.RegisterNeuron(request, None)  # type: ignore[arg-type]
        )
        with pytest.raises(MalformedRequestError) as refused:
            await call
        assert refused.value.field == field
    assert state_of(node) == before
    node.store.close()


async def test_registration_takes_stake_from_the_stake_source(tmp_path: Path) -> None:
    node = build(tmp_path / "state.sqlite3")
    servicer = ConsensusServicer(node.service)
    await register(servicer, VALIDATORS[0])
    await register(servicer, MINERS[0])
    neurons = node.store.load_metagraph().neurons
    assert [n.stake_rao for n in neurons] == [GENESIS[VALIDATORS[0].hotkey], 0]
    assert neurons[0].coldkey == COLDKEY
    node.store.close()


class DownStake:
    async def stakes(self, hotkeys: object) -> dict[str, int]:
        raise UnavailableError("the stake source is down")


async def test_registration_while_the_stake_source_is_down_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    node = build(tmp_path / "state.sqlite3", stake_source=DownStake())
    servicer = ConsensusServicer(node.service)
    before = state_of(node)
    with pytest.raises(UnavailableError):
        await register(servicer, MINERS[0])
    assert state_of(node) == before
    node.store.close()
