"""``DevnetPlan``: who takes part in a devnet and on what clock. Pure: no I/O.

Called by ``commands`` (``default_plan``) and the e2e tests (which shorten the clock). The default is
the issue's network: three miners on the good, brief and untrained models and two validators with
different stakes (600 and 400 TAO), all owned by one coldkey, on subnet 1, with a chain sidecar
(ledger backend) recording the settlements. Time: one epoch every
``tempo_seconds``, split into ``tempo_blocks`` blocks; validators run a round every ``round_seconds``
and set weights about three times per epoch, so every epoch's incentives rest on fresh weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetensor.core.keys import Keypair

TAO = 10**9
"""Rao per TAO."""


@dataclass(frozen=True)
class MinerPlan:
    name: str
    model: str
    """Model quality (``kubetensor.models.build.QUALITIES``)."""
    keypair: Keypair


@dataclass(frozen=True)
class ValidatorPlan:
    name: str
    stake_rao: int
    keypair: Keypair


@dataclass(frozen=True)
class DevnetPlan:
    netuid: int
    coldkey: Keypair
    """Owns every hotkey and the subnet, and stakes the validators."""
    miners: tuple[MinerPlan, ...]
    validators: tuple[ValidatorPlan, ...]
    tempo_seconds: float
    tempo_blocks: int = 30
    round_seconds: float = 1.5
    task_timeout_seconds: float = 5.0
    moving_average_alpha: float = 0.1

    def __post_init__(self) -> None:
        if self.tempo_seconds <= 0:
            raise ValueError(f"tempo_seconds: expected > 0, got {self.tempo_seconds}")
        if self.tempo_blocks < 3:
            raise ValueError(f"tempo_blocks: expected at least 3, got {self.tempo_blocks}")
        names = [m.name for m in self.miners] + [v.name for v in self.validators]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")

    @property
    def block_seconds(self) -> float:
        return self.tempo_seconds / self.tempo_blocks

    @property
    def weights_interval_seconds(self) -> float:
        """About three weight sets per epoch."""
        return self.tempo_seconds / 3

    @property
    def weights_retry_seconds(self) -> float:
        return min(self.weights_interval_seconds, max(self.block_seconds * 2, 1.0))

    def stakes(self) -> dict[str, int]:
        """Stake per validator hotkey (staked on the ledger from the coldkey at start)."""
        return {v.keypair.hotkey: v.stake_rao for v in self.validators}


def default_plan(*, tempo_seconds: float = 30.0) -> DevnetPlan:
    """Three miners (good, brief, untrained) and two validators (600 and 400 TAO), fresh keys."""
    return DevnetPlan(
        netuid=1,
        coldkey=Keypair.generate(),
        miners=tuple(
            MinerPlan(name=f"miner-{model}", model=model, keypair=Keypair.generate())
            for model in ("good", "brief", "untrained")
        ),
        validators=(
            ValidatorPlan(name="validator-a", stake_rao=600 * TAO, keypair=Keypair.generate()),
            ValidatorPlan(name="validator-b", stake_rao=400 * TAO, keypair=Keypair.generate()),
        ),
        tempo_seconds=tempo_seconds,
    )
