"""What the devnet shows and records per epoch: ``ScoreBoard`` (validators' scores), ``EpochRecord``, tables.

Called by ``commands.run`` and the e2e tests. ``ScoreBoard`` listens to every validator's round reports
(``kt.<netuid>.validator.*.round``, signatures checked by ``taskclient.decode_report``) and keeps each
validator's latest moving average per miner; a miner's score is the mean over validators. ``record``
takes one metagraph (right after an epoch) plus the epoch's settlement and makes the ``EpochRecord``
the table and the ``--summary`` JSON are drawn from. ``render`` draws the miners' and validators'
tables with rich; ``EpochWatcher`` polls the metagraph and makes one record per settled epoch, with
the chain sidecar's receipt for its settlement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from rich.console import Group, RenderableType
from rich.table import Table

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import subjects
from kubetensor.core.metagraphview import MetagraphView, from_response
from kubetensor.devnet.plan import TAO, DevnetPlan
from kubetensor.validator.taskclient import decode_report

_log = logging.getLogger(__name__)


class ScoreBoard:
    """Latest moving average per (validator, miner hotkey), from the validators' round reports."""

    def __init__(self, *, netuid: int | None = None) -> None:
        self.netuid = netuid
        """The subnet whose reports count (None: any; ``subscribe`` sets it)."""
        self._averages: dict[tuple[str, str], float] = {}
        self._started: dict[str, int] = {}
        self._subscription: Subscription | None = None
        self.reports = 0
        """Round reports taken (a valid signature, this subnet's, newer than the validator's last)."""

    def add(self, data: bytes) -> None:
        """Take one round report's bytes. Ignored, with a warning, unless it decodes, its signature
        verifies, it is this subnet's, and its round started after the last one taken from its validator
        (anyone on the subnet's NATS can publish an old report again)."""
        summary = decode_report(data)
        if summary is None:
            _log.warning("ignoring a round report that does not verify")
            return
        validator = summary.validator_hotkey
        if self.netuid is not None and summary.netuid != self.netuid:
            _log.warning(
                "ignoring a round report of subnet %d from %s: this board follows subnet %d",
                summary.netuid,
                validator[:16],
                self.netuid,
            )
            return
        last = self._started.get(validator)
        if last is not None and summary.started_unix_ms <= last:
            _log.warning(
                "ignoring round %d of %s: it started at %d ms, not after the last round taken (%d ms)",
                summary.round,
                validator[:16],
                summary.started_unix_ms,
                last,
            )
            return
        self._started[validator] = summary.started_unix_ms
        self.reports += 1
        for scored in summary.scores:
            self._averages[(summary.validator_hotkey, scored.hotkey)] = scored.moving_average

    def score(self, miner_hotkey: str) -> float:
        """Mean over validators of their moving average for ``miner_hotkey`` (0 before any report)."""
        values = [value for (_, miner), value in self._averages.items() if miner == miner_hotkey]
        return sum(values) / len(values) if values else 0.0

    async def subscribe(self, client: Client, *, netuid: int) -> None:
        async def on_report(msg: Msg) -> None:
            self.add(msg.data)

        self.netuid = netuid
        self._subscription = await client.subscribe(subjects.all_validator_rounds(netuid), cb=on_report)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None


@dataclass(frozen=True)
class MinerRow:
    name: str
    hotkey: str
    uid: int
    model: str
    score: float
    incentive: float
    emission: int
    """Rao the epoch emitted to the uid."""


@dataclass(frozen=True)
class ValidatorRow:
    name: str
    hotkey: str
    uid: int
    stake: int
    """Rao."""
    validator_trust: float
    dividends: float


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    block: int
    miners: tuple[MinerRow, ...]
    validators: tuple[ValidatorRow, ...]
    settlement_hash: str
    settlement_block: int


