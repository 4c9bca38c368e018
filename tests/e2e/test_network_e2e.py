"""The whole network with its real pieces: nats-server, vLLM (CPU build) on the good, brief and untrained
models, the consensus service, the chain sidecar (ledger), three miner processes and two validator
processes (``kubetensor.devnet.network``). After a few short epochs the incentives must follow model
quality; then the fault cases: a miner that dies, one that hangs, answers that are garbage or carry a
bad signature all score zero while every round still completes, the dead and hung miners are scored
again once back, a restarted validator resumes its moving averages, and the chain verifies.

The vLLM servers come from the session's ``vllm_server_factory`` (started once, shared with the other
vLLM tests), so this test starts no vLLM of its own.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from kubetensor.chain.client import ChainClient
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import natslite, signing, subjects
from kubetensor.core.keys import Keypair
from kubetensor.devnet import ledger, summary
from kubetensor.devnet.monitor import EpochRecord, EpochWatcher, ScoreBoard
from kubetensor.devnet.network import Network
from kubetensor.devnet.plan import default_plan
from kubetensor.v1 import task_pb2
from kubetensor.validator.rounds import Outcome, RoundSummary
from kubetensor.validator.taskclient import decode_report

from tests.harness.fixtures import VllmFactory
from tests.network_support import eventually

pytestmark = pytest.mark.slow

TEMPO_SECONDS = 12.0
EPOCH_WAIT = 120.0
FAULT_WAIT = 90.0


class Reports:
    """Every validator round report on the subnet, decoded and verified."""

    def __init__(self) -> None:
        self.rounds: list[RoundSummary] = []

    async def on_message(self, msg: nats.aio.msg.Msg) -> None:
        decoded = decode_report(msg.data)
        if decoded is not None:
            self.rounds.append(decoded)

    def since(self, index: int) -> list[RoundSummary]:
        return self.rounds[index:]

    async def wait_for(self, check: Callable[[RoundSummary], bool], *, after: int, what: str) -> RoundSummary:
        found: list[RoundSummary] = []

        def seen() -> bool:
            found.extend(r for r in self.since(after) if check(r))
            return bool(found)

        await eventually(seen, what=what, seconds=FAULT_WAIT)
        return found[0]


def outcome_of(report: RoundSummary, hotkey: str) -> tuple[Outcome, float] | None:
    for scored in report.scores:
        if scored.hotkey == hotkey:
            return scored.outcome, scored.score
    return None


async def forger(msg: nats.aio.msg.Msg) -> None:
    """Answers the right task id with a response signed by a key that is not the miner's."""
    task = task_pb2.Task.FromString(msg.data)
    leaf = task_pb2.TaskLeaf.FromString(task.leaf)
    response = task_pb2.TaskResponse(
        task_id=leaf.task_id,
        miner_hotkey=leaf.miner_hotkey,
        completion="1",
        status=task_pb2.TASK_STATUS_OK,
        validator_hotkey=task_pb2.RoundEnvelope.FromString(task.envelope).validator_hotkey,
    )
    signing.sign(response, Keypair.generate(), domain=subjects.TASK_RESPONSE_DOMAIN)
    await msg.respond(response.SerializeToString())


async def garbage(msg: nats.aio.msg.Msg) -> None:
    await msg.respond(b"\x00garbage\xff")


async def _ledger_stakes(network: Network) -> dict[str, int]:
    async with ChainClient.connect(network.chain_address) as chain:
        return await chain.stakes([v.keypair.hotkey for v in network.plan.validators])


@pytest.fixture
async def network(vllm_server_factory: VllmFactory, tmp_path: Path) -> AsyncIterator[Network]:
    plan = default_plan(tempo_seconds=TEMPO_SECONDS)
    engines = {}
    for miner in plan.miners:
        server = vllm_server_factory(miner.model)
        engines[miner.name] = (server.base_url, server.served_name)
    running = Network(plan, workdir=tmp_path / "devnet", engines=engines)
    try:
        await running.start()
        yield running
    finally:
        running.stop()
    for name, component in running.all_components():
        assert not component.alive(), f"{name} is still running after stop()"


