"""The devnet's plan, its --summary JSON shape, the settlement-chain check, and the score board."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubetensor.core.keys import Keypair
from kubetensor.core.settlementwire import settlement_from_proto
from kubetensor.devnet import summary
from kubetensor.devnet.monitor import EpochRecord, MinerRow, ScoreBoard, ValidatorRow, render
from kubetensor.devnet.plan import TAO, default_plan
from kubetensor.v1 import consensus_pb2
from kubetensor.validator.rounds import Outcome, RoundSummary, ScoredTask
from kubetensor.validator.taskclient import report_to_proto
from rich.console import Console


def test_default_plan_is_the_issues_network() -> None:
    plan = default_plan(tempo_seconds=30)
    assert [(m.name, m.model) for m in plan.miners] == [
        ("miner-good", "good"),
        ("miner-brief", "brief"),
        ("miner-untrained", "untrained"),
    ]
    stakes = [v.stake_rao for v in plan.validators]
    assert len(stakes) == 2
    assert len(set(stakes)) == 2
    assert plan.stakes() == {v.keypair.hotkey: v.stake_rao for v in plan.validators}
    assert plan.block_seconds * plan.tempo_blocks == pytest.approx(30)
    assert plan.weights_interval_seconds < plan.tempo_seconds
    hotkeys = {m.keypair.hotkey for m in plan.miners} | {v.keypair.hotkey for v in plan.validators}
    assert len(hotkeys) == 5


def test_plan_refuses_a_tempo_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="tempo_seconds"):
        default_plan(tempo_seconds=0)


def record(epoch: int) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        block=30 * epoch,
        miners=(MinerRow("miner-good", "aa" * 32, 2, "good", 0.9, 0.6, 77 * TAO),),
        validators=(ValidatorRow("validator-a", "bb" * 32, 0, 600 * TAO, 1.0, 0.63),),
        settlement_hash="cc" * 32,
        settlement_block=9 + epoch,
    )


def test_summary_json_has_exactly_the_issues_shape(tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    summary.write(path, [record(1), record(2)], chain_verified=True)
    document = json.loads(path.read_text())
    assert set(document) == {"epochs", "chain_verified"}
    assert document["chain_verified"] is True
    first = document["epochs"][0]
    assert set(first) == {"epoch", "miners", "validators", "settlement"}
    assert set(first["miners"][0]) == {"name", "hotkey", "uid", "model", "score", "incentive", "emission"}
    assert set(first["validators"][0]) == {"name", "hotkey", "uid", "stake", "validator_trust", "dividends"}
    assert first["settlement"] == {"hash": "cc" * 32, "block": 10}
    assert first["miners"][0]["emission"] == 77 * TAO
    assert [e["epoch"] for e in document["epochs"]] == [1, 2]


def test_render_shows_every_miner_and_validator() -> None:
    console = Console(width=120, record=True)
    console.print(render(record(3)))
    text = console.export_text()
    assert "epoch 3" in text
    assert "miner-good" in text
    assert "validator-a" in text
    assert "0.6000" in text


def settlement_chain(count: int) -> list[consensus_pb2.SettlementRecord]:
    records = []
    previous = ""
    for epoch in range(1, count + 1):
        wire = consensus_pb2.Settlement(
            netuid=1,
            epoch=epoch,
            block=30 * epoch,
            metagraph_digest="11" * 32,
            weights_digest="22" * 32,
            entries=[
                consensus_pb2.SettlementEntry(uid=0, hotkey="aa" * 32, incentive=0.5, emission_rao=epoch)
            ],
            previous_hash=previous,
        )
        wire.hash = settlement_from_proto(wire).hash
        previous = wire.hash
        records.append(
            consensus_pb2.SettlementRecord(
                settlement=wire,
                receipt=consensus_pb2.SettlementReceipt(block=epoch, settlement_hash=wire.hash),
            )
        )
    return records


def test_a_hash_linked_settlement_chain_verifies() -> None:
    verification = summary.verify_settlements(settlement_chain(3))
    assert verification.ok
    assert verification.settlements == 3
    assert verification.summary.startswith("ok: 3 settlements")


def test_a_changed_settlement_is_caught() -> None:
    records = settlement_chain(3)
    records[1].settlement.entries[0].emission_rao = 999
    verification = summary.verify_settlements(records)
    assert not verification.ok
    assert "epoch 2" in verification.problem
    assert verification.settlements == 1


def test_a_missing_or_unlinked_settlement_is_caught() -> None:
    records = settlement_chain(3)
    assert "expected epoch 2" in summary.verify_settlements([records[0], records[2]]).problem
    records = settlement_chain(3)
    records[2].receipt.settlement_hash = "00" * 32
    assert "receipt" in summary.verify_settlements(records).problem


def round_report(
    validator: Keypair, *, miner: str, average: float, started_ms: int = 0, netuid: int = 1
) -> bytes:
    scored = ScoredTask(
        task_id="t",
        uid=2,
        hotkey=miner,
        outcome=Outcome.OK,
        correctness=1.0,
        score=1.0,
        latency_s=0.01,
        moving_average=average,
    )
    report = RoundSummary(
        netuid=netuid, round=1 + started_ms, started_unix_ms=started_ms, duration_s=0.1, scores=(scored,)
    )
    return report_to_proto(report, keypair=validator).SerializeToString()


def test_score_board_averages_the_validators_latest_reports() -> None:
    board = ScoreBoard()
    a, b = Keypair(b"\x01" * 32), Keypair(b"\x02" * 32)
    miner = "dd" * 32
    board.add(round_report(a, miner=miner, average=0.2, started_ms=1))
    board.add(round_report(a, miner=miner, average=0.8, started_ms=2))
    board.add(round_report(b, miner=miner, average=0.4, started_ms=1))
    assert board.score(miner) == pytest.approx(0.6)
    assert board.score("ee" * 32) == 0.0
    assert board.reports == 3


def test_score_board_ignores_reports_that_do_not_verify() -> None:
    board = ScoreBoard()
    data = bytearray(round_report(Keypair(b"\x01" * 32), miner="dd" * 32, average=0.9))
    data[-1] ^= 1
    board.add(bytes(data))
    assert board.reports == 0


def test_score_board_ignores_an_older_report_again_and_another_subnets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone on the subnet's NATS can publish a validator's old (signed) report again, or another
    subnet's: neither moves the board, and each is logged."""
    board = ScoreBoard(netuid=1)
    validator, miner = Keypair(b"\x01" * 32), "dd" * 32
    old = round_report(validator, miner=miner, average=0.2, started_ms=10)
    board.add(old)
    board.add(round_report(validator, miner=miner, average=0.9, started_ms=20))
    board.add(old)
    board.add(round_report(validator, miner=miner, average=0.1, started_ms=30, netuid=2))
    assert board.score(miner) == pytest.approx(0.9)
    assert board.reports == 2
    assert "not after the last round taken" in caplog.text
    assert "this board follows subnet 1" in caplog.text