def record(
    view: MetagraphView, *, plan: DevnetPlan, scores: ScoreBoard, settlement_hash: str, settlement_block: int
) -> EpochRecord:
    """The record of the epoch ``view`` shows (its ``epoch`` is the one just settled)."""
    miners = []
    for miner in plan.miners:
        neuron = view.neuron(miner.keypair.hotkey)
        if neuron is None:
            continue
        miners.append(
            MinerRow(
                name=miner.name,
                hotkey=neuron.hotkey,
                uid=neuron.uid,
                model=miner.model,
                score=scores.score(neuron.hotkey),
                incentive=neuron.incentive,
                emission=neuron.emission_rao,
            )
        )
    validators = []
    for validator in plan.validators:
        neuron = view.neuron(validator.keypair.hotkey)
        if neuron is None:
            continue
        validators.append(
            ValidatorRow(
                name=validator.name,
                hotkey=neuron.hotkey,
                uid=neuron.uid,
                stake=neuron.stake_rao,
                validator_trust=neuron.validator_trust,
                dividends=neuron.dividends,
            )
        )
    return EpochRecord(
        epoch=view.epoch,
        block=view.block,
        miners=tuple(miners),
        validators=tuple(validators),
        settlement_hash=settlement_hash,
        settlement_block=settlement_block,
    )


def render(epoch_record: EpochRecord, *, title: str | None = None) -> RenderableType:
    """The miners' and validators' tables of one epoch."""
    heading = title or (
        f"epoch {epoch_record.epoch} (block {epoch_record.block}, settlement "
        f"{epoch_record.settlement_hash[:16]} at block {epoch_record.settlement_block})"
    )
    miners = Table(title=heading, title_justify="left", expand=False)
    for column in ("miner", "uid", "model", "score", "incentive", "emission (TAO)"):
        miners.add_column(column, justify="left" if column in ("miner", "model") else "right")
    for m in epoch_record.miners:
        miners.add_row(
            m.name, str(m.uid), m.model, f"{m.score:.3f}", f"{m.incentive:.4f}", f"{m.emission / TAO:.3f}"
        )
    validators = Table(expand=False)
    for column in ("validator", "uid", "stake (TAO)", "trust", "dividends"):
        validators.add_column(column, justify="left" if column == "validator" else "right")
    for v in epoch_record.validators:
        validators.add_row(
            v.name, str(v.uid), f"{v.stake / TAO:.0f}", f"{v.validator_trust:.4f}", f"{v.dividends:.4f}"
        )
    return Group(miners, validators)


class EpochWatcher:
    """Turns metagraph polls into one ``EpochRecord`` per newly settled epoch."""

    def __init__(
        self, client: ConsensusClient, *, plan: DevnetPlan, scores: ScoreBoard, receipt_wait_s: float = 3.0
    ) -> None:
        self._client = client
        self._plan = plan
        self._scores = scores
        self._receipt_wait_s = receipt_wait_s
        self.last_epoch = 0
        self.records: list[EpochRecord] = []

    async def poll(self) -> EpochRecord | None:
        """The record of the epoch settled since the last poll, or None (a missed epoch is skipped)."""
        view = from_response(await self._client.metagraph())
        if view.epoch <= self.last_epoch:
            return None
        self.last_epoch = view.epoch
        settlement_hash, settlement_block = await self._settlement(view.epoch)
        epoch_record = record(
            view,
            plan=self._plan,
            scores=self._scores,
            settlement_hash=settlement_hash,
            settlement_block=settlement_block,
        )
        self.records.append(epoch_record)
        return epoch_record

    async def _settlement(self, epoch: int) -> tuple[str, int]:
        """(hash, block) of the epoch's settlement: the block of the ledger's receipt, waiting a moment
        for the delivery; the settlement's own block if no receipt came."""
        deadline = time.monotonic() + self._receipt_wait_s
        while True:
            found = await self._client.settlements(start_epoch=epoch)
            if found and found[0].HasField("receipt"):
                return found[0].settlement.hash, found[0].receipt.block
            if time.monotonic() >= deadline:
                return (found[0].settlement.hash, found[0].settlement.block) if found else ("", 0)
            await asyncio.sleep(0.1)