async def test_incentives_follow_model_quality_and_faults_score_zero(network: Network) -> None:
    plan = network.plan
    hotkeys = {m.name: m.keypair.hotkey for m in plan.miners}
    reports = Reports()
    # The run's NATS takes only its token: the miners and validators that score below read it from their
    # credentials folder, as from a mounted Secret on Kubernetes.
    with pytest.raises(natslite.NatsServerError, match="requires authentication"):
        await natslite.connect(network.nats_url, name="no-token")
    nc = await nats.connect(network.nats_url, token=network.nats_credentials.token)
    scores = ScoreBoard()
    await scores.subscribe(nc, netuid=plan.netuid)
    await nc.subscribe(subjects.all_validator_rounds(plan.netuid), cb=reports.on_message)
    records: list[EpochRecord] = []
    try:
        async with ConsensusClient.connect(network.consensus_address, netuid=plan.netuid) as consensus:
            watcher = EpochWatcher(consensus, plan=plan, scores=scores)

            async def epoch_settled() -> bool:
                network.check()
                new = await watcher.poll()
                if new is not None:
                    records.append(new)
                return len(records) >= 3

            # -- incentives by model quality ------------------------------------------------------
            await eventually(epoch_settled, what="three epochs", seconds=3 * EPOCH_WAIT)
            last = {m.name: m for m in records[-1].miners}
            good, brief, untrained = (
                last[n].incentive for n in ("miner-good", "miner-brief", "miner-untrained")
            )
            history = [(r.epoch, [(m.name, round(m.incentive, 4)) for m in r.miners]) for r in records]
            assert good > brief > untrained, history
            assert untrained < 0.1, history
            assert last["miner-good"].score > last["miner-untrained"].score

            # -- garbage and bad signatures: two more registered hotkeys answered by raw responders ---
            faulty = {"garbage": Keypair.generate(), "forger": Keypair.generate()}
            for key in faulty.values():
                await consensus.register(key, coldkey=plan.coldkey.hotkey, nonce=1)
            await nc.subscribe(subjects.miner_tasks(plan.netuid, faulty["garbage"].hotkey), cb=garbage)
            await nc.subscribe(subjects.miner_tasks(plan.netuid, faulty["forger"].hotkey), cb=forger)
            mark = len(reports.rounds)
            both = await reports.wait_for(
                lambda r: (
                    outcome_of(r, faulty["garbage"].hotkey) is not None
                    and outcome_of(r, faulty["forger"].hotkey) is not None
                ),
                after=mark,
                what="a round that queried the garbage and forging hotkeys",
            )
            assert outcome_of(both, faulty["garbage"].hotkey) == (Outcome.GARBAGE, 0.0)
            assert outcome_of(both, faulty["forger"].hotkey) == (Outcome.BAD_SIGNATURE, 0.0)
            assert outcome_of(both, hotkeys["miner-good"]) is not None
            # Their answers are not the miners' signed ones, so every round that queries them waits for
            # its deadline: free their uids, so the rounds below are not all that slow.
            for key in faulty.values():
                await consensus.deregister(key, nonce=2)

            # -- a miner that dies, then comes back ---------------------------------------------------
            network.kill("miner-brief")
            mark = len(reports.rounds)
            dead = await reports.wait_for(
                lambda r: outcome_of(r, hotkeys["miner-brief"]) == (Outcome.NO_RESPONDERS, 0.0),
                after=mark,
                what="a round scoring the dead miner zero",
            )
            # The same round scored the others: it completed.
            good_outcome = outcome_of(dead, hotkeys["miner-good"])
            assert good_outcome is not None
            assert good_outcome[0] is Outcome.OK
            await network.restart("miner-brief")
            mark = len(reports.rounds)
            await reports.wait_for(
                lambda r: (outcome_of(r, hotkeys["miner-brief"]) or (None, 0))[0] is Outcome.OK,
                after=mark,
                what="the restarted miner to be scored again",
            )

            # -- a miner that hangs (SIGSTOP: it holds its subscription but never answers), then resumes
            hung = network.miners["miner-untrained"].process.pid
            os.killpg(hung, signal.SIGSTOP)
            try:
                mark = len(reports.rounds)
                stalled = await reports.wait_for(
                    lambda r: outcome_of(r, hotkeys["miner-untrained"]) == (Outcome.TIMEOUT, 0.0),
                    after=mark,
                    what="a round scoring the hung miner zero on timeout",
                )
                good_outcome = outcome_of(stalled, hotkeys["miner-good"])
                assert good_outcome is not None
                assert good_outcome[0] is Outcome.OK
            finally:
                os.killpg(hung, signal.SIGCONT)
            mark = len(reports.rounds)
            await reports.wait_for(
                lambda r: (outcome_of(r, hotkeys["miner-untrained"]) or (None, 0))[0] is Outcome.OK,
                after=mark,
                what="the resumed miner to be scored again",
            )

            # -- a validator that restarts resumes its moving averages --------------------------------
            validator = plan.validators[0]
            before = [r for r in reports.rounds if r.validator_hotkey == validator.keypair.hotkey][-1]
            average_before = next(
                s.moving_average for s in before.scores if s.hotkey == hotkeys["miner-good"]
            )
            network.terminate(validator.name)
            mark = len(reports.rounds)
            await network.restart(validator.name)
            after = await reports.wait_for(
                lambda r: r.validator_hotkey == validator.keypair.hotkey,
                after=mark,
                what="the restarted validator's first round",
            )
            assert after.round > before.round
            average_after = next(s.moving_average for s in after.scores if s.hotkey == hotkeys["miner-good"])
            # A fresh start would be at most alpha (0.2) after one round; resumed, it stays near before.
            assert average_before > 0.5
            assert average_after > 0.5
            assert average_after >= average_before * (1 - plan.moving_average_alpha) - 1e-9

            # -- the chain -------------------------------------------------------------------------------
            network.check()
            settled = await ledger.delivered(consensus, within_seconds=30)
            assert all(record.HasField("receipt") for record in settled)
            local = summary.verify_settlements(settled)
            assert local.ok, local.summary
            report = await ledger.verify(network.chain_address)
            assert report.ok, report.summary
            assert report.settlements == len(settled) >= 3
            # Each epoch's record names the ledger block that recorded its settlement.
            receipts = {r.settlement.epoch: (r.settlement.hash, r.receipt.block) for r in settled}
            for epoch_record in records:
                assert receipts[epoch_record.epoch] == (
                    epoch_record.settlement_hash,
                    epoch_record.settlement_block,
                )
            # The validators' stake is the ledger's.
            stakes = await _ledger_stakes(network)
            for validator in plan.validators:
                assert stakes[validator.keypair.hotkey] == validator.stake_rao
            document = summary.to_json(records, chain_verified=report.ok)
            assert [e["epoch"] for e in document["epochs"]] == [r.epoch for r in records]
    finally:
        await scores.close()
        await nc.close()
    # The token was in the credentials folder and the server's configuration only: no process logged it.
    logs = list(network.workdir.rglob("*.log"))
    assert {"nats-server.log", "miner-good.log", "validator-a.log"} <= {path.name for path in logs}
    for path in logs:
        assert network.nats_credentials.token not in path.read_text(errors="replace"), path
